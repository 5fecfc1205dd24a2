//! How two dot products come out of one negacyclic product.
//!
//! A household's *bill side* vector (e.g. `CA | CR | FC`) and *reward side*
//! vector (`SA | SR | FP`) have the same length `len`. They are cut into
//! chunks of at most [`SEGMENT`] `= floor(N / 3)` values; chunk `c` becomes
//! one plaintext polynomial with the bill values at positions `[0, len_c)`
//! and the reward values at `[SEGMENT, SEGMENT + len_c)`, zero elsewhere.
//!
//! The weight polynomial `W_c` of a chunk is chosen so that in the
//! negacyclic product `M_c * W_c`
//!
//! * coefficient `0` is `sum_i bill_i * wb_i` (`W_0 = wb_0`,
//!   `W_{N-i} = -wb_i`), and
//! * coefficient [`REWARD_COEFF`] `= N - SEGMENT` is `sum_i reward_i * wr_i`
//!   (`W_{N - 2 SEGMENT - i} = wr_i`),
//!
//! and neither coefficient picks up the other side's values: each reads the
//! other side's weights only against positions where `M_c` is zero, because
//! `3 * SEGMENT <= N`. Products of all chunks add up, so the billing
//! authority obtains both totals from one accumulated product whatever the
//! number of chunks, and the household downloads a single ciphertext.

use crate::params::POLYNOMIAL_SIZE;

/// Chunk length: at most this many values of each side per polynomial.
pub const SEGMENT: usize = POLYNOMIAL_SIZE / 3;
// Both sides and the zero gap between the coefficients' reads fit.
const _: () = assert!(3 * SEGMENT <= POLYNOMIAL_SIZE);

/// Coefficient of the product that holds the reward total.
pub const REWARD_COEFF: usize = POLYNOMIAL_SIZE - SEGMENT;

/// Number of polynomials for sides of length `len`.
pub fn chunk_count(len: usize) -> usize {
    len.div_ceil(SEGMENT).max(1)
}

fn chunks(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..chunk_count(len)).map(move |c| c * SEGMENT..((c + 1) * SEGMENT).min(len))
}

/// Packs both sides (equal lengths) into plaintext polynomials.
pub fn pack(bill: &[i64], reward: &[i64]) -> Vec<Vec<i64>> {
    assert_eq!(bill.len(), reward.len(), "sides must have equal lengths");
    chunks(bill.len())
        .map(|range| {
            let mut m = vec![0i64; POLYNOMIAL_SIZE];
            let len = range.len();
            m[..len].copy_from_slice(&bill[range.clone()]);
            m[SEGMENT..SEGMENT + len].copy_from_slice(&reward[range]);
            m
        })
        .collect()
}

/// The weight polynomials that pair with [`pack`]ed plaintexts.
pub fn weight_polynomials(bill: &[i64], reward: &[i64]) -> Vec<Vec<i64>> {
    assert_eq!(bill.len(), reward.len(), "sides must have equal lengths");
    let n = POLYNOMIAL_SIZE;
    chunks(bill.len())
        .map(|range| {
            let mut w = vec![0i64; n];
            for (i, (&wb, &wr)) in bill[range.clone()].iter().zip(&reward[range]).enumerate() {
                if i == 0 {
                    w[0] = wb;
                } else {
                    w[n - i] = -wb;
                }
                w[n - 2 * SEGMENT - i] = wr;
            }
            w
        })
        .collect()
}

/// The terms of coefficient `k` of `B * W` for any polynomial `B`:
/// `(B * W)_k = sum (B_j * c)` over the returned `(j, c)`.
pub fn taps(w: &[i64], k: usize) -> Vec<(u32, i64)> {
    let n = w.len();
    w.iter()
        .enumerate()
        .filter(|&(_, &x)| x != 0)
        .map(|(u, &x)| {
            if u <= k {
                ((k - u) as u32, x)
            } else {
                ((n + k - u) as u32, -x)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntt::negacyclic_reference;

    #[test]
    fn segments_fit_three_times() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(SEGMENT), 1);
        assert_eq!(chunk_count(SEGMENT + 1), 2);
    }

    #[test]
    fn the_product_holds_both_dot_products_and_nothing_else() {
        // Two chunks, the second partial; values and weights with every sign.
        let len = SEGMENT + 17;
        let bill: Vec<i64> = (0..len as i64).map(|i| (i * 7919) % 2001 - 1000).collect();
        let reward: Vec<i64> = (0..len as i64)
            .map(|i| (i * 104_729) % 3001 - 1500)
            .collect();
        let wb: Vec<i64> = (0..len as i64).map(|i| (i * 31) % 97 - 48).collect();
        let wr: Vec<i64> = (0..len as i64).map(|i| (i * 17) % 89 - 44).collect();
        let (mut got_bill, mut got_reward) = (0i128, 0i128);
        for (m, w) in pack(&bill, &reward)
            .iter()
            .zip(weight_polynomials(&wb, &wr))
        {
            let m128: Vec<u128> = m.iter().map(|&x| x as i128 as u128).collect();
            let prod = negacyclic_reference(&m128, &w);
            got_bill += prod[0] as i128;
            got_reward += prod[REWARD_COEFF] as i128;
            // taps reproduce the two coefficients
            for k in [0, REWARD_COEFF] {
                let via_taps = taps(&w, k).iter().fold(0u128, |acc, &(j, c)| {
                    acc.wrapping_add(m128[j as usize].wrapping_mul(c as i128 as u128))
                });
                assert_eq!(via_taps, prod[k]);
            }
        }
        let dot = |a: &[i64], b: &[i64]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| x as i128 * y as i128)
                .sum::<i128>()
        };
        assert_eq!(got_bill, dot(&bill, &wb));
        assert_eq!(got_reward, dot(&reward, &wr));
    }
}
