//! Range limits enforced at the boundary.
//!
//! They follow from the noise and range budget of the homomorphic part
//! (`pb_glwe::params`, `docs/design.md` section "Budget"): with these limits a
//! household's bill total stays far inside the decodable range for any
//! realistic price, and the edge re-checks the exact bound for every cycle.

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
