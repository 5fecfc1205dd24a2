//! `private_billing._native`: the PyO3 bindings behind the Python package
//! `private_billing` (see `python/private_billing/__init__.py` and
//! `docs/python.md`).
//!
//! Every function checks its input and raises `ValueError` or `TypeError`
//! (or a subclass of `private_billing.Error` for network failures) before
//! anything is recorded; heavy work runs with the GIL released.

#![warn(missing_docs)]

use pyo3::prelude::*;

mod community;
mod convert;
mod local;
mod net;
mod objects;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<objects::CycleContext>()?;
    m.add_class::<objects::Data>()?;
    m.add_class::<objects::IdentityKey>()?;
    m.add_class::<objects::PublicKey>()?;
    m.add_class::<objects::HidingContext>()?;
    m.add_class::<objects::HiddenData>()?;
    m.add_class::<objects::HiddenBill>()?;
    m.add_class::<objects::DropoutCorrection>()?;
    m.add_class::<objects::Bill>()?;
    m.add_class::<objects::SharedBilling>()?;
    m.add_class::<local::LocalCommunity>()?;
    m.add_function(wrap_pyfunction!(community::simulate_text, m)?)?;
    m.add_function(wrap_pyfunction!(community::simulate_file, m)?)?;
    m.add_function(wrap_pyfunction!(community::plaintext_bills_py, m)?)?;
    m.add_function(wrap_pyfunction!(net::bill_from_api, m)?)?;
    m.add_class::<net::ServerHandle>()?;
    m.add_function(wrap_pyfunction!(net::launch_edge, m)?)?;
    m.add_function(wrap_pyfunction!(net::launch_core, m)?)?;
    m.add_function(wrap_pyfunction!(net::keygen, m)?)?;
    m.add_function(wrap_pyfunction!(net::core_request, m)?)?;
    m.add_function(wrap_pyfunction!(net::put_context, m)?)?;
    m.add_function(wrap_pyfunction!(net::put_roster, m)?)?;
    Ok(())
}
