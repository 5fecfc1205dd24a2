//! The billing authority's side: [`SharedBilling`] records each cycle's
//! context and its members' [`HiddenData`], unmasks the community aggregates,
//! derives the cycle's public weights and has a [`ComputeBackend`] evaluate
//! every household's ciphertexts into a [`HiddenBill`].
//!
//! A cycle moves `collecting -> ready -> billed`; every call either moves it
//! forward or returns a typed [`BillingError`] and changes nothing.

#![warn(missing_docs)]

mod backend;
mod billing;
pub mod budget;
pub mod community;

pub use backend::{BackendChoice, ComputeBackend, CpuBackend, EvalJob};
pub use billing::{BillingError, CycleStatus, SharedBilling};
pub use pb_hiding::{HiddenBill, HiddenData};
