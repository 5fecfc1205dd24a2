//! Decimal inputs written by people (kWh, currency per kWh) turned into
//! checked integer units; every error names its field and index.
//!
//! Values are taken as written ([`Decimal`]) and rounded half away from
//! zero to the unit (1 Wh, 1e-5 currency per kWh). What rounding changed is
//! gathered in a [`Rounding`] report, or refused under [`Units::Strict`].

use pb_units::{Decimal, PriceUnits, Rounded, UnitError, Wh};

/// What to do with a value finer than its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Units {
    /// Round it half away from zero and count it in the [`Rounding`]
    /// report.
    #[default]
    Round,
    /// Refuse it, naming it (`--strict-units`).
    Strict,
}

/// What rounding to the unit changed in one input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rounding {
    /// How many values were rounded.
    pub count: usize,
    /// The largest change: its size in the input's unit (as written by
    /// the rounding), the unit, and the value's field and index.
    pub largest: Option<(f64, &'static str, String)>,
}

impl Rounding {
    fn record(&mut self, change: f64, unit: &'static str, at: impl FnOnce() -> String) {
        if change == 0.0 {
            return;
        }
        self.count += 1;
        if self.largest.as_ref().is_none_or(|(c, _, _)| change > *c) {
            self.largest = Some((change, unit, at()));
        }
    }

    /// Adds another report to this one.
    pub fn merge(&mut self, other: Rounding) {
        self.count += other.count;
        if let Some((c, unit, at)) = other.largest {
            self.record(c, unit, || at);
            self.count -= 1;
        }
    }

    /// The one warning line for people, or `None` when nothing was rounded.
    pub fn warning(&self) -> Option<String> {
        let (change, unit, at) = self.largest.as_ref()?;
        Some(format!(
            "{} value(s) finer than the unit (1 Wh = 0.001 kWh, 0.00001 currency/kWh) were \
             rounded half away from zero; the largest change was {change} {unit} at {at} \
             (--strict-units refuses such values)",
            self.count
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn convert<T>(
    field: &str,
    values: &[Decimal],
    expected: usize,
    what: &str,
    units: Units,
    rounding: &mut Rounding,
    unit: &'static str,
    one: fn(&Decimal) -> Result<Rounded<T>, UnitError>,
) -> Result<Vec<T>, String> {
    if values.len() != expected {
        return Err(format!(
            "{field} has {} values, expected {expected} ({what})",
            values.len()
        ));
    }
    let mut out = Vec::with_capacity(values.len());
    for (t, v) in values.iter().enumerate() {
        let r = one(v).map_err(|e| format!("{field}[{t}]: {e}"))?;
        if r.change != 0.0 && units == Units::Strict {
            return Err(format!(
                "{field}[{t}]: {} {unit} is finer than the unit (0.001 kWh, 0.00001 currency/kWh) \
                 and --strict-units refuses rounding it",
                pb_units::shorten(&v.to_string())
            ));
        }
        rounding.record(r.change, unit, || format!("{field}[{t}]"));
        out.push(r.value);
    }
    Ok(out)
}

/// Converts `values` (kWh per slot) to watt-hours, checking there are
/// `expected` of them.
pub fn energy_kwh(
    field: &str,
    values: &[Decimal],
    expected: usize,
    units: Units,
    rounding: &mut Rounding,
) -> Result<Vec<Wh>, String> {
    convert(
        field,
        values,
        expected,
        "one per price slot",
        units,
        rounding,
        "kWh",
        Wh::from_kwh,
    )
}

/// Converts `values` (currency per kWh per slot) to price units, checking
/// there are `expected` of them.
pub fn prices_per_kwh(
    field: &str,
    values: &[Decimal],
    expected: usize,
    units: Units,
    rounding: &mut Rounding,
) -> Result<Vec<PriceUnits>, String> {
    convert(
        field,
        values,
        expected,
        "as prices.trading",
        units,
        rounding,
        "currency/kWh",
        PriceUnits::from_currency_per_kwh,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(xs: &[&str]) -> Vec<Decimal> {
        xs.iter().map(|x| x.parse().unwrap()).collect()
    }

    #[test]
    fn errors_name_field_and_index() {
        let mut r = Rounding::default();
        assert_eq!(
            energy_kwh("a", &d(&["1", "0.5"]), 2, Units::Round, &mut r).unwrap(),
            vec![Wh(1000), Wh(500)]
        );
        let e = energy_kwh("a", &d(&["1"]), 2, Units::Round, &mut r).unwrap_err();
        assert!(e.contains("a has 1 values"), "{e}");
        let e = energy_kwh("a", &d(&["1", "-100.5"]), 2, Units::Round, &mut r).unwrap_err();
        assert_eq!(
            e,
            "a[1]: -100.5 kWh is beyond the limit of 100 kWh in absolute value"
        );
        let e = prices_per_kwh("p", &d(&["1e9"]), 1, Units::Round, &mut r).unwrap_err();
        assert!(
            e.starts_with("p[0]: 1e9 currency/kWh is beyond the limit of 100"),
            "{e}"
        );
        assert_eq!(r.count, 0);
    }

    #[test]
    fn rounding_is_reported_or_refused() {
        let mut r = Rounding::default();
        let v = d(&["0.5005", "0.0004", "1.25", "-0.00049"]);
        let wh = energy_kwh("promises_kwh", &v, 4, Units::Round, &mut r).unwrap();
        assert_eq!(wh, vec![Wh(501), Wh(0), Wh(1250), Wh(0)]);
        assert_eq!(r.count, 3);
        let w = r.warning().unwrap();
        assert!(
            w.starts_with("3 value(s)") && w.contains("0.0005 kWh at promises_kwh[0]"),
            "{w}"
        );
        let e = energy_kwh("x", &v, 4, Units::Strict, &mut Rounding::default()).unwrap_err();
        assert!(
            e.starts_with("x[0]: 0.5005 kWh is finer than the unit"),
            "{e}"
        );
        assert!(Rounding::default().warning().is_none());
        let mut total = Rounding::default();
        total.merge(r.clone());
        total.merge(r);
        assert_eq!(total.count, 6);
    }
}
