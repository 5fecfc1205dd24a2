//! Decimal numbers exactly as people write them, and their exact rounding
//! to integer units (design section 2).
//!
//! A value read from a file or a request is kept as its text ([`Decimal`]):
//! `0.5005` kWh is `5005 * 10^-4` kWh, never the binary fraction nearest to
//! it, so rounding to the unit (half away from zero) follows the decimal
//! value: 500.5 Wh becomes 501 Wh. The rounding itself is done with
//! [`bigdecimal`] on at most [`MAX_DECIMAL_LEN`] characters, so it is exact
//! and cheap whatever the input.

use std::fmt;
use std::str::FromStr;

use bigdecimal::num_bigint::BigInt;
use bigdecimal::{BigDecimal, RoundingMode, ToPrimitive};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Longest number text accepted (characters), as written and in its JSON
/// form (which may gain a leading zero). Nobody writes a meter value with
/// more digits; longer texts are refused instead of being echoed or worked
/// on.
pub const MAX_DECIMAL_LEN: usize = 64;

/// Longest excerpt of an input echoed in an error message.
pub const ECHO_LEN: usize = 40;

/// Shortens `text` for an error message: at most [`ECHO_LEN`] characters,
/// with the full length said when cut.
///
/// ```
/// assert_eq!(pb_units::shorten("abc"), "abc");
/// assert!(pb_units::shorten(&"9".repeat(309)).ends_with("(309 characters)"));
/// ```
pub fn shorten(text: &str) -> String {
    let count = text.chars().count();
    if count <= ECHO_LEN {
        return text.to_string();
    }
    let head: String = text.chars().take(ECHO_LEN - 8).collect();
    format!("{head}... ({count} characters)")
}

/// Why a text is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecimalError {
    /// `NaN` in any spelling.
    #[error("NaN (not a number) is not a value: write a decimal number")]
    NaN,
    /// `Infinity`, `inf`, with any sign.
    #[error("{0} is infinite: write a finite decimal number")]
    Infinite(String),
    /// More than [`MAX_DECIMAL_LEN`] characters.
    #[error("{shown} is too long for a number (at most {MAX_DECIMAL_LEN} characters)")]
    TooLong {
        /// The text, shortened.
        shown: String,
    },
    /// Anything else that is not `[+-]digits[.digits][e[+-]digits]`.
    #[error("{0:?} is not a decimal number")]
    Syntax(String),
}

/// A decimal number as written, in JSON's number syntax (`-12.5e-3`).
///
/// Parsing ([`FromStr`]) accepts what people type in CSV and JSON: an
/// optional sign, digits with an optional decimal point, an optional
/// exponent; `NaN` and infinities are named in the error. In JSON,
/// [`Deserialize`] reads the number's own text (never an `f64`), and also
/// accepts a string holding a number; [`Serialize`] writes the number back
/// as it was written. Deserialisation needs `serde_json` (it goes through
/// [`serde_json::value::RawValue`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Canonical JSON number text.
    text: String,
    /// The value is `digits * 10^exp10` (digits without sign or point).
    negative: bool,
    digits: String,
    exp10: i64,
}

/// The exponent beyond which a value is certainly out of every range (or
/// certainly rounds to zero); keeps all arithmetic on small numbers.
const EXP_CLAMP: i64 = 1_000;

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Decimal, DecimalError> {
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if s.len() > MAX_DECIMAL_LEN {
            return Err(DecimalError::TooLong { shown: shorten(s) });
        }
        let lower = body.to_ascii_lowercase();
        if lower == "nan" {
            return Err(DecimalError::NaN);
        }
        if lower == "inf" || lower == "infinity" {
            return Err(DecimalError::Infinite(s.to_string()));
        }
        let syntax = || DecimalError::Syntax(shorten(s));
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return Err(syntax());
        }
        let exp: i64 = match exponent {
            None => 0,
            Some(e) => {
                let (eneg, edigits) = match e.as_bytes().first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if edigits.is_empty() || !all_digits(edigits) {
                    return Err(syntax());
                }
                let trimmed = edigits.trim_start_matches('0');
                // Longer exponents are far outside every range either way.
                let magnitude = if trimmed.len() > 6 {
                    EXP_CLAMP * 10
                } else {
                    trimmed.parse::<i64>().unwrap_or(0)
                };
                if eneg { -magnitude } else { magnitude }
            }
        };
        let int_canon = match int.trim_start_matches('0') {
            "" => "0",
            t => t,
        };
        let mut text = String::with_capacity(s.len() + 1);
        if negative {
            text.push('-');
        }
        text.push_str(int_canon);
        if !frac.is_empty() {
            text.push('.');
            text.push_str(frac);
        }
        if let Some(e) = exponent {
            text.push('e');
            text.push_str(e);
        }
        // The JSON form may be one character longer (".5" is "0.5"); it must
        // itself parse, so it is held to the same limit.
        if text.len() > MAX_DECIMAL_LEN {
            return Err(DecimalError::TooLong { shown: shorten(s) });
        }
        let digits = format!("{int}{frac}").trim_start_matches('0').to_string();
        Ok(Decimal {
            text,
            negative,
            digits,
            exp10: exp - frac.len() as i64,
        })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A decimal value turned into integer units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    /// The value in units, rounded half away from zero.
    pub units: i64,
    /// How far rounding moved the value, in the input's unit, as a plain
    /// decimal string (`"0.0004"`); `None` when the value was exact.
    pub change: Option<String>,
}

/// A value outside its range (in the input's unit, as written).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{shown} is beyond the limit of {limit} in absolute value")]
pub struct OutOfRange {
    /// The value as written, shortened.
    pub shown: String,
    /// The limit, in the input's unit.
    pub limit: String,
}

impl Decimal {
    /// The shortest decimal that reads back as `x` (Rust's `Display` of an
    /// `f64`): for values that a program computed, such as synthetic
    /// communities. `None` for NaN and infinities.
    pub fn from_f64(x: f64) -> Option<Decimal> {
        if !x.is_finite() {
            return None;
        }
        format!("{x}").parse().ok()
    }

    /// The value `units / 10^scale` as written (`Decimal::from_units(1235,
    /// 3)` is `1.235`).
    pub fn from_units(units: i64, scale: u32) -> Decimal {
        let text = BigDecimal::new(BigInt::from(units), scale as i64)
            .normalized()
            .to_plain_string();
        match text.parse() {
            Ok(d) => d,
            // A plain decimal string always parses; keep a value anyway.
            Err(_) => Decimal::zero(),
        }
    }

    fn zero() -> Decimal {
        Decimal {
            text: "0".into(),
            negative: false,
            digits: String::new(),
            exp10: 0,
        }
    }

    /// The value times `10^scale`, rounded half away from zero to an
    /// integer, refused when its absolute value exceeds `limit` units.
    ///
    /// ```
    /// use pb_units::Decimal;
    /// let d: Decimal = "0.5005".parse().unwrap();
    /// assert_eq!(d.scaled(3, 100_000).unwrap().units, 501);
    /// ```
    pub fn scaled(&self, scale: u32, limit: i64) -> Result<Scaled, OutOfRange> {
        let out_of_range = || OutOfRange {
            shown: shorten(&self.text),
            limit: Decimal::from_units(limit, scale).to_string(),
        };
        if self.digits.is_empty() {
            return Ok(Scaled {
                units: 0,
                change: None,
            });
        }
        let exp = self.exp10 + scale as i64;
        let width = self.digits.len() as i64;
        // |value * 10^scale| >= 10^(width + exp - 1).
        if width + exp - 1 > 18 {
            return Err(out_of_range());
        }
        if width + exp < 0 {
            // Below 0.1 unit: rounds to zero, and moves by the value itself.
            return Ok(Scaled {
                units: 0,
                change: Some(self.magnitude_string()),
            });
        }
        let mut mantissa: BigInt = self.digits.parse().map_err(|_| out_of_range())?;
        if self.negative {
            mantissa = -mantissa;
        }
        let exact = BigDecimal::new(mantissa, -exp);
        let rounded = exact.with_scale_round(0, RoundingMode::HalfUp);
        let units = rounded.to_i64().ok_or_else(out_of_range)?;
        if units.unsigned_abs() > limit.unsigned_abs() {
            return Err(out_of_range());
        }
        let change = (&rounded - &exact).abs();
        let change = (change != BigDecimal::from(0)).then(|| {
            let (m, e) = change.as_bigint_and_exponent();
            BigDecimal::new(m, e + scale as i64)
                .normalized()
                .to_plain_string()
        });
        Ok(Scaled { units, change })
    }

    /// `|value|` as a plain decimal string.
    fn magnitude_string(&self) -> String {
        if self.exp10 < -(MAX_DECIMAL_LEN as i64) {
            // Written with a large negative exponent: echo it, do not expand it.
            return self.text.trim_start_matches('-').to_string();
        }
        self.digits
            .parse::<BigInt>()
            .map(|m| {
                BigDecimal::new(m, -self.exp10)
                    .normalized()
                    .to_plain_string()
            })
            .unwrap_or_else(|_| self.text.trim_start_matches('-').to_string())
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.text.clone()) {
            Ok(raw) => raw.serialize(serializer),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        let text = if text.starts_with('"') {
            serde_json::from_str::<String>(text).map_err(serde::de::Error::custom)?
        } else {
            text.to_string()
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units(s: &str, scale: u32) -> i64 {
        s.parse::<Decimal>()
            .unwrap()
            .scaled(scale, i64::MAX)
            .unwrap()
            .units
    }

    #[test]
    fn decimal_ties_round_half_away_from_zero() {
        // The cases the binary path got wrong.
        assert_eq!(units("0.5005", 3), 501);
        assert_eq!(units("-0.5005", 3), -501);
        assert_eq!(units("3.5e-5", 5), 4);
        assert_eq!(units("0.0005", 3), 1);
        assert_eq!(units("0.00049999999999999999999999999", 3), 0);
        assert_eq!(units("1.2345", 3), 1235);
        assert_eq!(units("12e-1", 3), 1200);
        assert_eq!(units("+.5", 0), 1);
        assert_eq!(units("5.", 0), 5);
        assert_eq!(units("-0", 3), 0);
    }

    #[test]
    fn rounding_reports_its_change() {
        let d: Decimal = "0.0004".parse().unwrap();
        let s = d.scaled(3, 100_000).unwrap();
        assert_eq!((s.units, s.change.as_deref()), (0, Some("0.0004")));
        let s = "1.2345"
            .parse::<Decimal>()
            .unwrap()
            .scaled(3, 100_000)
            .unwrap();
        assert_eq!(s.change.as_deref(), Some("0.0005"));
        assert_eq!(
            "1.234"
                .parse::<Decimal>()
                .unwrap()
                .scaled(3, 9)
                .unwrap_err()
                .limit,
            "0.009"
        );
        assert_eq!(
            "1.2340"
                .parse::<Decimal>()
                .unwrap()
                .scaled(3, 10_000)
                .unwrap()
                .change,
            None
        );
        let tiny = "1e-900".parse::<Decimal>().unwrap().scaled(3, 1).unwrap();
        assert_eq!(tiny.units, 0);
        assert!(tiny.change.is_some());
    }

    #[test]
    fn bad_texts_are_named() {
        assert_eq!("NaN".parse::<Decimal>(), Err(DecimalError::NaN));
        assert_eq!("-nan".parse::<Decimal>(), Err(DecimalError::NaN));
        assert!(matches!(
            "-Infinity".parse::<Decimal>(),
            Err(DecimalError::Infinite(_))
        ));
        assert!(matches!(
            "inf".parse::<Decimal>(),
            Err(DecimalError::Infinite(_))
        ));
        for bad in [
            "", "-", ".", "1.2.3", "1e", "e5", "0x10", "1,5", " 1", "1e+", "--1",
        ] {
            assert!(
                matches!(bad.parse::<Decimal>(), Err(DecimalError::Syntax(_))),
                "{bad:?}"
            );
        }
        // Found by fuzzing: 64 characters whose JSON form gains a leading
        // zero; every accepted number's text must parse again.
        let edge = format!(".{}", "1".repeat(63));
        assert!(matches!(
            edge.parse::<Decimal>(),
            Err(DecimalError::TooLong { .. })
        ));
        let fits = format!(".{}", "1".repeat(62));
        let d: Decimal = fits.parse().unwrap();
        assert_eq!(d.to_string().parse::<Decimal>().unwrap(), d);
        let long = "9".repeat(309);
        let e = long.parse::<Decimal>().unwrap_err().to_string();
        assert!(e.len() < 120 && e.contains("309 characters"), "{e}");
    }

    #[test]
    fn huge_and_tiny_exponents_stay_cheap_and_bounded() {
        let d: Decimal = "1e99999999999999999999".parse().unwrap();
        assert!(d.scaled(3, 100_000).is_err());
        let d: Decimal = "1e-99999999999999999999".parse().unwrap();
        assert_eq!(d.scaled(3, 100_000).unwrap().units, 0);
        assert!(
            "9e18"
                .parse::<Decimal>()
                .unwrap()
                .scaled(0, i64::MAX)
                .is_ok()
        );
        assert!(
            "1e19"
                .parse::<Decimal>()
                .unwrap()
                .scaled(0, i64::MAX)
                .is_err()
        );
    }

    #[test]
    fn json_reads_the_text_and_writes_it_back() {
        let v: Vec<Decimal> = serde_json::from_str(r#"[0.5005, -1E3, "2.5", 7]"#).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"[0.5005,-1e3,2.5,7]"#);
        assert!(serde_json::from_str::<Decimal>("\"NaN\"").is_err());
        assert!(serde_json::from_str::<Decimal>("null").is_err());
        assert!(serde_json::from_str::<Decimal>("true").is_err());
        assert_eq!(Decimal::from_f64(0.1).unwrap().to_string(), "0.1");
        assert_eq!(Decimal::from_units(-1235, 3).to_string(), "-1.235");
        assert_eq!(Decimal::from_units(100_000, 3).to_string(), "100");
    }

    proptest! {
        /// Against an exact model: `n / 10^d` written in decimal rounds
        /// like integer arithmetic on `n`, ties included.
        #[test]
        fn scaling_matches_integer_rounding(n in -10_000_000_000i64..10_000_000_000, d in 0u32..9, scale in 0u32..6) {
            let text = Decimal::from_units(n, d).to_string();
            let got = text.parse::<Decimal>().unwrap().scaled(scale, i64::MAX).unwrap();
            let (num, den) = (n as i128 * 10i128.pow(scale), 10i128.pow(d));
            let q = num / den;
            let r = num % den;
            let want = if 2 * r.abs() >= den { q + num.signum() } else { q };
            prop_assert_eq!(got.units as i128, want);
            prop_assert_eq!(got.change.is_none(), r == 0);
        }

        /// Ties of the form x.xxx5 are rounded away from zero, always.
        #[test]
        fn every_tie_rounds_away(int in 0i64..100, frac in 0i64..1000, neg in any::<bool>()) {
            let text = format!("{}{int}.{frac:03}5", if neg { "-" } else { "" });
            let want = int * 1000 + frac + 1;
            prop_assert_eq!(units(&text, 3), if neg { -want } else { want });
        }
    }
}
