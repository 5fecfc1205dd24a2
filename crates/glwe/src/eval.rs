//! The billing authority's homomorphic work for one household.
//!
//! For the household's ciphertexts `(A_c, B_c)` and the cycle's weight
//! polynomials `W_c` the result is the GLWE ciphertext
//!
//! ```text
//! mask = sum_c A_c W_c + pk_a r + e1
//! body_0 = (sum_c B_c W_c)_0 + (pk_b r)_0 + e2_0 + flood_0
//! body_K = (sum_c B_c W_c)_K + (pk_b r)_K + e2_K + flood_K
//! ```
//!
//! of which only the two body coefficients that hold the totals travel
//! ([`HiddenTotals`]). `(pk_a r + e1, pk_b r + e2)` is a fresh encryption of
//! zero under the household's [`CompactPublicKey`], which makes the mask
//! independent of the weights; the flooding noise hides the product noise
//! (see [`crate::params`]). The mask is one exact product modulo `2^128`
//! accumulated in the NTT domain ([`CrtNtt`]); the two body coefficients are
//! sparse dot products ([`crate::layout::taps`]).
//!
//! Per household this costs one mask expansion and three forward NTTs per
//! ciphertext and for the public key, three forward NTTs of `r` and three
//! inverse NTTs, nothing more: the weights are transformed and normalised
//! once per cycle ([`PreparedWeights`]); masks are reduced to residues block
//! by block as they are expanded ([`CrtNtt::forward_mask`]); `pk_a r` is
//! normalised inside its point-wise product ([`CrtNtt::mul_normalize`]),
//! which also starts the accumulator; `e1` is added during the CRT
//! reconstruction ([`CrtNtt::inverse_u128_plus`]); and the conversions run
//! on SIMD lanes ([`crate::ntt`]).

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;

use crate::ciphertext::{CompactPublicKey, HiddenTotals, SeededGlwe};
use crate::layout::{REWARD_COEFF, taps, weight_polynomials};
use crate::noise::tuniform3;
use crate::ntt::{CrtNtt, MAX_TERMS, NttPoly, coefficient_of_binary_product};
use crate::params::{BudgetError, FLOOD_LOG, POLYNOMIAL_SIZE, check_weights};

/// Why a household's ciphertexts could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvalError {
    /// The household sent a different number of ciphertexts than the
    /// cycle's layout needs.
    #[error("{found} ciphertexts where the cycle needs {expected}")]
    ChunkCount {
        /// Needed.
        expected: usize,
        /// Received.
        found: usize,
    },
    /// A ciphertext or public key has a body of the wrong size.
    #[error("malformed ciphertext or public key (body of the wrong size)")]
    Malformed,
}

/// One cycle's weight polynomials, transformed once for all households.
#[derive(Clone, Debug)]
pub struct PreparedWeights {
    polys: Vec<Vec<i64>>,
    transformed: Vec<NttPoly>,
    taps: Vec<[Vec<(u32, i64)>; 2]>,
    noise_bound: u128,
}

impl PreparedWeights {
    /// Builds and checks (noise budget) the weight polynomials for per-side
    /// weights `bill` and `reward` (equal lengths).
    pub fn new(ntt: &CrtNtt, bill: &[i64], reward: &[i64]) -> Result<PreparedWeights, BudgetError> {
        let polys = weight_polynomials(bill, reward);
        assert!(
            polys.len() < MAX_TERMS,
            "more chunks than the CRT range allows"
        );
        let noise_bound = check_weights(polys.iter().flatten())?;
        let transformed = polys
            .iter()
            .map(|w| {
                let mut t = NttPoly::zero(POLYNOMIAL_SIZE);
                ntt.forward_i64_normalized(w, &mut t);
                t
            })
            .collect();
        let taps = polys
            .iter()
            .map(|w| [taps(w, 0), taps(w, REWARD_COEFF)])
            .collect();
        Ok(PreparedWeights {
            polys,
            transformed,
            taps,
            noise_bound,
        })
    }

    /// Number of ciphertexts each household must send.
    pub fn chunk_count(&self) -> usize {
        self.polys.len()
    }

    /// The weight polynomials (coefficient form), e.g. for a device backend.
    pub fn polynomials(&self) -> &[Vec<i64>] {
        &self.polys
    }

    /// Noise bound of the product before re-randomisation and flooding.
    pub fn noise_bound(&self) -> u128 {
        self.noise_bound
    }
}

/// Fresh randomness of one evaluation: the encryption of zero (`r`, `e1`,
/// `e2`) and the flooding noise. Derived from a 32-byte seed with ChaCha20 so
/// that every backend evaluates the same randomness bit for bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rerandomizer {
    /// Binary polynomial `r`.
    pub r: Vec<i64>,
    /// TUniform(3) noise of the mask.
    pub e1: Vec<i64>,
    /// TUniform(3) noise of the two body coefficients.
    pub e2: [i64; 2],
    /// Flooding noise of the two body coefficients, uniform in
    /// `[-2^FLOOD_LOG, 2^FLOOD_LOG)`.
    pub flood: [i128; 2],
}

impl Rerandomizer {
    /// Expands a seed.
    pub fn from_seed(seed: [u8; 32]) -> Rerandomizer {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut bits = vec![0u8; POLYNOMIAL_SIZE / 8];
        rng.fill_bytes(&mut bits);
        // (Written into zeroed vectors in fixed-size chunks, which the
        // compiler vectorises; the values are those of the bit and byte
        // streams in order.)
        let mut r = vec![0i64; POLYNOMIAL_SIZE];
        for (chunk, &byte) in r.chunks_exact_mut(8).zip(&bits) {
            for (k, x) in chunk.iter_mut().enumerate() {
                *x = ((byte >> k) & 1) as i64;
            }
        }
        let mut bytes = vec![0u8; POLYNOMIAL_SIZE + 2];
        rng.fill_bytes(&mut bytes);
        let mut e1 = vec![0i64; POLYNOMIAL_SIZE];
        for (x, &byte) in e1.iter_mut().zip(&bytes[..POLYNOMIAL_SIZE]) {
            *x = tuniform3(byte);
        }
        let e2 = [
            tuniform3(bytes[POLYNOMIAL_SIZE]),
            tuniform3(bytes[POLYNOMIAL_SIZE + 1]),
        ];
        let mut flood = [0i128; 2];
        for f in &mut flood {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            let x = u128::from_le_bytes(b) & ((1u128 << (FLOOD_LOG + 1)) - 1);
            *f = x as i128 - (1i128 << FLOOD_LOG);
        }
        Rerandomizer { r, e1, e2, flood }
    }
}

/// Reusable buffers of [`evaluate`] (one per thread): two polynomials in
/// the NTT domain, one for the masks and one for the accumulated product.
pub struct EvalScratch {
    a: NttPoly,
    acc: NttPoly,
}

impl Default for EvalScratch {
    fn default() -> Self {
        EvalScratch {
            a: NttPoly::zero(POLYNOMIAL_SIZE),
            acc: NttPoly::zero(POLYNOMIAL_SIZE),
        }
    }
}

/// `sum body_j c_j` modulo `2^128` over the taps `(j, c_j)`: the low halves'
/// products are exact in 128 bits and the high halves' only count modulo
/// `2^64` (two multiplications per tap instead of three).
fn dot_taps(body: &[u128], taps: &[(u32, i64)]) -> u128 {
    let (mut low, mut high) = (0u128, 0u64);
    for &(j, c) in taps {
        let x = body[j as usize];
        low = low.wrapping_add(((x as u64) as i128).wrapping_mul(c as i128) as u128);
        high = high.wrapping_add(((x >> 64) as u64).wrapping_mul(c as u64));
    }
    low.wrapping_add((high as u128) << 64)
}

/// Checks one household's ciphertexts and public key against the cycle's
/// weights: what [`evaluate`] refuses, for backends that evaluate elsewhere.
pub fn check_inputs(
    weights: &PreparedWeights,
    cts: &[SeededGlwe],
    cpk: &CompactPublicKey,
) -> Result<(), EvalError> {
    if cts.len() != weights.chunk_count() {
        return Err(EvalError::ChunkCount {
            expected: weights.chunk_count(),
            found: cts.len(),
        });
    }
    if !cts.iter().all(SeededGlwe::is_well_formed) || !cpk.0.is_well_formed() {
        return Err(EvalError::Malformed);
    }
    Ok(())
}

/// Evaluates one household's ciphertexts against the cycle's weights.
pub fn evaluate(
    ntt: &CrtNtt,
    weights: &PreparedWeights,
    cts: &[SeededGlwe],
    cpk: &CompactPublicKey,
    rr: &Rerandomizer,
    scratch: &mut EvalScratch,
) -> Result<HiddenTotals, EvalError> {
    check_inputs(weights, cts, cpk)?;
    let EvalScratch { a, acc } = scratch;
    // Encryption of zero under the household's compact public key: pk_a r,
    // normalised in the product (r is per household, the weights were
    // normalised once per cycle).
    ntt.forward_mask(cpk.0.seed, a);
    ntt.forward_i64(&rr.r, acc);
    ntt.mul_normalize(acc, a);
    let mut body = [0u128; 2];
    for ((ct, w), taps) in cts.iter().zip(&weights.transformed).zip(&weights.taps) {
        ntt.forward_mask(ct.seed, a);
        ntt.mul_accumulate(acc, a, w);
        body[0] = body[0].wrapping_add(dot_taps(&ct.body, &taps[0]));
        body[1] = body[1].wrapping_add(dot_taps(&ct.body, &taps[1]));
    }
    let mut mask = vec![0u128; POLYNOMIAL_SIZE];
    ntt.inverse_u128_plus(acc, &rr.e1, &mut mask);
    for (i, k) in [0, REWARD_COEFF].into_iter().enumerate() {
        body[i] = body[i]
            .wrapping_add(coefficient_of_binary_product(&cpk.0.body, &rr.r, k))
            .wrapping_add(rr.e2[i] as i128 as u128)
            .wrapping_add(rr.flood[i] as u128);
    }
    Ok(HiddenTotals { mask, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use crate::layout::pack;
    use crate::seeding::deterministic;

    #[test]
    fn evaluation_decrypts_to_the_two_dot_products() {
        let mut seeder = deterministic(7);
        let sk = SecretKey::generate(&mut seeder);
        let cpk = sk.public_key(&mut seeder);
        let ntt = CrtNtt::new(POLYNOMIAL_SIZE);
        let len = 3000; // two chunks
        let bill: Vec<i64> = (0..len).map(|i| (i * 37) % 1000 - 100).collect();
        let reward: Vec<i64> = (0..len).map(|i| (i * 11) % 700).collect();
        let wb: Vec<i64> = (0..len).map(|i| 25_000 + i % 5000).collect();
        let wr: Vec<i64> = (0..len).map(|i| -(i % 3) * 1_000_000).collect();
        let weights = PreparedWeights::new(&ntt, &wb, &wr).unwrap();
        let cts: Vec<SeededGlwe> = pack(&bill, &reward)
            .iter()
            .map(|m| sk.encrypt(m, &mut seeder))
            .collect();
        let rr = Rerandomizer::from_seed([3; 32]);
        let out = evaluate(&ntt, &weights, &cts, &cpk, &rr, &mut EvalScratch::default()).unwrap();
        let dot = |a: &[i64], b: &[i64]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| x as i128 * y as i128)
                .sum::<i128>()
        };
        assert_eq!(
            sk.decrypt_totals(&out).unwrap(),
            (dot(&bill, &wb), dot(&reward, &wr))
        );
        // Another key cannot read it.
        let other = SecretKey::generate(&mut seeder);
        assert!(other.decrypt_totals(&out).is_err());
    }

    #[test]
    fn wrong_chunk_counts_and_sizes_are_refused() {
        let mut seeder = deterministic(8);
        let sk = SecretKey::generate(&mut seeder);
        let cpk = sk.public_key(&mut seeder);
        let ntt = CrtNtt::new(POLYNOMIAL_SIZE);
        let weights = PreparedWeights::new(&ntt, &[1, 2], &[3, 4]).unwrap();
        let rr = Rerandomizer::from_seed([0; 32]);
        let mut scratch = EvalScratch::default();
        assert!(matches!(
            evaluate(&ntt, &weights, &[], &cpk, &rr, &mut scratch),
            Err(EvalError::ChunkCount { .. })
        ));
        let mut ct = sk.encrypt(&[1, 2], &mut seeder);
        ct.body.pop();
        assert_eq!(
            evaluate(&ntt, &weights, &[ct], &cpk, &rr, &mut scratch),
            Err(EvalError::Malformed)
        );
    }

    proptest::proptest! {
        #[test]
        fn dot_taps_equal_the_u128_products(
            body in proptest::collection::vec(proptest::prelude::any::<u128>(), 16),
            taps in proptest::collection::vec((0u32..16, proptest::prelude::any::<i64>()), 0..40),
        ) {
            let want = taps.iter().fold(0u128, |acc, &(j, c)| {
                acc.wrapping_add(body[j as usize].wrapping_mul(c as i128 as u128))
            });
            proptest::prop_assert_eq!(dot_taps(&body, &taps), want);
        }
    }

    #[test]
    fn rerandomizer_is_the_chacha20_stream_in_order() {
        let seed = [5u8; 32];
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut bits = vec![0u8; POLYNOMIAL_SIZE / 8];
        rng.fill_bytes(&mut bits);
        let mut bytes = vec![0u8; POLYNOMIAL_SIZE + 2];
        rng.fill_bytes(&mut bytes);
        let rr = Rerandomizer::from_seed(seed);
        for i in 0..POLYNOMIAL_SIZE {
            assert_eq!(rr.r[i], ((bits[i / 8] >> (i % 8)) & 1) as i64);
            assert_eq!(rr.e1[i], tuniform3(bytes[i]));
        }
        assert_eq!(
            rr.e2,
            [
                tuniform3(bytes[POLYNOMIAL_SIZE]),
                tuniform3(bytes[POLYNOMIAL_SIZE + 1])
            ]
        );
    }

    #[test]
    fn rerandomizer_noise_has_the_documented_ranges() {
        let rr = Rerandomizer::from_seed([9; 32]);
        assert!(rr.r.iter().all(|&x| x == 0 || x == 1));
        assert!(rr.e1.iter().all(|&x| (-8..=8).contains(&x)));
        assert!(
            rr.flood
                .iter()
                .all(|f| (-(1i128 << FLOOD_LOG)..1i128 << FLOOD_LOG).contains(f))
        );
        // r is not constant and e1 is centred
        assert!(rr.r.iter().sum::<i64>() > 3500 && rr.r.iter().sum::<i64>() < 4700);
        assert!(rr.e1.iter().sum::<i64>().abs() < 2000);
    }
}
