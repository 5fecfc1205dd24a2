//! Decimal inputs written by people (kWh, currency per kWh) turned into
//! checked integer units; every error names its field and index.

use pb_units::{PriceUnits, Wh};

/// Converts `values` (kWh per slot) to watt-hours, checking there are
/// `expected` of them.
pub fn energy_kwh(field: &str, values: &[f64], expected: usize) -> Result<Vec<Wh>, String> {
    if values.len() != expected {
        return Err(format!(
            "{field} has {} values, expected {expected} (one per price slot)",
            values.len()
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(t, &v)| Wh::from_kwh(v).map_err(|e| format!("{field}[{t}]: {e} kWh")))
        .collect()
}

/// Converts `values` (currency per kWh per slot) to price units, checking
/// there are `expected` of them.
pub fn prices_per_kwh(
    field: &str,
    values: &[f64],
    expected: usize,
) -> Result<Vec<PriceUnits>, String> {
    if values.len() != expected {
        return Err(format!(
            "{field} has {} values, expected {expected} (as prices.trading)",
            values.len()
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(t, &v)| {
            PriceUnits::from_currency_per_kwh(v)
                .map_err(|e| format!("{field}[{t}]: {e} currency/kWh"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_field_and_index() {
        assert_eq!(
            energy_kwh("a", &[1.0, 0.5], 2).unwrap(),
            vec![Wh(1000), Wh(500)]
        );
        assert!(
            energy_kwh("a", &[1.0], 2)
                .unwrap_err()
                .contains("a has 1 values")
        );
        assert!(
            energy_kwh("a", &[1.0, f64::NAN], 2)
                .unwrap_err()
                .starts_with("a[1]")
        );
        assert!(
            prices_per_kwh("p", &[1e9], 1)
                .unwrap_err()
                .starts_with("p[0]")
        );
    }
}
