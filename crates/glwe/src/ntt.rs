//! Exact negacyclic products modulo `2^128` by a three-prime NTT and CRT.
//!
//! The billing authority multiplies uniformly random `u128` polynomials
//! (ciphertext masks, read as signed values in `[-2^127, 2^127)`) by small
//! signed polynomials (weights below `2^40`, binary or tiny noise). Every
//! coefficient of such a product, summed over at most [`MAX_TERMS`]
//! products, is an integer of absolute value below `2^183`. The three primes
//! below `2^62` (each `= 1 mod 2N`, so `tfhe-ntt` can transform) multiply to
//! more than `2^185`, so the CRT recovers that integer exactly and reduces it
//! modulo `2^128`. Transforms are linear, so products are accumulated in the
//! NTT domain and transformed back once.

use std::sync::OnceLock;

use tfhe_ntt::fastdiv::Div64;
use tfhe_ntt::prime::{largest_prime_in_arithmetic_progression64, mul_mod64};
use tfhe_ntt::prime64::Plan;

/// Most `u128 x small` products one accumulator may sum (ciphertext chunks
/// plus the re-randomiser), for the CRT range argument above.
pub const MAX_TERMS: usize = 8;

/// A polynomial in the NTT domain: one residue vector per prime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NttPoly {
    residues: [Vec<u64>; 3],
}

impl NttPoly {
    /// The zero polynomial of size `n`.
    pub fn zero(n: usize) -> NttPoly {
        NttPoly {
            residues: [vec![0; n], vec![0; n], vec![0; n]],
        }
    }

    /// Sets all residues to zero.
    pub fn clear(&mut self) {
        for r in &mut self.residues {
            r.fill(0);
        }
    }

    /// The residues modulo each prime (bit-reversed NTT order), e.g. for a
    /// device backend that uploads them.
    pub fn residues(&self) -> &[Vec<u64>; 3] {
        &self.residues
    }
}

/// Precomputed CRT constants for three primes.
#[derive(Clone, Debug)]
struct Crt {
    p: [u64; 3],
    div: [Div64; 3],
    inv_p0_mod_p1: u64,
    inv_p0p1_mod_p2: u64,
    p0_mod_p2: u64,
    p0p1: u128,
    /// `p0 * p1 * p2 mod 2^128`.
    product_wrapped: u128,
}

/// Exact negacyclic products of size `n` modulo `2^128`.
#[derive(Clone, Debug)]
pub struct CrtNtt {
    n: usize,
    plans: [Plan; 3],
    crt: Crt,
}

/// The plan for the scheme's polynomial size, built once per process.
pub fn plan() -> &'static CrtNtt {
    static PLAN: OnceLock<CrtNtt> = OnceLock::new();
    PLAN.get_or_init(|| CrtNtt::new(crate::params::POLYNOMIAL_SIZE))
}

/// The three largest primes below `2^62` that are `1 mod 2^14` (valid for
/// every power-of-two size up to 8192).
pub fn primes() -> [u64; 3] {
    static PRIMES: OnceLock<[u64; 3]> = OnceLock::new();
    *PRIMES.get_or_init(|| {
        let step = 1u64 << 14;
        let mut max = (1u64 << 62) - 1;
        let mut out = [0u64; 3];
        for slot in &mut out {
            // A prime exists in this range; the search is deterministic.
            let p = largest_prime_in_arithmetic_progression64(step, 1, 1 << 61, max).unwrap_or(0);
            *slot = p;
            max = p - 1;
        }
        out
    })
}

fn inv_mod(a: u64, div: Div64) -> u64 {
    // p is prime: a^(p-2)
    tfhe_ntt::prime::exp_mod64(div, a % div.divisor(), div.divisor() - 2)
}

impl CrtNtt {
    /// Plans products of size `n` (a power of two from 32 to 8192).
    pub fn new(n: usize) -> CrtNtt {
        let p = primes();
        let make = |q: u64| Plan::try_new(n, q);
        let plans = match (make(p[0]), make(p[1]), make(p[2])) {
            (Some(a), Some(b), Some(c)) => [a, b, c],
            _ => panic!("invalid NTT size {n}: must be a power of two from 32 to 8192"),
        };
        let div = [Div64::new(p[0]), Div64::new(p[1]), Div64::new(p[2])];
        let p0p1 = p[0] as u128 * p[1] as u128;
        let crt = Crt {
            p,
            div,
            inv_p0_mod_p1: inv_mod(p[0], div[1]),
            inv_p0p1_mod_p2: inv_mod(Div64::rem_u128(p0p1, div[2]), div[2]),
            p0_mod_p2: p[0] % p[2],
            p0p1,
            product_wrapped: p0p1.wrapping_mul(p[2] as u128),
        };
        CrtNtt { n, plans, crt }
    }

    /// The polynomial size.
    pub fn size(&self) -> usize {
        self.n
    }

    /// The three primes.
    pub fn primes(&self) -> [u64; 3] {
        self.crt.p
    }

    /// Transforms a `u128` polynomial, read as signed (centred) values.
    pub fn forward_u128(&self, poly: &[u128], out: &mut NttPoly) {
        assert_eq!(poly.len(), self.n);
        for (k, res) in out.residues.iter_mut().enumerate() {
            let div = self.crt.div[k];
            let p = self.crt.p[k];
            for (r, &x) in res.iter_mut().zip(poly) {
                *r = if x >> 127 == 0 {
                    Div64::rem_u128(x, div)
                } else {
                    let m = Div64::rem_u128(x.wrapping_neg(), div);
                    if m == 0 { 0 } else { p - m }
                };
            }
            self.plans[k].fwd(res);
        }
    }

    /// Transforms a small signed polynomial.
    pub fn forward_i64(&self, poly: &[i64], out: &mut NttPoly) {
        assert_eq!(poly.len(), self.n);
        for (k, res) in out.residues.iter_mut().enumerate() {
            let p = self.crt.p[k];
            for (r, &x) in res.iter_mut().zip(poly) {
                // |x| < 2^62 < p for every value passed here.
                *r = if x >= 0 {
                    x as u64 % p
                } else {
                    (p - (x.unsigned_abs() % p)) % p
                };
            }
            self.plans[k].fwd(res);
        }
    }

    /// Multiplies by `n^-1` (do it once, to a long-lived factor, so that
    /// [`CrtNtt::inverse_u128`] needs no normalisation).
    pub fn normalize(&self, poly: &mut NttPoly) {
        for (plan, res) in self.plans.iter().zip(&mut poly.residues) {
            plan.normalize(res);
        }
    }

    /// `acc += a * b` point-wise.
    pub fn mul_accumulate(&self, acc: &mut NttPoly, a: &NttPoly, b: &NttPoly) {
        for k in 0..3 {
            self.plans[k].mul_accumulate(&mut acc.residues[k], &a.residues[k], &b.residues[k]);
        }
    }

    /// Transforms `acc` back (consuming its content) and writes the exact
    /// product modulo `2^128` to `out`. The accumulated factors must have
    /// been normalised once (see [`CrtNtt::normalize`]).
    pub fn inverse_u128(&self, acc: &mut NttPoly, out: &mut [u128]) {
        assert_eq!(out.len(), self.n);
        for (plan, res) in self.plans.iter().zip(&mut acc.residues) {
            plan.inv(res);
        }
        let c = &self.crt;
        let [r0, r1, r2] = &acc.residues;
        let half_p2 = c.p[2] / 2;
        for (i, o) in out.iter_mut().enumerate() {
            // Garner: x = v0 + v1 p0 + v2 p0 p1 with v_k in [0, p_k).
            let v0 = r0[i];
            let d1 = sub_mod(r1[i], v0 % c.p[1], c.p[1]);
            let v1 = mul_mod64(c.div[1], d1, c.inv_p0_mod_p1);
            let t = sub_mod(r2[i], v0 % c.p[2], c.p[2]);
            let t = sub_mod(t, mul_mod64(c.div[2], v1 % c.p[2], c.p0_mod_p2), c.p[2]);
            let v2 = mul_mod64(c.div[2], t, c.inv_p0p1_mod_p2);
            let mut x = (v0 as u128)
                .wrapping_add((v1 as u128).wrapping_mul(c.p[0] as u128))
                .wrapping_add((v2 as u128).wrapping_mul(c.p0p1));
            // |x| < 2^183 < P / 4: a top digit above p2 / 2 means x < 0.
            if v2 > half_p2 {
                x = x.wrapping_sub(c.product_wrapped);
            }
            *o = x;
        }
    }
}

#[inline]
fn sub_mod(a: u64, b: u64, p: u64) -> u64 {
    if a >= b { a - b } else { a + p - b }
}

/// Schoolbook negacyclic product modulo `2^128` (reference for tests and
/// for one-off coefficients).
pub fn negacyclic_reference(a: &[u128], b: &[i64]) -> Vec<u128> {
    let n = a.len();
    let mut out = vec![0u128; n];
    for (i, &x) in a.iter().enumerate() {
        for (j, &y) in b.iter().enumerate() {
            let prod = x.wrapping_mul(y as i128 as u128);
            let k = i + j;
            if k < n {
                out[k] = out[k].wrapping_add(prod);
            } else {
                out[k - n] = out[k - n].wrapping_sub(prod);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn primes_fit_the_range_argument() {
        let p = primes();
        assert!(p.iter().all(|&q| q < 1 << 62 && q % (1 << 14) == 1));
        assert!(p[0] > p[1] && p[1] > p[2]);
        // P > 2^185
        let p0p1 = p[0] as u128 * p[1] as u128;
        assert!(p0p1 >> 120 > 0 && (p0p1 >> 64) * p[2] as u128 > 1u128 << 121);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn products_equal_the_schoolbook_reference(
            a in proptest::collection::vec(any::<u128>(), 64),
            b in proptest::collection::vec(-(1i64 << 40)..(1i64 << 40), 64),
            c in proptest::collection::vec(any::<u128>(), 64),
            d in proptest::collection::vec(-8i64..=8, 64),
        ) {
            let ntt = CrtNtt::new(64);
            let (mut fa, mut fb, mut fc, mut fd) = (NttPoly::zero(64), NttPoly::zero(64), NttPoly::zero(64), NttPoly::zero(64));
            ntt.forward_u128(&a, &mut fa);
            ntt.forward_i64(&b, &mut fb);
            ntt.forward_u128(&c, &mut fc);
            ntt.forward_i64(&d, &mut fd);
            ntt.normalize(&mut fb);
            ntt.normalize(&mut fd);
            let mut acc = NttPoly::zero(64);
            ntt.mul_accumulate(&mut acc, &fa, &fb);
            ntt.mul_accumulate(&mut acc, &fc, &fd);
            let mut out = vec![0u128; 64];
            ntt.inverse_u128(&mut acc, &mut out);
            let want: Vec<u128> = negacyclic_reference(&a, &b).iter().zip(negacyclic_reference(&c, &d))
                .map(|(x, y)| x.wrapping_add(y)).collect();
            prop_assert_eq!(out, want);
        }
    }

    #[test]
    fn extreme_values_stay_exact() {
        // Full size, largest magnitudes, most terms: the CRT range bound.
        let n = 8192;
        let ntt = CrtNtt::new(n);
        let a = vec![1u128 << 127; n]; // -2^127 everywhere
        let b = vec![-(1i64 << 40); n];
        let mut fa = NttPoly::zero(n);
        let mut fb = NttPoly::zero(n);
        ntt.forward_u128(&a, &mut fa);
        ntt.forward_i64(&b, &mut fb);
        ntt.normalize(&mut fb);
        let mut acc = NttPoly::zero(n);
        for _ in 0..MAX_TERMS {
            ntt.mul_accumulate(&mut acc, &fa, &fb);
        }
        let mut out = vec![0u128; n];
        ntt.inverse_u128(&mut acc, &mut out);
        let once = negacyclic_reference(&a, &b);
        let want: Vec<u128> = once
            .iter()
            .map(|x| x.wrapping_mul(MAX_TERMS as u128))
            .collect();
        assert_eq!(out, want);
    }
}
