//! Exact integer units and identifiers of private-billing.
//!
//! Everything the system computes is an integer (design section 2):
//!
//! * energy in signed watt-hours ([`Wh`]; `+` consumption, `-` supply),
//! * prices in signed units of 1e-5 currency per kWh ([`PriceUnits`]),
//! * money in signed units of 1e-8 currency ([`Money`] = `Wh` x `PriceUnits`).
//!
//! Decimal inputs (kWh, currency per kWh) are kept as written
//! ([`Decimal`], never an `f64`) and converted with [`Wh::from_kwh`] and
//! [`PriceUnits::from_currency_per_kwh`], which round the decimal value to
//! the nearest unit, halves away from zero, and refuse values outside the
//! per-value limits in [`limits`]. The per-cycle limits that the
//! homomorphic budget adds are in [`limits`] too (design section 2).

#![warn(missing_docs)]

pub mod decimal;
mod ids;
pub mod limits;
mod money;

pub use decimal::{Decimal, DecimalError, shorten};
pub use ids::{CommunityId, CycleId, IdError, MemberId, SlotCount};
pub use money::{Money, PriceUnits, Rounded, UnitError, Wh};
