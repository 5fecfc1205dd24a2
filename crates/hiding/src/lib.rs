//! What a household's core does with its data: [`HidingContext::hide`] turns
//! a [`Data`] into [`HiddenData`] (PRZS-masked aggregates plus seeded GLWE
//! ciphertexts of the billed vectors), and [`HidingContext::decrypt`] turns
//! the [`HiddenBill`] that the billing authority returns into a [`Bill`].
//! Both travel as versioned bincode ([`wire`]).

#![warn(missing_docs)]

mod context;
pub mod wire;

pub use context::{DropoutCorrection, HiddenBill, HiddenData, HidingContext, HidingError};
pub use pb_model::{Bill, Data};
