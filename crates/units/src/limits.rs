//! The limits every input is checked against, in one place (design
//! section 2). Both the encrypted path and the plaintext reference enforce
//! the same ones, so they accept and refuse exactly the same communities.
//!
//! * **Per value**, when a file or request is read: `|energy| <=`
//!   [`MAX_SLOT_WH`] (100 kWh a slot) and `|price| <=` [`MAX_PRICE_UNITS`]
//!   (100 currency per kWh).
//! * **Per cycle, on the prices**, when a context is built: the largest
//!   energy cost a household could reach, `sum_t max(|trading_t|,
//!   |retail_t|) * 100 kWh` (and the same with feed-in), is at most
//!   [`CONTEXT_ENERGY_BUDGET`], half of what an encrypted bill can hold; the
//!   other half is kept for the imbalance charges.
//! * **Per cycle, after aggregation**: the cycle's weights must fit the
//!   homomorphic budget (`pb_shared_billing::budget`): a household's worst
//!   case bill at most [`MAX_BILL_UNITS`], and the product noise within what
//!   the flooding hides.

/// Largest absolute energy of one slot, in Wh (100 kWh per slot: 400 kW over
/// 15 minutes, far above any household or small business).
pub const MAX_SLOT_WH: i64 = 100_000;

/// Largest absolute price, in price units (1e-5 currency per kWh): 100
/// currency per kWh.
pub const MAX_PRICE_UNITS: i64 = 10_000_000;

/// Largest number of settlement slots in a cycle (six weeks of 15 minutes).
pub const MAX_SLOTS: u32 = 4032;

/// Largest number of members of a community. Aggregates are sums over
/// members in `Z_2^64`; with this many members and [`MAX_SLOT_WH`] no sum can
/// wrap.
pub const MAX_MEMBERS: usize = 1_000_000;

/// Smallest number of members billed together by default; fewer would let a
/// member infer another's data from the community totals (design section 4).
pub const DEFAULT_MIN_MEMBERS: usize = 3;

/// No community of fewer members is ever billed, whatever is configured:
/// with one member the aggregates are its data, with two each member's
/// data is the other's aggregate minus its own, and secure aggregation
/// needs at least two share holders per member.
pub const MIN_BILLABLE_MEMBERS: usize = 3;

/// The smallest community billed when `requested` is configured.
pub fn min_members(requested: usize) -> usize {
    requested.max(MIN_BILLABLE_MEMBERS)
}

/// Largest absolute bill or reward total an encrypted bill decodes exactly,
/// in money units (1e-8 currency): `2^45 - 1`, about 351,843.72 currency per
/// household and cycle. Equal to `pb_glwe::params::MAX_TOTAL` (a test checks
/// it).
pub const MAX_BILL_UNITS: u128 = (1 << 45) - 1;

/// Largest energy cost a cycle's prices may allow a household at
/// [`MAX_SLOT_WH`] in every slot, in money units: half of
/// [`MAX_BILL_UNITS`] (about 175,921.86 currency).
pub const CONTEXT_ENERGY_BUDGET: u128 = MAX_BILL_UNITS / 2;
