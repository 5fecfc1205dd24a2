//! Constants the kernels need, computed on the host: per-prime Montgomery
//! constants, NTT twiddle tables and the CRT (Garner) constants. The layouts
//! match the `PB_*` offsets in `kernels/billing.cu`.

use pb_glwe::ntt::primes;
use pb_glwe::params::POLYNOMIAL_SIZE;

/// `u64` words per prime in the `primes` table (`PB_PRIME_WORDS`).
pub(crate) const PRIME_WORDS: usize = 4;
/// `u64` words of the CRT table (`PB_CRT_WORDS`).
pub(crate) const CRT_WORDS: usize = 13;
/// `u64` words of one household's ChaCha20 stream (`PB_STREAM_WORDS`).
pub(crate) const STREAM_WORDS: usize = 145 * 8;

const N: usize = POLYNOMIAL_SIZE;
const LOG_N: u32 = N.trailing_zeros();

fn mul_mod(a: u64, b: u64, p: u64) -> u64 {
    ((a as u128 * b as u128) % p as u128) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, p: u64) -> u64 {
    let mut acc = 1u64;
    base %= p;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, p);
        }
        base = mul_mod(base, base, p);
        exp >>= 1;
    }
    acc
}

fn inv_mod(a: u64, p: u64) -> u64 {
    pow_mod(a, p - 2, p)
}

/// `c R mod p` with `R = 2^64` (Montgomery form).
pub(crate) fn mont_form(c: u64, p: u64) -> u64 {
    (((c as u128) << 64) % p as u128) as u64
}

/// `-p^-1 mod 2^64` (Newton iteration; `p` odd).
pub(crate) fn neg_inv64(p: u64) -> u64 {
    let mut inv = 1u64;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(p.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// A primitive `2N`-th root of unity modulo `p`: `psi^N = -1`.
pub(crate) fn psi(p: u64) -> u64 {
    let exp = (p - 1) / (2 * N as u64);
    (2u64..)
        .map(|g| pow_mod(g, exp, p))
        .find(|&x| pow_mod(x, N as u64, p) == p - 1)
        .unwrap_or(0) // p = 1 mod 2N is prime: a non-residue exists
}

fn bit_reverse(i: usize) -> usize {
    i.reverse_bits() >> (usize::BITS - LOG_N)
}

/// Everything the kernels read besides the data.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    /// `PRIME_WORDS` per prime: p, -p^-1 mod 2^64, N^-1 R^3 mod p, p / 2.
    pub primes: Vec<u64>,
    /// Per prime, `N` powers `psi^bitrev(i)` in Montgomery form.
    pub twiddles: Vec<u64>,
    /// Per prime, `N` powers `psi^-bitrev(i)` in Montgomery form.
    pub inv_twiddles: Vec<u64>,
    /// The CRT constants (`PB_CRT_WORDS`).
    pub crt: Vec<u64>,
}

impl Tables {
    /// The tables for the scheme's primes and polynomial size.
    pub(crate) fn new() -> Tables {
        let p = primes();
        let mut prime_table = Vec::with_capacity(3 * PRIME_WORDS);
        let mut twiddles = Vec::with_capacity(3 * N);
        let mut inv_twiddles = Vec::with_capacity(3 * N);
        for &q in &p {
            let r = mont_form(1, q);
            let n_inv = inv_mod(N as u64, q);
            let scale = mul_mod(mul_mod(mul_mod(n_inv, r, q), r, q), r, q);
            prime_table.extend([q, neg_inv64(q), scale, q / 2]);
            let w = psi(q);
            let w_inv = inv_mod(w, q);
            twiddles.extend((0..N).map(|i| mont_form(pow_mod(w, bit_reverse(i) as u64, q), q)));
            inv_twiddles
                .extend((0..N).map(|i| mont_form(pow_mod(w_inv, bit_reverse(i) as u64, q), q)));
        }
        let p0p1 = p[0] as u128 * p[1] as u128;
        let inv01 = inv_mod(p[0] % p[1], p[1]);
        let inv012 = inv_mod((p0p1 % p[2] as u128) as u64, p[2]);
        let product = p0p1.wrapping_mul(p[2] as u128);
        let crt = vec![
            p[0],
            p[1],
            p[2],
            mont_form(inv01, p[1]),
            mont_form(p[0] % p[2], p[2]),
            mont_form(inv012, p[2]),
            p0p1 as u64,
            (p0p1 >> 64) as u64,
            product as u64,
            (product >> 64) as u64,
            neg_inv64(p[1]),
            neg_inv64(p[2]),
            p[2] / 2,
        ];
        debug_assert_eq!(crt.len(), CRT_WORDS);
        Tables {
            primes: prime_table,
            twiddles,
            inv_twiddles,
            crt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montgomery_constants_are_consistent() {
        for p in primes() {
            assert_eq!(p.wrapping_mul(neg_inv64(p)), u64::MAX, "p * -p^-1 = -1");
            let w = psi(p);
            assert_eq!(pow_mod(w, N as u64, p), p - 1);
            assert_eq!(pow_mod(w, 2 * N as u64, p), 1);
            assert_eq!(mont_form(1, p), ((1u128 << 64) % p as u128) as u64);
        }
    }

    #[test]
    fn tables_have_the_kernel_layouts() {
        let t = Tables::new();
        assert_eq!(t.primes.len(), 3 * PRIME_WORDS);
        assert_eq!(t.twiddles.len(), 3 * N);
        assert_eq!(t.inv_twiddles.len(), 3 * N);
        assert_eq!(t.crt.len(), CRT_WORDS);
        // twiddle 0 is psi^0 = 1 (in Montgomery form), twiddle 1 is psi^(N/2)
        let p = primes()[0];
        assert_eq!(t.twiddles[0], mont_form(1, p));
        assert_eq!(
            t.twiddles[1],
            mont_form(pow_mod(psi(p), N as u64 / 2, p), p)
        );
        assert_eq!(bit_reverse(1), N / 2);
    }
}
