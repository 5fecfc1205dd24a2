//! `simulate`: `pbill simulate` in the Python process.

use std::path::PathBuf;

use pb_inputs::HouseholdId;
use pb_shared_billing::CpuBackend;
use pb_shared_billing::community::{plaintext_bills, run_local};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{units, value_error, warn_rounding};
use crate::objects::{model_of, plain_bill};

fn simulate(
    py: Python<'_>,
    origin: &str,
    text: &str,
    model: &Bound<'_, PyAny>,
    plaintext: bool,
    min_members: usize,
    strict_units: bool,
) -> PyResult<Py<PyDict>> {
    let model = model_of(model)?;
    let community = pb_inputs::community(text, model, min_members, units(strict_units))
        .map_err(|e| value_error(format!("{origin}: {e}")))?;
    warn_rounding(py, &community.rounding)?;
    let bills = py.detach(|| {
        if plaintext {
            plaintext_bills(&community.context, &community.households, min_members)
                .map_err(|e| e.to_string())
        } else {
            run_local(
                &community.context,
                &community.households,
                Box::new(CpuBackend::new()),
                min_members,
                None,
            )
            .map(|run| run.bills)
            .map_err(|e| e.to_string())
        }
    });
    let bills = bills.map_err(value_error)?;
    let out = PyDict::new(py);
    let cycle = community.context.cycle();
    for ((id, data), bill) in community.ids.iter().zip(&community.households).zip(&bills) {
        let bill = plain_bill(bill, cycle, data.member());
        match id {
            HouseholdId::Text(s) => out.set_item(s, bill)?,
            HouseholdId::Number(n) => {
                let key = py
                    .import("builtins")?
                    .getattr("int")?
                    .call1((n.to_string(),))?;
                out.set_item(key, bill)?
            }
        }
    }
    Ok(out.unbind())
}

/// `simulate` on a community given as JSON text.
#[pyfunction]
#[pyo3(signature = (text, model, plaintext, min_members, strict_units))]
pub fn simulate_text(
    py: Python<'_>,
    text: &str,
    model: &Bound<'_, PyAny>,
    plaintext: bool,
    min_members: usize,
    strict_units: bool,
) -> PyResult<Py<PyDict>> {
    simulate(
        py,
        "community",
        text,
        model,
        plaintext,
        min_members,
        strict_units,
    )
}

/// `simulate` on a community file (read within the cap of data files).
#[pyfunction]
#[pyo3(signature = (path, model, plaintext, min_members, strict_units))]
pub fn simulate_file(
    py: Python<'_>,
    path: PathBuf,
    model: &Bound<'_, PyAny>,
    plaintext: bool,
    min_members: usize,
    strict_units: bool,
) -> PyResult<Py<PyDict>> {
    let text = pb_inputs::bounded_text(&path, pb_inputs::Kind::Data).map_err(value_error)?;
    simulate(
        py,
        &path.display().to_string(),
        &text,
        model,
        plaintext,
        min_members,
        strict_units,
    )
}

/// The bills of `data` (`{household_id: Data}`) under `context` in clear,
/// without any cryptography: the plaintext billing model, refusing what
/// the encrypted path refuses.
#[pyfunction(name = "plaintext_bills")]
#[pyo3(signature = (context, data, *, min_members = pb_units::limits::DEFAULT_MIN_MEMBERS))]
pub fn plaintext_bills_py<'py>(
    py: Python<'py>,
    context: &Bound<'py, crate::objects::CycleContext>,
    data: &Bound<'py, PyDict>,
    min_members: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let ctx = &context.get().inner;
    let mut keys = Vec::with_capacity(data.len());
    let mut households = Vec::with_capacity(data.len());
    for (k, v) in data.iter() {
        let member = crate::convert::member_id(&k, "household id")?;
        let d = v.cast::<crate::objects::Data>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "data[{member}] must be a Data, not {}",
                crate::convert::type_name(&v)
            ))
        })?;
        households.push(d.get().for_member(&member)?);
        keys.push(k);
    }
    let bills = py
        .detach(|| plaintext_bills_engine(ctx, &households, min_members))
        .map_err(value_error)?;
    let out = PyDict::new(py);
    for ((k, d), b) in keys.into_iter().zip(&households).zip(&bills) {
        out.set_item(k, plain_bill(b, ctx.cycle(), d.member()))?;
    }
    Ok(out)
}

fn plaintext_bills_engine(
    ctx: &pb_model::CycleContext,
    households: &[pb_model::Data],
    min_members: usize,
) -> Result<Vec<pb_model::Bill>, String> {
    plaintext_bills(ctx, households, min_members).map_err(|e| e.to_string())
}
