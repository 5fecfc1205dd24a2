//! Exact integer units and identifiers of private-billing.
//!
//! Everything the system computes is an integer (design section 2):
//!
//! * energy in signed watt-hours ([`Wh`]; `+` consumption, `-` supply),
//! * prices in signed units of 1e-5 currency per kWh ([`PriceUnits`]),
//! * money in signed units of 1e-8 currency ([`Money`] = `Wh` x `PriceUnits`).
//!
//! Decimal inputs (kWh, currency per kWh) are converted with
//! [`Wh::from_kwh`] and [`PriceUnits::from_currency_per_kwh`], which round to
//! the nearest unit and refuse NaN, infinities and values outside the limits
//! in [`limits`]. Those limits are chosen from the homomorphic noise budget
//! (see `docs/design.md`), so every value accepted here can be billed.

#![warn(missing_docs)]

mod ids;
pub mod limits;
mod money;

pub use ids::{CommunityId, CycleId, IdError, MemberId, SlotCount};
pub use money::{Money, PriceUnits, UnitError, Wh};
