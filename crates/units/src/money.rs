use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::limits::{MAX_PRICE_UNITS, MAX_SLOT_WH};

/// Why a decimal input could not become an exact unit.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum UnitError {
    /// The input was NaN or infinite.
    #[error("{value} is not a finite number")]
    NotFinite {
        /// The offending input.
        value: f64,
    },
    /// The input converted to a value outside the accepted range.
    #[error("{value} is out of range (at most {limit} in absolute value)")]
    OutOfRange {
        /// The offending input, as given.
        value: f64,
        /// The largest accepted absolute value, in the input's unit.
        limit: f64,
    },
}

/// Rounds `value * scale` to the nearest integer (half away from zero) and
/// checks it against `limit`, all without any lossy cast on bad input.
fn scaled(value: f64, scale: f64, limit: i64) -> Result<i64, UnitError> {
    if !value.is_finite() {
        return Err(UnitError::NotFinite { value });
    }
    let rounded = (value * scale).round();
    // `limit` is far below 2^53, so the comparison is exact.
    if rounded.abs() > limit as f64 {
        return Err(UnitError::OutOfRange {
            value,
            limit: limit as f64 / scale,
        });
    }
    Ok(rounded as i64)
}

/// Checks an integer against `|value| <= limit`.
fn within(value: i64, limit: i64) -> Result<i64, UnitError> {
    if value.unsigned_abs() > limit as u64 {
        return Err(UnitError::OutOfRange {
            value: value as f64,
            limit: limit as f64,
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

    /// Converts kWh to the nearest Wh, refusing NaN, infinities and values
    /// beyond [`MAX_SLOT_WH`].
    ///
    /// ```
    /// use pb_units::Wh;
    /// assert_eq!(Wh::from_kwh(1.2345).unwrap(), Wh(1235));
    /// assert!(Wh::from_kwh(f64::NAN).is_err());
    /// ```
    pub fn from_kwh(kwh: f64) -> Result<Wh, UnitError> {
        scaled(kwh, 1e3, MAX_SLOT_WH).map(Wh)
    }

    /// Checks an integer Wh value against [`MAX_SLOT_WH`].
    pub fn checked(wh: i64) -> Result<Wh, UnitError> {
        within(wh, MAX_SLOT_WH).map(Wh)
    }

    /// The value in kWh, for display only.
    pub fn kwh(self) -> f64 {
        self.0 as f64 / 1e3
    }
}

/// Signed price in units of 1e-5 currency per kWh (= 1e-8 currency per Wh).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct PriceUnits(pub i64);

impl PriceUnits {
    /// Converts currency per kWh to the nearest price unit, refusing NaN,
    /// infinities and values beyond [`MAX_PRICE_UNITS`].
    ///
    /// ```
    /// use pb_units::PriceUnits;
    /// assert_eq!(PriceUnits::from_currency_per_kwh(0.2512).unwrap(), PriceUnits(25_120));
    /// ```
    pub fn from_currency_per_kwh(price: f64) -> Result<PriceUnits, UnitError> {
        scaled(price, 1e5, MAX_PRICE_UNITS).map(PriceUnits)
    }

    /// Checks an integer price against [`MAX_PRICE_UNITS`].
    pub fn checked(units: i64) -> Result<PriceUnits, UnitError> {
        within(units, MAX_PRICE_UNITS).map(PriceUnits)
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

    #[test]
    fn kwh_rounds_half_away_from_zero() {
        assert_eq!(Wh::from_kwh(0.0005).unwrap(), Wh(1));
        assert_eq!(Wh::from_kwh(-0.0005).unwrap(), Wh(-1));
        assert_eq!(Wh::from_kwh(-2.5).unwrap(), Wh(-2500));
    }

    #[test]
    fn non_finite_and_out_of_range_inputs_are_refused() {
        assert!(matches!(
            Wh::from_kwh(f64::INFINITY),
            Err(UnitError::NotFinite { .. })
        ));
        assert!(matches!(
            Wh::from_kwh(100.0005),
            Err(UnitError::OutOfRange { .. })
        ));
        assert!(Wh::from_kwh(100.0).is_ok());
        assert!(Wh::from_kwh(-100.0).is_ok());
        assert!(PriceUnits::from_currency_per_kwh(100.00001).is_err());
        assert!(PriceUnits::from_currency_per_kwh(f64::NAN).is_err());
        assert!(Wh::checked(MAX_SLOT_WH + 1).is_err());
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
        fn accepted_kwh_are_within_limits(kwh in -200.0f64..200.0) {
            match Wh::from_kwh(kwh) {
                Ok(w) => prop_assert!(w.0.abs() <= MAX_SLOT_WH),
                Err(_) => prop_assert!((kwh * 1e3).round().abs() > MAX_SLOT_WH as f64),
            }
        }
    }
}
