use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::decimal::{Decimal, OutOfRange};
use crate::limits::{MAX_PRICE_UNITS, MAX_SLOT_WH};

/// A decimal input outside the range of its unit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{shown} {unit} is beyond the limit of {limit} {unit} in absolute value")]
pub struct UnitError {
    /// The value as written (shortened) or, for integer units, in the
    /// input's unit.
    pub shown: String,
    /// The largest accepted absolute value, in the input's unit.
    pub limit: String,
    /// The input's unit (`kWh`, `currency/kWh`).
    pub unit: &'static str,
}

/// A value turned into integer units, with what rounding changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rounded<T> {
    /// The value in units.
    pub value: T,
    /// The absolute change due to rounding, in the input's unit (0 when
    /// the input was exact to the unit).
    pub change: f64,
}

/// Rounds `value * 10^scale` half away from zero, against `limit` units.
fn scaled(
    value: &Decimal,
    scale: u32,
    limit: i64,
    unit: &'static str,
) -> Result<Rounded<i64>, UnitError> {
    match value.scaled(scale, limit) {
        Ok(s) => Ok(Rounded {
            value: s.units,
            change: s
                .change
                .map_or(0.0, |c| c.parse::<f64>().unwrap_or(f64::MIN_POSITIVE)),
        }),
        Err(OutOfRange { shown, limit }) => Err(UnitError { shown, limit, unit }),
    }
}

/// Checks an integer against `|value| <= limit`, saying both in the input's
/// unit (`10^-scale` of it per integer unit).
fn within(value: i64, limit: i64, scale: u32, unit: &'static str) -> Result<i64, UnitError> {
    if value.unsigned_abs() > limit as u64 {
        return Err(UnitError {
            shown: Decimal::from_units(value, scale).to_string(),
            limit: Decimal::from_units(limit, scale).to_string(),
            unit,
        });
    }
    Ok(value)
}

/// Signed energy in watt-hours: positive is consumption, negative supply.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Wh(pub i64);

impl Wh {
    /// Zero energy.
    pub const ZERO: Wh = Wh(0);

    /// Converts kWh, as written, to the nearest Wh (half away from zero),
    /// refusing values beyond [`MAX_SLOT_WH`].
    ///
    /// ```
    /// use pb_units::{Decimal, Wh};
    /// let kwh: Decimal = "0.5005".parse().unwrap();
    /// assert_eq!(Wh::from_kwh(&kwh).unwrap().value, Wh(501));
    /// ```
    pub fn from_kwh(kwh: &Decimal) -> Result<Rounded<Wh>, UnitError> {
        scaled(kwh, 3, MAX_SLOT_WH, "kWh").map(|r| Rounded {
            value: Wh(r.value),
            change: r.change,
        })
    }

    /// Checks an integer Wh value against [`MAX_SLOT_WH`].
    pub fn checked(wh: i64) -> Result<Wh, UnitError> {
        within(wh, MAX_SLOT_WH, 3, "kWh").map(Wh)
    }

    /// The value in kWh, as an exact decimal.
    pub fn kwh(self) -> Decimal {
        Decimal::from_units(self.0, 3)
    }
}

/// Signed price in units of 1e-5 currency per kWh (= 1e-8 currency per Wh).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct PriceUnits(pub i64);

impl PriceUnits {
    /// Converts currency per kWh, as written, to the nearest price unit
    /// (half away from zero), refusing values beyond [`MAX_PRICE_UNITS`].
    ///
    /// ```
    /// use pb_units::{Decimal, PriceUnits};
    /// let p: Decimal = "3.5e-5".parse().unwrap();
    /// assert_eq!(PriceUnits::from_currency_per_kwh(&p).unwrap().value, PriceUnits(4));
    /// ```
    pub fn from_currency_per_kwh(price: &Decimal) -> Result<Rounded<PriceUnits>, UnitError> {
        scaled(price, 5, MAX_PRICE_UNITS, "currency/kWh").map(|r| Rounded {
            value: PriceUnits(r.value),
            change: r.change,
        })
    }

    /// Checks an integer price against [`MAX_PRICE_UNITS`].
    pub fn checked(units: i64) -> Result<PriceUnits, UnitError> {
        within(units, MAX_PRICE_UNITS, 5, "currency/kWh").map(PriceUnits)
    }

    /// The price in currency per kWh, as an exact decimal.
    pub fn per_kwh(self) -> Decimal {
        Decimal::from_units(self.0, 5)
    }

    /// The cost of `energy` at this price, exact.
    pub fn times(self, energy: Wh) -> Money {
        Money(self.0 as i128 * energy.0 as i128)
    }
}

/// Signed money in units of 1e-8 currency. Held as `i128` so that the
/// plaintext reference can never overflow, whatever it is given; values that
/// leave the encrypted range are refused by the budget checks instead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Money(pub i128);

impl Money {
    /// No money.
    pub const ZERO: Money = Money(0);
    /// Money units per currency unit.
    pub const UNITS_PER_CURRENCY: i128 = 100_000_000;

    /// Exact decimal string with 8 decimals, e.g. `-12.00500000`.
    ///
    /// ```
    /// use pb_units::Money;
    /// assert_eq!(Money(-1_200_500_000).to_decimal_string(), "-12.00500000");
    /// assert_eq!(Money(5).to_decimal_string(), "0.00000005");
    /// ```
    pub fn to_decimal_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = Self::UNITS_PER_CURRENCY as u128;
        format!("{sign}{}.{:08}", abs / per, abs % per)
    }

    /// Parses the format of [`Money::to_decimal_string`] (at most 8 decimals).
    pub fn from_decimal_str(s: &str) -> Option<Money> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty()
            || frac.len() > 8
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int: i128 = int.parse().ok()?;
        let frac_val: i128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<8}").parse().ok()?
        };
        let v = int
            .checked_mul(Self::UNITS_PER_CURRENCY)?
            .checked_add(frac_val)?;
        Some(Money(if neg { -v } else { v }))
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

impl fmt::Display for Wh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Wh", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kwh(s: &str) -> Result<Wh, UnitError> {
        Wh::from_kwh(&s.parse().unwrap()).map(|r| r.value)
    }

    #[test]
    fn kwh_rounds_half_away_from_zero() {
        assert_eq!(kwh("0.0005").unwrap(), Wh(1));
        assert_eq!(kwh("-0.0005").unwrap(), Wh(-1));
        assert_eq!(kwh("-2.5").unwrap(), Wh(-2500));
        assert_eq!(kwh("0.5005").unwrap(), Wh(501));
        let r = Wh::from_kwh(&"0.0004".parse().unwrap()).unwrap();
        assert_eq!((r.value, r.change), (Wh(0), 0.0004));
    }

    #[test]
    fn out_of_range_inputs_are_refused_in_their_unit() {
        let e = kwh("100.0005").unwrap_err();
        assert_eq!(
            e.to_string(),
            "100.0005 kWh is beyond the limit of 100 kWh in absolute value"
        );
        assert!(kwh("100").is_ok());
        assert!(kwh("-100.0004").is_ok());
        let p = |s: &str| PriceUnits::from_currency_per_kwh(&s.parse().unwrap());
        assert!(p("100.00001").is_err());
        assert_eq!(p("3.5e-5").unwrap().value, PriceUnits(4));
        let e = Wh::checked(MAX_SLOT_WH + 1).unwrap_err();
        assert_eq!(e.shown, "100.001");
        assert!(PriceUnits::checked(-MAX_PRICE_UNITS).is_ok());
    }

    #[test]
    fn price_times_energy_is_money() {
        assert_eq!(PriceUnits(25_000).times(Wh(1000)), Money(25_000_000));
    }

    proptest! {
        #[test]
        fn money_decimal_strings_round_trip(v in -(1i128 << 100)..(1i128 << 100)) {
            let s = Money(v).to_decimal_string();
            prop_assert_eq!(Money::from_decimal_str(&s), Some(Money(v)));
        }

        #[test]
        fn accepted_kwh_are_within_limits(units in -200_000i64..200_000, extra in 0u32..3) {
            let text = Decimal::from_units(units * 10i64.pow(extra), 3 + extra).to_string();
            match kwh(&text) {
                Ok(w) => prop_assert!(w.0.abs() <= MAX_SLOT_WH && w.0 == units),
                Err(_) => prop_assert!(units.abs() > MAX_SLOT_WH),
            }
        }
    }
}
