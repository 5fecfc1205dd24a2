//! Parameters and noise budget of the homomorphic part, in one place.
//!
//! # Scheme
//! GLWE with `k = 1`, `N = 8192`, `q = 2^128`, binary secret key and fresh
//! noise TUniform(3) (integers in `[-8, 8]`, standard deviation 4.6, wider
//! than the 3.2 of the HE standard; `log q = 128` is far below the 218 that
//! the standard allows at `N = 8192` for 128-bit security).
//!
//! # Decoding
//! A message `t` is encoded as `Delta * t` with `Delta = 2^DELTA_LOG`. The
//! household reads `c = Delta * t + noise (mod 2^128)` as a signed value and
//! rounds; this is exact when `|Delta * t + noise| < 2^127` and
//! `|noise| < Delta / 2`.
//!
//! # Budget (all bounds are enforced, see [`check_weights`] and [`check_total_bound`])
//! * totals: `|t| <= MAX_TOTAL = 2^45 - 1` money units (351,843 currency
//!   per household and cycle);
//! * product noise: `sum_j e_j w_j` over the weight polynomial; with
//!   `|e_j| <= 8` independent and centred, Hoeffding gives
//!   `|sum| <= 8 * sqrt(2 ln(2^129)) * ||w||_2 <= 107 * ||w||_2` except with
//!   probability `2^-128`;
//! * re-randomisation noise: `e_pk * r + e2 - e1 * s` with binary `r`, `s`:
//!   at most `8N + 8N + 8` in absolute value, always;
//! * flooding: uniform in `[-2^FLOOD_LOG, 2^FLOOD_LOG)` with
//!   `FLOOD_LOG = DELTA_LOG - 2`; it hides any noise below
//!   `2^(FLOOD_LOG - 40)` to statistical distance `2^-41`, so the edge
//!   refuses weights whose noise bound exceeds [`MAX_NOISE`];
//! * hence `|noise| < 2^80 + 2^40 + 2^18 < Delta / 2 = 2^81`.
//!
//! The flooding width is fixed rather than derived from the cycle's weights,
//! so that the noise a household observes says nothing about them.

use thiserror::Error;

/// Polynomial size `N`.
pub const POLYNOMIAL_SIZE: usize = 8192;
/// Message scaling `Delta = 2^DELTA_LOG`.
pub const DELTA_LOG: u32 = 82;
/// `log2` of the TUniform noise bound: fresh noise lies in `[-8, 8]`.
pub const NOISE_BOUND_LOG2: u32 = 3;
/// Statistical security of the flooding, in bits.
pub const FLOOD_STAT_BITS: u32 = 40;
/// Flooding noise is uniform in `[-2^FLOOD_LOG, 2^FLOOD_LOG)`.
pub const FLOOD_LOG: u32 = DELTA_LOG - 2;
/// Largest noise bound (before flooding) that the flooding hides.
pub const MAX_NOISE: u128 = 1 << (FLOOD_LOG - FLOOD_STAT_BITS);
/// Largest absolute total (money units) that decodes exactly.
pub const MAX_TOTAL: i128 = (1 << (127 - DELTA_LOG)) - 1;
/// Largest absolute weight; keeps the exact CRT product in range.
pub const MAX_WEIGHT: i64 = 1 << 40;
/// `8 * sqrt(2 ln 2^129)` rounded up: tail factor of the product noise.
pub const PRODUCT_NOISE_FACTOR: u128 = 107;
/// Worst case of the re-randomisation noise `e_pk r + e2 - e1 s`.
pub const RERANDOMISATION_NOISE: u128 = 8 * POLYNOMIAL_SIZE as u128 * 2 + 8;

/// Why the billing authority refuses to evaluate a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BudgetError {
    /// One weight is larger than [`MAX_WEIGHT`].
    #[error("weight {value} exceeds the limit of 2^40")]
    WeightTooLarge {
        /// The weight.
        value: i64,
    },
    /// The noise bound of the weights exceeds what the flooding hides.
    #[error("weights too large for the noise budget: noise bound {bound} > {limit}")]
    Noise {
        /// Noise bound of these weights.
        bound: u128,
        /// [`MAX_NOISE`].
        limit: u128,
    },
    /// A household total could leave the decodable range.
    #[error("a bill total could reach {bound} money units, beyond the decodable {limit}")]
    TotalRange {
        /// Worst-case absolute total.
        bound: u128,
        /// [`MAX_TOTAL`].
        limit: u128,
    },
}

/// Checks weights against [`MAX_WEIGHT`] and returns the noise bound of a
/// product with them (before re-randomisation and flooding), refusing it
/// when above [`MAX_NOISE`].
pub fn check_weights<'a>(weights: impl IntoIterator<Item = &'a i64>) -> Result<u128, BudgetError> {
    let mut sum_sq: u128 = 0;
    for &w in weights {
        if w.unsigned_abs() > MAX_WEIGHT as u64 {
            return Err(BudgetError::WeightTooLarge { value: w });
        }
        sum_sq = sum_sq.saturating_add((w.unsigned_abs() as u128).pow(2));
    }
    let bound = PRODUCT_NOISE_FACTOR
        .saturating_mul(isqrt_ceil(sum_sq))
        .saturating_add(RERANDOMISATION_NOISE);
    if bound > MAX_NOISE {
        return Err(BudgetError::Noise {
            bound,
            limit: MAX_NOISE,
        });
    }
    Ok(bound)
}

/// Checks a worst-case absolute total against [`MAX_TOTAL`].
pub fn check_total_bound(bound: u128) -> Result<(), BudgetError> {
    if bound > MAX_TOTAL as u128 {
        return Err(BudgetError::TotalRange {
            bound,
            limit: MAX_TOTAL as u128,
        });
    }
    Ok(())
}

/// `ceil(sqrt(x))`, exact.
fn isqrt_ceil(x: u128) -> u128 {
    let r = x.isqrt();
    if r * r == x { r } else { r + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_margins_hold() {
        // flooding + largest accepted noise stay below Delta / 2
        let noise = (1u128 << FLOOD_LOG) + MAX_NOISE;
        assert!(noise < 1u128 << (DELTA_LOG - 1));
        // the largest total plus noise stays below 2^127
        assert!((MAX_TOTAL as u128) << DELTA_LOG < (1u128 << 127) - noise);
        // the Hoeffding factor covers a 2^-128 tail: 8 * sqrt(2 * 129 * ln 2)
        assert!(8.0 * (2.0 * 129.0 * std::f64::consts::LN_2).sqrt() <= PRODUCT_NOISE_FACTOR as f64);
    }

    #[test]
    fn weights_are_checked() {
        assert!(matches!(
            check_weights(&[MAX_WEIGHT + 1]),
            Err(BudgetError::WeightTooLarge { .. })
        ));
        assert!(matches!(
            check_weights(&vec![1i64 << 33; 64]),
            Err(BudgetError::Noise { .. })
        ));
        assert!(check_weights(&vec![1i64 << 20; 8192]).is_ok());
        assert!(check_total_bound(MAX_TOTAL as u128).is_ok());
        assert!(check_total_bound(MAX_TOTAL as u128 + 1).is_err());
    }

    #[test]
    fn isqrt_ceil_is_exact() {
        assert_eq!(isqrt_ceil(16), 4);
        assert_eq!(isqrt_ceil(17), 5);
        assert_eq!(isqrt_ceil(0), 0);
    }
}
