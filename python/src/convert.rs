//! Python values to checked engine values, and errors to Python exceptions.

use pb_model::parse::{Rounding, Units};
use pb_units::{CycleId, Decimal, MemberId};
use pyo3::exceptions::{PyTypeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyString};

/// A `ValueError` with `message`.
pub fn value_error(message: impl ToString) -> PyErr {
    PyValueError::new_err(message.to_string())
}

/// An exception of `private_billing.errors` (`NetworkError`,
/// `RefusedError`), or a `ValueError` if that module cannot be imported.
pub fn package_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = py
        .import("private_billing.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message.clone(),)));
    match made {
        Ok(e) => PyErr::from_value(e),
        Err(_) => value_error(message),
    }
}

/// `decimal.Decimal(text)`.
pub fn py_decimal<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("decimal")?.getattr("Decimal")?.call1((text,))
}

/// A cycle id: a non-negative integer below 2^64.
pub fn cycle_id(value: &Bound<'_, PyAny>) -> PyResult<CycleId> {
    if value.is_instance_of::<PyBool>() || !value.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "cycle_id must be an integer, not {}",
            type_name(value)
        )));
    }
    let n: i128 = value.call_method0("__index__")?.extract().map_err(|_| {
        value_error("cycle_id is out of range (0 to 18446744073709551615)".to_string())
    })?;
    u64::try_from(n)
        .map(CycleId)
        .map_err(|_| value_error(format!("cycle_id {n} is out of range (0 to 2^64 - 1)")))
}

/// A household id: a string or an integer (as in the community file),
/// checked as a member id (1 to 64 characters of `[A-Za-z0-9_.-]`).
pub fn member_id(value: &Bound<'_, PyAny>, field: &str) -> PyResult<MemberId> {
    let text = if let Ok(s) = value.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        value.str()?.to_cow()?.into_owned()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a string or an integer, not {}",
            type_name(value)
        )));
    };
    MemberId::new(text).map_err(|e| value_error(format!("{field}: {e}")))
}

/// The name of a value's type, for messages.
pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// One number, read exactly: `int`, `float` (its shortest repr),
/// `decimal.Decimal`, a numeric `str`, or a numpy scalar.
fn decimal_of(value: &Bound<'_, PyAny>, field: &str, index: usize) -> PyResult<Decimal> {
    let at = || format!("{field}[{index}]");
    let not_finite = |what: &str| {
        value_error(format!(
            "{}: {what} is not a value; write a finite decimal number",
            at()
        ))
    };
    let parse = |text: &str| -> PyResult<Decimal> {
        text.parse::<Decimal>()
            .map_err(|e| value_error(format!("{}: {e}", at())))
    };
    let from_float = |x: f64| -> PyResult<Decimal> {
        if x.is_nan() {
            return Err(not_finite("NaN (not a number)"));
        }
        Decimal::from_f64(x).ok_or_else(|| not_finite("infinity"))
    };
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{}: a boolean is not an amount",
            at()
        )));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return parse(&s.to_cow()?);
    }
    if value.is_instance_of::<PyFloat>() {
        return from_float(value.extract::<f64>()?);
    }
    if value.is_instance_of::<PyInt>() {
        return parse(&value.str()?.to_cow()?);
    }
    let py = value.py();
    let decimal_type = py.import("decimal")?.getattr("Decimal")?;
    if value.is_instance(&decimal_type)? {
        if !value.call_method0("is_finite")?.extract::<bool>()? {
            return Err(if value.call_method0("is_nan")?.extract::<bool>()? {
                not_finite("NaN (not a number)")
            } else {
                not_finite("infinity")
            });
        }
        return parse(&value.str()?.to_cow()?);
    }
    if value.hasattr("__index__")? {
        return parse(&value.call_method0("__index__")?.str()?.to_cow()?);
    }
    if value.hasattr("__float__")? {
        return from_float(value.call_method0("__float__")?.extract::<f64>()?);
    }
    Err(PyTypeError::new_err(format!(
        "{}: expected a number, not {}",
        at(),
        type_name(value)
    )))
}

/// A vector of numbers: a list, a tuple, a one-dimensional numpy array or
/// any other iterable of numbers (not a string, bytes or a mapping).
pub fn decimals(value: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<Decimal>> {
    if value.is_instance_of::<PyString>()
        || value.is_instance_of::<PyBytes>()
        || value.is_instance_of::<PyByteArray>()
        || value.is_instance_of::<PyDict>()
        || value.is_none()
    {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a sequence of numbers (list, tuple or numpy array), not {}",
            type_name(value)
        )));
    }
    // numpy: one C call to plain Python numbers (and a clear error for
    // arrays of more than one dimension below).
    let value = if value.hasattr("tolist")? && value.hasattr("ndim")? {
        let ndim: usize = value.getattr("ndim")?.extract()?;
        if ndim != 1 {
            return Err(value_error(format!(
                "{field} must be one-dimensional, this array has {ndim} dimensions"
            )));
        }
        value.call_method0("tolist")?
    } else {
        value.clone()
    };
    let iter = value.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{field} must be a sequence of numbers, not {}",
            type_name(&value)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        out.push(decimal_of(&item?, field, i)?);
    }
    Ok(out)
}

/// How values finer than the unit are treated.
pub fn units(strict: bool) -> Units {
    if strict { Units::Strict } else { Units::Round }
}

/// Emits the one rounding warning (a `UserWarning`), if anything was
/// rounded.
pub fn warn_rounding(py: Python<'_>, rounding: &Rounding) -> PyResult<()> {
    if let Some(w) = rounding.warning() {
        let w = w.replace("--strict-units", "strict_units=True");
        let category = py.get_type::<PyUserWarning>();
        let message = std::ffi::CString::new(w).unwrap_or_default();
        PyErr::warn(py, &category, &message, 2)?;
    }
    Ok(())
}
