//! The billing authority's side: [`SharedBilling`] records each cycle's
//! context and its members' [`HiddenData`], unmasks the community aggregates,
//! derives the cycle's public weights and has a [`ComputeBackend`] evaluate
//! every household's ciphertexts into a [`HiddenBill`].
//!
//! [`CycleBiller`] bills a cycle batch by batch instead, for a billing
//! authority that keeps its members' data in a store rather than in memory.
//!
//! A cycle moves `collecting -> ready -> billed`; every call either moves it
//! forward or returns a typed [`BillingError`] and changes nothing.

#![warn(missing_docs)]

mod backend;
mod billing;
pub mod budget;
pub mod community;
mod stream;

pub use backend::{BackendChoice, ComputeBackend, CpuBackend, DEFAULT_BATCH, EvalJob};
pub use billing::{BillingError, CycleStatus, SharedBilling};
pub use pb_hiding::{HiddenBill, HiddenData};
pub use stream::CycleBiller;
