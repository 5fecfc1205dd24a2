//! Household data, cycle context and billing models (design sections 3, 5).
//!
//! A household's [`Data`] turns into per-slot [`SlotVectors`] in clear at
//! its own core. A [`BillingModel`] is a value: it names the vectors it
//! bills on ([`BillingModel::bill_side`], [`BillingModel::reward_side`]) and
//! the community aggregates it needs ([`BillingModel::aggregates`]), and it
//! turns aggregates and prices into public per-slot [`Weights`]. Each bill
//! is then *linear* in the household's vectors:
//! `bill = <bill_side, weights.bill>`, `reward = <reward_side, weights.reward>`.
//!
//! [`reference`] computes the same bills directly from the formulas, without
//! weights or cryptography; tests demand equality to the money unit.

#![warn(missing_docs)]

mod context;
mod data;
mod models;
pub mod parse;
pub mod reference;

pub use context::CycleContext;
pub use data::{Data, SlotVectors, Vector};
pub use models::{Aggregate, Aggregates, Bill, BillingModel, Weights, div_round_half_away};

use thiserror::Error;

/// Why model inputs were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A vector has the wrong length.
    #[error("{field} has {found} values, expected {expected}")]
    Length {
        /// Which input.
        field: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A value is out of range.
    #[error("{field}[{slot}] = {value} is out of range (at most {limit} in absolute value)")]
    Range {
        /// Which input.
        field: &'static str,
        /// Slot index.
        slot: usize,
        /// The value, in integer units.
        value: i64,
        /// The limit, in integer units.
        limit: i64,
    },
    /// The number of slots is invalid.
    #[error(transparent)]
    Slots(#[from] pb_units::IdError),
    /// An aggregate the model needs is missing or of the wrong length.
    #[error("aggregate {0:?} missing or of the wrong length")]
    Aggregate(Aggregate),
    /// The prices could make a household's bill leave the encrypted range.
    #[error(
        "prices: with these {slots} slots a household could be billed {reach} currency \
         for its energy alone ({side} side, largest price {price} currency/kWh at slot {slot}, \
         at up to 100 kWh a slot), more than the {limit} currency a cycle's prices may allow; \
         lower the prices or bill fewer slots per cycle"
    )]
    PriceBudget {
        /// `retail` (bill side) or `feed_in` (reward side).
        side: &'static str,
        /// Slots of the cycle.
        slots: usize,
        /// Slot of the largest price.
        slot: usize,
        /// That price, currency per kWh.
        price: String,
        /// The energy cost a household could reach, currency.
        reach: String,
        /// The limit, currency.
        limit: String,
    },
    /// A derived weight does not fit the encrypted range.
    #[error("slot {slot}: derived rate {value} money units is too large to bill")]
    Weight {
        /// Slot index.
        slot: usize,
        /// The weight.
        value: i128,
    },
}
