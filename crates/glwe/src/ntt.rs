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
use tfhe_ntt::prime::largest_prime_in_arithmetic_progression64;
use tfhe_ntt::prime64::Plan;

use crate::mask::expand_mask_blocks;
use crate::simd::{self, Kernel, Lanes, Scalar};

/// Most `u128 x small` products one accumulator may sum (ciphertext chunks
/// plus the re-randomiser), for the CRT range argument above.
pub const MAX_TERMS: usize = 8;

/// A polynomial in the NTT domain: one residue vector per prime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NttPoly {
    residues: [Vec<u64>; 3],
}

impl zeroize::Zeroize for NttPoly {
    fn zeroize(&mut self) {
        for r in &mut self.residues {
            r.zeroize();
        }
    }
}

impl NttPoly {
    #[cfg(test)]
    pub(crate) fn residues_mut_for_test(&mut self) -> &mut [Vec<u64>; 3] {
        &mut self.residues
    }

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

/// Constants of one prime `p = 2^62 - delta` for the lane kernels of
/// [`crate::simd`]: `2^62 = delta (mod p)` with `delta < 2^20` turns every
/// reduction into 32-bit multiplications and shifts.
#[derive(Clone, Copy, Debug)]
struct Prime {
    p: u64,
    delta: u64,
    /// `p - (2^127 mod p)`: undoes the offset that makes a signed `u128`
    /// unsigned.
    minus_2_127: u64,
    /// `p - (2^63 mod p)`, the same for a signed `u64`.
    minus_2_63: u64,
    /// `n^-1 mod p` and its Shoup quotient `floor(n^-1 2^64 / p)`.
    n_inv: u64,
    n_inv_shoup: u64,
}

/// Largest `delta = 2^62 - p` that the lane kernels' bounds allow.
const MAX_DELTA: u64 = 1 << 20;
const MASK_62: u64 = (1 << 62) - 1;
const MASK_30: u64 = (1 << 30) - 1;

impl Prime {
    fn new(p: u64, n: usize) -> Prime {
        let delta = (1u64 << 62) - p;
        assert!(
            delta < MAX_DELTA,
            "the CRT kernels need primes within 2^20 below 2^62"
        );
        let div = Div64::new(p);
        let n_inv = inv_mod(n as u64, div);
        Prime {
            p,
            delta,
            minus_2_127: p - Div64::rem_u128(1u128 << 127, div),
            minus_2_63: p - Div64::rem_u128(1u128 << 63, div),
            n_inv,
            n_inv_shoup: shoup(n_inv, p),
        }
    }
}

/// `floor(c 2^64 / p)`, the Shoup quotient of a constant `c < p`.
fn shoup(c: u64, p: u64) -> u64 {
    (((c as u128) << 64) / p as u128) as u64
}

/// Precomputed CRT constants for three primes.
#[derive(Clone, Debug)]
struct Crt {
    primes: [Prime; 3],
    inv_p0_mod_p1: u64,
    inv_p0_mod_p1_shoup: u64,
    inv_p0p1_mod_p2: u64,
    inv_p0p1_mod_p2_shoup: u64,
    /// `p0 mod p2` (below `2^20`: `p0 - p2 = delta2 - delta0`).
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
        let inv_p0_mod_p1 = inv_mod(p[0], div[1]);
        let inv_p0p1_mod_p2 = inv_mod(Div64::rem_u128(p0p1, div[2]), div[2]);
        let crt = Crt {
            primes: p.map(|q| Prime::new(q, n)),
            inv_p0_mod_p1,
            inv_p0_mod_p1_shoup: shoup(inv_p0_mod_p1, p[1]),
            inv_p0p1_mod_p2,
            inv_p0p1_mod_p2_shoup: shoup(inv_p0p1_mod_p2, p[2]),
            p0_mod_p2: p[0] % p[2],
            p0p1,
            product_wrapped: p0p1.wrapping_mul(p[2] as u128),
        };
        assert!(crt.p0_mod_p2 < MAX_DELTA && p[0] > p[1] && p[1] > p[2]);
        CrtNtt { n, plans, crt }
    }

    /// The polynomial size.
    pub fn size(&self) -> usize {
        self.n
    }

    /// The three primes.
    pub fn primes(&self) -> [u64; 3] {
        self.crt.primes.map(|q| q.p)
    }

    /// Transforms a `u128` polynomial, read as signed (centred) values.
    pub fn forward_u128(&self, poly: &[u128], out: &mut NttPoly) {
        assert_eq!(poly.len(), self.n);
        self.residues_u128(poly, 0, out);
        self.transform(out);
    }

    /// Transforms the mask of seed `seed` (see [`crate::mask`]), reducing
    /// it to residues block by block as it is expanded: the same as
    /// [`crate::mask::expand_mask`] then [`CrtNtt::forward_u128`], without
    /// storing the mask.
    pub fn forward_mask(&self, seed: u128, out: &mut NttPoly) {
        expand_mask_blocks(seed, self.n, |offset, block| {
            self.residues_u128(block, offset, out);
        });
        self.transform(out);
    }

    /// Writes the residues of the signed values `values` to positions
    /// `offset..` of `out`, before the transform (so that a producer of
    /// values, such as mask expansion, can feed them block by block while
    /// they are in cache).
    pub(crate) fn residues_u128(&self, values: &[u128], offset: usize, out: &mut NttPoly) {
        let [r0, r1, r2] = &mut out.residues;
        let end = offset + values.len();
        simd::dispatch(Residues {
            primes: &self.crt.primes,
            src: Source::U128(values),
            normalize: false,
            dst: [
                &mut r0[offset..end],
                &mut r1[offset..end],
                &mut r2[offset..end],
            ],
        });
    }

    /// The forward transforms of residues written by
    /// [`CrtNtt::residues_u128`].
    pub(crate) fn transform(&self, out: &mut NttPoly) {
        for (plan, res) in self.plans.iter().zip(&mut out.residues) {
            plan.fwd(res);
        }
    }

    /// Transforms a signed polynomial (any `i64` values).
    pub fn forward_i64(&self, poly: &[i64], out: &mut NttPoly) {
        self.forward_i64_with(poly, out, false);
    }

    /// Transforms a signed polynomial multiplied by `n^-1`: the same as
    /// [`CrtNtt::forward_i64`] then [`CrtNtt::normalize`], in one pass.
    pub fn forward_i64_normalized(&self, poly: &[i64], out: &mut NttPoly) {
        self.forward_i64_with(poly, out, true);
    }

    fn forward_i64_with(&self, poly: &[i64], out: &mut NttPoly, normalize: bool) {
        assert_eq!(poly.len(), self.n);
        let [r0, r1, r2] = &mut out.residues;
        simd::dispatch(Residues {
            primes: &self.crt.primes,
            src: Source::I64(poly),
            normalize,
            dst: [r0, r1, r2],
        });
        self.transform(out);
    }

    /// Multiplies by `n^-1` (do it once, to a long-lived factor, so that
    /// [`CrtNtt::inverse_u128`] needs no normalisation).
    pub fn normalize(&self, poly: &mut NttPoly) {
        for (plan, res) in self.plans.iter().zip(&mut poly.residues) {
            plan.normalize(res);
        }
    }

    /// `acc = acc * a * n^-1` point-wise: the product of two factors that
    /// were not normalised, normalised on the way (so that neither needs a
    /// pass of its own, and the product needs no separate accumulator).
    pub fn mul_normalize(&self, acc: &mut NttPoly, a: &NttPoly) {
        for k in 0..3 {
            self.plans[k].mul_assign_normalize(&mut acc.residues[k], &a.residues[k]);
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
        self.reconstruct(&acc.residues, None, out);
    }

    /// [`CrtNtt::inverse_u128`] with the signed values `addend` (e.g. noise)
    /// added to the coefficients, in the same pass.
    pub fn inverse_u128_plus(&self, acc: &mut NttPoly, addend: &[i64], out: &mut [u128]) {
        assert_eq!(out.len(), self.n);
        assert_eq!(addend.len(), self.n);
        for (plan, res) in self.plans.iter().zip(&mut acc.residues) {
            plan.inv(res);
        }
        self.reconstruct(&acc.residues, Some(addend), out);
    }

    /// Garner's reconstruction of the centred integers whose residues are
    /// `residues` (each below its prime), modulo `2^128`.
    fn reconstruct(&self, residues: &[Vec<u64>; 3], addend: Option<&[i64]>, out: &mut [u128]) {
        simd::dispatch(Reconstruct {
            crt: &self.crt,
            src: [&residues[0], &residues[1], &residues[2]],
            addend,
            dst: out,
        });
    }
}

/// Values to reduce: centred `u128` or `i64`.
#[derive(Clone, Copy)]
enum Source<'a> {
    U128(&'a [u128]),
    I64(&'a [i64]),
}

/// The residue reduction of [`CrtNtt::residues_u128`] and
/// [`CrtNtt::forward_i64`], over any lane width.
struct Residues<'a> {
    primes: &'a [Prime; 3],
    src: Source<'a>,
    normalize: bool,
    dst: [&'a mut [u64]; 3],
}

impl Kernel for Residues<'_> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Residues {
            primes,
            src,
            normalize,
            dst,
        } = self;
        // (No closures here: they would not inherit the lanes' target
        // features, and every intrinsic would become a call.)
        match src {
            Source::U128(v) => residues_loop(l, primes, normalize, v, dst),
            Source::I64(v) => residues_loop(l, primes, normalize, v, dst),
        }
    }
}

/// Values that [`residues_loop`] can load as signed 128-bit lanes.
trait Signed: Copy {
    /// The residues of `LANES` values.
    fn residues<L: Lanes>(l: L, src: &[Self], primes: &[Prime; 3], normalize: bool) -> [L::V; 3];
}

impl Signed for u128 {
    #[inline(always)]
    fn residues<L: Lanes>(l: L, src: &[u128], primes: &[Prime; 3], normalize: bool) -> [L::V; 3] {
        let (lo, hi) = l.load_u128(src);
        residues_of(l, lo, hi, primes, normalize)
    }
}

impl Signed for i64 {
    #[inline(always)]
    fn residues<L: Lanes>(l: L, src: &[i64], primes: &[Prime; 3], normalize: bool) -> [L::V; 3] {
        // With u = x + 2^63 (the sign bit flipped) = top 2^62 + low
        // (top < 4): x = top delta + low + (p - 2^63 mod p), below 2^63 + 4 delta.
        let u = l.xor(l.load_i64(src), l.splat(1 << 63));
        let low = l.and(u, l.splat(MASK_62));
        let top = l.shr::<62>(u);
        [
            residue_i64_of(l, low, top, &primes[0], normalize),
            residue_i64_of(l, low, top, &primes[1], normalize),
            residue_i64_of(l, low, top, &primes[2], normalize),
        ]
    }
}

/// One prime's residue for the `i64` case of [`Signed::residues`].
#[inline(always)]
fn residue_i64_of<L: Lanes>(l: L, low: L::V, top: L::V, q: &Prime, normalize: bool) -> L::V {
    let (p, delta) = (l.splat(q.p), l.splat(q.delta));
    let s = l.add(l.add(low, l.mul32(top, delta)), l.splat(q.minus_2_63));
    finish(l, fold_reduce(l, s, p, delta), q, normalize)
}

#[inline(always)]
fn residues_loop<L: Lanes, T: Signed>(
    l: L,
    primes: &[Prime; 3],
    normalize: bool,
    src: &[T],
    [d0, d1, d2]: [&mut [u64]; 3],
) {
    let w = L::LANES;
    let n = d0.len();
    assert!(src.len() == n && d1.len() == n && d2.len() == n);
    let whole = n - n % w;
    let mut i = 0;
    while i < whole {
        let [r0, r1, r2] = T::residues(l, &src[i..i + w], primes, normalize);
        l.store(r0, &mut d0[i..i + w]);
        l.store(r1, &mut d1[i..i + w]);
        l.store(r2, &mut d2[i..i + w]);
        i += w;
    }
    // The tail (none at power-of-two sizes) in scalar code.
    for i in whole..n {
        let [r0, r1, r2] = T::residues(Scalar, &src[i..=i], primes, normalize);
        d0[i] = r0;
        d1[i] = r1;
        d2[i] = r2;
    }
}

/// `r n^-1 mod p` if `normalize`, else `r` (for `r < p`).
#[inline(always)]
fn finish<L: Lanes>(l: L, r: L::V, q: &Prime, normalize: bool) -> L::V {
    if normalize {
        mul_shoup(l, r, l.splat(q.n_inv), l.splat(q.n_inv_shoup), l.splat(q.p))
    } else {
        r
    }
}

/// `x * c` reduced to below `2^63` (not fully) modulo `p = 2^62 - delta`,
/// for `x < 2^63` and `c, delta < 2^20`: with `x c = h 2^32 + l`
/// (`h = (x >> 32) c < 2^51`, `l = (x mod 2^32) c < 2^52`) and `2^62 = delta`,
/// `x c = (h >> 30) delta + (h mod 2^30) 2^32 + l`, below
/// `2^40 + 2^62 + 2^52`.
#[inline(always)]
fn mul_small<L: Lanes>(l: L, x: L::V, c: L::V, delta: L::V) -> L::V {
    let low = l.mul32(x, c);
    let high = l.mul32(l.shr::<32>(x), c);
    l.add(
        l.add(low, l.shl::<32>(l.and(high, l.splat(MASK_30)))),
        l.mul32(l.shr::<30>(high), delta),
    )
}

/// `a mod p` for any `a < 2^64`: one fold `(a >> 62) delta + (a mod 2^62)`
/// is below `2^62 + 3 delta < 2p`, then one conditional subtraction.
#[inline(always)]
fn fold_reduce<L: Lanes>(l: L, a: L::V, p: L::V, delta: L::V) -> L::V {
    let folded = l.add(l.and(a, l.splat(MASK_62)), l.mul32(l.shr::<62>(a), delta));
    l.reduce_once(folded, p)
}

/// `w c mod p` for any `w < 2^64` and a constant `c < p < 2^63` with Shoup
/// quotient `c_shoup`.
#[inline(always)]
fn mul_shoup<L: Lanes>(l: L, w: L::V, c: L::V, c_shoup: L::V, p: L::V) -> L::V {
    let q = l.mul_hi(w, c_shoup);
    l.reduce_once(l.sub(l.mul_lo(w, c), l.mul_lo(q, p)), p)
}

/// The residues modulo the three primes of the signed 128-bit values
/// `(hi, lo)`, times `n^-1` if `normalize`.
///
/// With `u = x + 2^127 = hi' 2^64 + lo` (the sign bit flipped, so `u` is
/// unsigned), `2^62 = delta` and `2^64 = 4 delta (mod p)`: `hi' 4 delta =
/// h 2^32 + l` with `h = (hi' >> 32) 4 delta < 2^54` and `l = (hi' mod 2^32)
/// 4 delta < 2^54`, `h 2^32 = (h >> 30) delta + (h mod 2^30) 2^32`, and
/// `lo = (lo >> 62) delta + (lo mod 2^62)`, so
///
/// ```text
/// x = (lo mod 2^62) + l + (h mod 2^30) 2^32
///     + ((h >> 30) + (lo >> 62)) delta + (p - 2^127 mod p)   (mod p),
/// ```
///
/// below `2^62 + 2^54 + 2^62 + 2^45 + 2^62 < 2^64`; one fold and one
/// conditional subtraction finish the reduction.
#[inline(always)]
fn residues_of<L: Lanes>(
    l: L,
    lo: L::V,
    hi: L::V,
    primes: &[Prime; 3],
    normalize: bool,
) -> [L::V; 3] {
    let u_hi = l.xor(hi, l.splat(1 << 63));
    let u_hi_high = l.shr::<32>(u_hi);
    let low = l.and(lo, l.splat(MASK_62));
    let lo_top = l.shr::<62>(lo);
    [
        residue_of(l, low, lo_top, u_hi, u_hi_high, &primes[0], normalize),
        residue_of(l, low, lo_top, u_hi, u_hi_high, &primes[1], normalize),
        residue_of(l, low, lo_top, u_hi, u_hi_high, &primes[2], normalize),
    ]
}

/// One prime's residue for [`residues_of`].
#[inline(always)]
fn residue_of<L: Lanes>(
    l: L,
    low: L::V,
    lo_top: L::V,
    u_hi: L::V,
    u_hi_high: L::V,
    q: &Prime,
    normalize: bool,
) -> L::V {
    let (p, delta) = (l.splat(q.p), l.splat(q.delta));
    let four_delta = l.splat(4 * q.delta);
    let h = l.mul32(u_hi_high, four_delta);
    let s = l.add(
        l.add(low, l.mul32(u_hi, four_delta)),
        l.add(
            l.shl::<32>(l.and(h, l.splat(MASK_30))),
            l.mul32(l.add(l.shr::<30>(h), lo_top), delta),
        ),
    );
    let s = l.add(s, l.splat(q.minus_2_127));
    finish(l, fold_reduce(l, s, p, delta), q, normalize)
}

/// Garner's reconstruction of [`CrtNtt::inverse_u128`], over any lane width.
struct Reconstruct<'a> {
    crt: &'a Crt,
    src: [&'a [u64]; 3],
    /// Small signed values added to the result (same length), if any.
    addend: Option<&'a [i64]>,
    dst: &'a mut [u128],
}

impl Kernel for Reconstruct<'_> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Reconstruct {
            crt,
            src,
            addend,
            dst,
        } = self;
        match addend {
            Some(e) => reconstruct_loop::<L, true>(l, crt, src, e, dst),
            None => reconstruct_loop::<L, false>(l, crt, src, &[], dst),
        }
    }
}

#[inline(always)]
fn reconstruct_loop<L: Lanes, const ADD: bool>(
    l: L,
    crt: &Crt,
    [r0, r1, r2]: [&[u64]; 3],
    addend: &[i64],
    dst: &mut [u128],
) {
    let w = L::LANES;
    let n = dst.len();
    assert!(r0.len() == n && r1.len() == n && r2.len() == n && (!ADD || addend.len() == n));
    let whole = n - n % w;
    let mut i = 0;
    while i < whole {
        let (mut lo, mut hi) = garner(
            l,
            crt,
            l.load(&r0[i..i + w]),
            l.load(&r1[i..i + w]),
            l.load(&r2[i..i + w]),
        );
        if ADD {
            (lo, hi) = add_i64(l, lo, hi, l.load_i64(&addend[i..i + w]));
        }
        l.store_u128(lo, hi, &mut dst[i..i + w]);
        i += w;
    }
    for i in whole..n {
        let (mut lo, mut hi) = garner(Scalar, crt, r0[i], r1[i], r2[i]);
        if ADD {
            (lo, hi) = add_i64(Scalar, lo, hi, addend[i] as u64);
        }
        dst[i] = (hi as u128) << 64 | lo as u128;
    }
}

/// `(hi, lo) + e` modulo `2^128` for a signed `e` (its two's complement
/// bits in each lane).
#[inline(always)]
fn add_i64<L: Lanes>(l: L, lo: L::V, hi: L::V, e: L::V) -> (L::V, L::V) {
    let sum = l.add(lo, e);
    let sign = l.sub(l.splat(0), l.shr::<63>(e));
    (sum, l.add(l.add(hi, sign), l.carry(sum, e)))
}

/// Garner: `x = v0 + v1 p0 + v2 p0 p1` with digits `v_k < p_k`, then
/// `x - P` when the top digit says the integer is negative (`|x| < 2^183 <
/// P / 4`: a top digit above `p2 / 2` means `x < 0`). Returns `x mod 2^128`
/// as (low, high) halves.
#[inline(always)]
fn garner<L: Lanes>(l: L, c: &Crt, r0: L::V, r1: L::V, r2: L::V) -> (L::V, L::V) {
    let [q0, q1, q2] = &c.primes;
    let (p0, p1, p2) = (l.splat(q0.p), l.splat(q1.p), l.splat(q2.p));
    let v0 = r0;
    // v1 = (r1 - v0) / p0 mod p1. v0 < p0 < 2 p1, so r1 + 2 p1 - v0 lies in
    // (0, 3 p1), and a Shoup product takes any input below 2^64.
    let d1 = l.sub(l.add(r1, l.splat(2 * q1.p)), v0);
    let v1 = mul_shoup(
        l,
        d1,
        l.splat(c.inv_p0_mod_p1),
        l.splat(c.inv_p0_mod_p1_shoup),
        p1,
    );
    // v2 = (r2 - v0 - v1 p0) / (p0 p1) mod p2, with p0 = p0 mod p2 < 2^20
    // (v1 < p1 < 2^62) and v0 < p0 < 2 p2: the difference plus 3 p2 lies in
    // (0, 4 p2), below 2^64.
    let delta2 = l.splat(q2.delta);
    let v1p0 = fold_reduce(
        l,
        mul_small(l, v1, l.splat(c.p0_mod_p2), delta2),
        p2,
        delta2,
    );
    let t = l.sub(l.sub(l.add(r2, l.splat(3 * q2.p)), v0), v1p0);
    let v2 = mul_shoup(
        l,
        t,
        l.splat(c.inv_p0p1_mod_p2),
        l.splat(c.inv_p0p1_mod_p2_shoup),
        p2,
    );
    // x = v0 + v1 p0 + v2 p0p1 mod 2^128.
    let (a_lo, a_hi) = l.mul_wide(v1, p0);
    let (b_lo, b_hi) = l.mul_wide(v2, l.splat(c.p0p1 as u64));
    let b_hi = l.add(b_hi, l.mul_lo(v2, l.splat((c.p0p1 >> 64) as u64)));
    let lo = l.add(v0, a_lo);
    let carry = l.carry(lo, a_lo);
    let lo2 = l.add(lo, b_lo);
    let carry2 = l.carry(lo2, b_lo);
    let hi = l.add(l.add(a_hi, b_hi), l.add(carry, carry2));
    // Negative: subtract P mod 2^128.
    let negative = l.lt(l.splat(q2.p / 2), v2);
    let zero = l.splat(0);
    let s_lo = l.select(negative, l.splat(c.product_wrapped as u64), zero);
    let s_hi = l.select(negative, l.splat((c.product_wrapped >> 64) as u64), zero);
    let borrow = l.select(l.lt(lo2, s_lo), l.splat(1), zero);
    (l.sub(lo2, s_lo), l.sub(l.sub(hi, s_hi), borrow))
}

/// Coefficient `k` of the negacyclic product `a * s` modulo `2^128` for a
/// binary `s` (any non-zero entry counts as 1), that is
/// `sum_{j <= k} s_j a_{k-j} - sum_{j > k} s_j a_{n+k-j}`, without branches
/// on the bits of `s` (a secret key or the re-randomiser).
#[cfg(test)]
pub(crate) fn coefficient_of_product<T: Copy + Default + PartialEq>(
    a: &[u128],
    s: &[T],
    k: usize,
) -> u128 {
    let n = a.len();
    assert!(s.len() == n && k < n);
    let mask = |bit: T| ((bit != T::default()) as u128).wrapping_neg();
    let (low, high) = s.split_at(k + 1);
    let plus = low
        .iter()
        .zip(a[..=k].iter().rev())
        .fold(0u128, |acc, (&bit, &x)| acc.wrapping_add(x & mask(bit)));
    let minus = high
        .iter()
        .zip(a[k + 1..].iter().rev())
        .fold(0u128, |acc, (&bit, &x)| acc.wrapping_add(x & mask(bit)));
    plus.wrapping_sub(minus)
}

/// [`coefficient_of_product`] for a binary `s` given as `i64` (the
/// re-randomiser `r`), on SIMD lanes.
pub(crate) fn coefficient_of_binary_product(a: &[u128], s: &[i64], k: usize) -> u128 {
    let n = a.len();
    assert!(s.len() == n && k < n);
    // sum_{j <= k} s_j a_{k-j} - sum_{j > k} s_j a_{n+k-j}: each sum pairs a
    // window of s with the same window of a, reversed.
    let plus = simd::dispatch(ReversedMaskedSum {
        a: &a[..=k],
        s: &s[..=k],
    });
    let minus = simd::dispatch(ReversedMaskedSum {
        a: &a[k + 1..],
        s: &s[k + 1..],
    });
    plus.wrapping_sub(minus)
}

/// `sum_t [s_t != 0] a_{len-1-t}` modulo `2^128`, over any lane width.
struct ReversedMaskedSum<'a> {
    a: &'a [u128],
    s: &'a [i64],
}

impl Kernel for ReversedMaskedSum<'_> {
    type Output = u128;

    #[inline(always)]
    fn run<L: Lanes>(self, l: L) -> u128 {
        let ReversedMaskedSum { a, s } = self;
        let (w, len) = (L::LANES, a.len());
        assert_eq!(s.len(), len);
        let whole = len - len % w;
        // Three sums of u64 lanes that cannot overflow (n / LANES terms
        // below 2^32 each, and the high halves modulo 2^64).
        let (zero, low32) = (l.splat(0), l.splat(0xFFFF_FFFF));
        let (mut sum_ll, mut sum_lh, mut sum_h) = (zero, zero, zero);
        let mut t = 0;
        while t < whole {
            let bits = l.reverse(l.load_i64(&s[t..t + w]));
            let set = l.lt(zero, bits);
            let (lo, hi) = l.load_u128(&a[len - t - w..len - t]);
            sum_ll = l.add(sum_ll, l.select(set, l.and(lo, low32), zero));
            sum_lh = l.add(sum_lh, l.select(set, l.shr::<32>(lo), zero));
            sum_h = l.add(sum_h, l.select(set, hi, zero));
            t += w;
        }
        let mut lanes = [[0u64; 8]; 3];
        l.store(sum_ll, &mut lanes[0][..w]);
        l.store(sum_lh, &mut lanes[1][..w]);
        l.store(sum_h, &mut lanes[2][..w]);
        let [ll, lh, h] = &lanes;
        let mut acc = 0u128;
        for ((&ll, &lh), &h) in ll.iter().zip(lh).zip(h).take(w) {
            acc = acc
                .wrapping_add(ll as u128)
                .wrapping_add((lh as u128) << 32)
                .wrapping_add((h as u128) << 64);
        }
        for t in whole..len {
            if s[t] != 0 {
                acc = acc.wrapping_add(a[len - 1 - t]);
            }
        }
        acc
    }
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
    use crate::simd::{Width, dispatch_width, widths};
    use proptest::prelude::*;
    use tfhe_ntt::prime::mul_mod64;

    /// The scalar reduction that the lane kernels replaced.
    fn reference_residue(x: u128, p: u64) -> u64 {
        let div = Div64::new(p);
        if x >> 127 == 0 {
            Div64::rem_u128(x, div)
        } else {
            let m = Div64::rem_u128(x.wrapping_neg(), div);
            if m == 0 { 0 } else { p - m }
        }
    }

    #[inline]
    fn sub_mod(a: u64, b: u64, p: u64) -> u64 {
        if a >= b { a - b } else { a + p - b }
    }

    /// The scalar Garner reconstruction that the lane kernels replaced.
    fn reference_reconstruct(c: &Crt, r: [u64; 3]) -> u128 {
        let p = c.primes.map(|q| q.p);
        let div = p.map(Div64::new);
        let v0 = r[0];
        let d1 = sub_mod(r[1], v0 % p[1], p[1]);
        let v1 = mul_mod64(div[1], d1, c.inv_p0_mod_p1);
        let t = sub_mod(r[2], v0 % p[2], p[2]);
        let t = sub_mod(t, mul_mod64(div[2], v1 % p[2], c.p0_mod_p2), p[2]);
        let v2 = mul_mod64(div[2], t, c.inv_p0p1_mod_p2);
        let mut x = (v0 as u128)
            .wrapping_add((v1 as u128).wrapping_mul(p[0] as u128))
            .wrapping_add((v2 as u128).wrapping_mul(c.p0p1));
        if v2 > p[2] / 2 {
            x = x.wrapping_sub(c.product_wrapped);
        }
        x
    }

    /// Residues of `values` with the kernel at `width` (None: not here).
    fn residues_at(
        ntt: &CrtNtt,
        width: Width,
        src: Source<'_>,
        normalize: bool,
    ) -> Option<[Vec<u64>; 3]> {
        let len = match src {
            Source::U128(v) => v.len(),
            Source::I64(v) => v.len(),
        };
        let [mut a, mut b, mut c] = [vec![0; len], vec![0; len], vec![0; len]];
        dispatch_width(
            width,
            Residues {
                primes: &ntt.crt.primes,
                src,
                normalize,
                dst: [&mut a, &mut b, &mut c],
            },
        )?;
        Some([a, b, c])
    }

    fn check_residues(ntt: &CrtNtt, values: &[u128]) -> Result<(), TestCaseError> {
        let primes = ntt.primes();
        for width in widths() {
            for normalize in [false, true] {
                let Some(got) = residues_at(ntt, width, Source::U128(values), normalize) else {
                    continue;
                };
                for (k, &p) in primes.iter().enumerate() {
                    let div = Div64::new(p);
                    for (i, &x) in values.iter().enumerate() {
                        let mut want = reference_residue(x, p);
                        if normalize {
                            want = mul_mod64(div, want, ntt.crt.primes[k].n_inv);
                        }
                        prop_assert_eq!(
                            got[k][i],
                            want,
                            "{:?} normalize {} prime {} value {:#x}",
                            width,
                            normalize,
                            k,
                            x
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn check_reconstruction(ntt: &CrtNtt, residues: &[[u64; 3]]) -> Result<(), TestCaseError> {
        let cols: [Vec<u64>; 3] = std::array::from_fn(|k| residues.iter().map(|r| r[k]).collect());
        // Addends at the extremes and small noise.
        let addend: Vec<i64> = (0..residues.len())
            .map(|i| match i % 4 {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => -8 + (i % 17) as i64,
                _ => -1,
            })
            .collect();
        for width in widths() {
            for add in [false, true] {
                let mut out = vec![0u128; residues.len()];
                let kernel = Reconstruct {
                    crt: &ntt.crt,
                    src: [&cols[0], &cols[1], &cols[2]],
                    addend: add.then_some(&addend[..]),
                    dst: &mut out,
                };
                if dispatch_width(width, kernel).is_none() {
                    continue;
                }
                for ((r, &x), &e) in residues.iter().zip(&out).zip(&addend) {
                    let mut want = reference_reconstruct(&ntt.crt, *r);
                    if add {
                        want = want.wrapping_add(e as i128 as u128);
                    }
                    prop_assert_eq!(x, want, "{:?} add {} {:?}", width, add, r);
                }
            }
        }
        Ok(())
    }

    /// Values at the edges of the reduction: 0, `q - 1`, `+-2^127`, powers
    /// of two at the limb boundaries, and values near multiples of each
    /// prime (and of their products), with either sign.
    fn extreme_values() -> Vec<u128> {
        let mut v = vec![
            0u128,
            1,
            u128::MAX,
            1 << 127,
            (1 << 127) - 1,
            (1 << 127) + 1,
        ];
        for b in [32, 60, 62, 64, 96, 124, 126] {
            v.extend([1u128 << b, (1u128 << b) - 1, (1u128 << b) + 1]);
        }
        let p = primes();
        let mut bases: Vec<u128> = p.iter().map(|&q| q as u128).collect();
        bases.push(p[0] as u128 * p[1] as u128);
        bases.push(p[2] as u128 * p[2] as u128);
        bases.push(u128::MAX / p[0] as u128 * p[0] as u128);
        bases.push((1u128 << 127) / p[2] as u128 * p[2] as u128);
        for b in bases {
            for m in [1u128, 2, 3, 4, 5] {
                let Some(x) = b.checked_mul(m) else { continue };
                for d in [-1i128, 0, 1] {
                    let y = x.wrapping_add(d as u128);
                    v.extend([y, y.wrapping_neg()]);
                }
            }
        }
        v
    }

    #[test]
    fn residues_match_the_scalar_reference_at_the_extremes() {
        let ntt = CrtNtt::new(64);
        let values = extreme_values();
        check_residues(&ntt, &values).unwrap();
        // i64 inputs, including the extremes
        let ints: Vec<i64> = [0, 1, -1, i64::MIN, i64::MAX, 1 << 62, -(1 << 62), 1 << 40]
            .into_iter()
            .chain(primes().iter().flat_map(|&p| {
                let p = p as i64;
                [p - 1, p, p + 1, -p + 1, -p, -p - 1]
            }))
            .collect();
        let wide: Vec<u128> = ints.iter().map(|&x| x as i128 as u128).collect();
        for width in widths() {
            let (Some(a), Some(b)) = (
                residues_at(&ntt, width, Source::I64(&ints), false),
                residues_at(&ntt, width, Source::U128(&wide), false),
            ) else {
                continue;
            };
            assert_eq!(a, b, "{width:?}");
        }
    }

    #[test]
    fn reconstruction_matches_the_scalar_reference_at_the_extremes() {
        let ntt = CrtNtt::new(64);
        let p = ntt.primes();
        let mut edges: Vec<[u64; 3]> = Vec::new();
        let picks = |q: u64| [0, 1, 2, q / 2 - 1, q / 2, q / 2 + 1, q - 2, q - 1];
        for a in picks(p[0]) {
            for b in picks(p[1]) {
                for c in picks(p[2]) {
                    edges.push([a, b, c]);
                }
            }
        }
        // Residues of the extreme products: +-(2^183 - 1) and of 0, +-1.
        for x in [0i128, 1, -1, i128::MAX, i128::MIN] {
            edges.push(p.map(|q| (x.rem_euclid(q as i128)) as u64));
        }
        check_reconstruction(&ntt, &edges).unwrap();
    }

    #[test]
    fn fused_mask_transform_equals_expand_then_transform() {
        let ntt = CrtNtt::new(POLY_TEST_N);
        for seed in [0u128, 7, u128::MAX] {
            let mut mask = vec![0u128; POLY_TEST_N];
            crate::mask::expand_mask(seed, &mut mask);
            let (mut a, mut b) = (NttPoly::zero(POLY_TEST_N), NttPoly::zero(POLY_TEST_N));
            ntt.forward_u128(&mask, &mut a);
            ntt.forward_mask(seed, &mut b);
            assert_eq!(a, b);
        }
    }

    /// Larger than one mask block, to cross block boundaries.
    const POLY_TEST_N: usize = 1024;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn coefficients_of_binary_products_match_the_schoolbook(
            a in proptest::collection::vec(any::<u128>(), 64),
            s in proptest::collection::vec(0i64..=1, 64),
            k in 0usize..64,
        ) {
            let want = negacyclic_reference(&a, &s)[k];
            prop_assert_eq!(coefficient_of_product(&a, &s, k), want);
            let wide: Vec<u128> = s.iter().map(|&x| x as u128).collect();
            prop_assert_eq!(coefficient_of_product(&a, &wide, k), want);
            prop_assert_eq!(coefficient_of_binary_product(&a, &s, k), want);
        }

        #[test]
        fn normalized_forward_equals_forward_then_normalize(
            w in proptest::collection::vec(any::<i64>(), 64),
        ) {
            let ntt = CrtNtt::new(64);
            let (mut a, mut b) = (NttPoly::zero(64), NttPoly::zero(64));
            ntt.forward_i64(&w, &mut a);
            ntt.normalize(&mut a);
            ntt.forward_i64_normalized(&w, &mut b);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn residues_match_the_scalar_reference(
            values in proptest::collection::vec(any::<u128>(), 0..70),
            small in proptest::collection::vec(-(1i128 << 70)..(1i128 << 70), 0..40),
        ) {
            let ntt = CrtNtt::new(64);
            let mut all = values;
            all.extend(small.iter().map(|&x| x as u128));
            check_residues(&ntt, &all)?;
        }

        #[test]
        fn i64_residues_match_the_scalar_reference(
            values in proptest::collection::vec(any::<i64>(), 0..70),
        ) {
            let ntt = CrtNtt::new(64);
            let wide: Vec<u128> = values.iter().map(|&x| x as i128 as u128).collect();
            for width in widths() {
                for normalize in [false, true] {
                    let Some(got) = residues_at(&ntt, width, Source::I64(&values), normalize) else {
                        continue;
                    };
                    let want = residues_at(&ntt, Width::Scalar, Source::U128(&wide), normalize);
                    prop_assert_eq!(Some(got), want);
                }
            }
            check_residues(&ntt, &wide)?;
        }

        #[test]
        fn reconstruction_matches_the_scalar_reference(
            seeds in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..70),
        ) {
            let ntt = CrtNtt::new(64);
            let p = ntt.primes();
            let residues: Vec<[u64; 3]> = seeds
                .iter()
                .map(|&(a, b, c)| [a % p[0], b % p[1], c % p[2]])
                .collect();
            check_reconstruction(&ntt, &residues)?;
        }
    }

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
