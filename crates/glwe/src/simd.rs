//! Lane-parallel 64-bit integer arithmetic for the CRT conversions.
//!
//! The conversions of [`crate::ntt`] are written once, generically over
//! [`Lanes`], and run on AVX-512 (8 lanes), AVX2 (4 lanes) or plain scalar
//! code, picked at run time through `pulp` (as `tfhe-ntt` picks its NTT
//! kernels). All three run the very same algorithm, so they agree bit for bit;
//! tests hold each against the scalar reference of [`crate::ntt`].

/// Operations on a vector of `LANES` unsigned 64-bit integers (all
/// arithmetic wraps modulo `2^64`).
pub(crate) trait Lanes: Copy {
    /// One vector.
    type V: Copy;
    /// A lane mask (result of a comparison).
    type M: Copy;
    /// Number of lanes.
    const LANES: usize;

    fn splat(self, x: u64) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn and(self, a: Self::V, b: Self::V) -> Self::V;
    fn or(self, a: Self::V, b: Self::V) -> Self::V;
    fn xor(self, a: Self::V, b: Self::V) -> Self::V;
    fn shr<const K: u32>(self, a: Self::V) -> Self::V;
    fn shl<const K: u32>(self, a: Self::V) -> Self::V;
    /// Product of the low 32 bits of each lane (exact, below `2^64`).
    fn mul32(self, a: Self::V, b: Self::V) -> Self::V;
    /// Low 64 bits of the product.
    fn mul_lo(self, a: Self::V, b: Self::V) -> Self::V;
    /// High 64 bits of the product.
    fn mul_hi(self, a: Self::V, b: Self::V) -> Self::V;
    /// The 128-bit product as (low, high).
    fn mul_wide(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a < b`, unsigned.
    fn lt(self, a: Self::V, b: Self::V) -> Self::M;
    fn select(self, m: Self::M, yes: Self::V, no: Self::V) -> Self::V;
    /// The lanes in reverse order.
    fn reverse(self, a: Self::V) -> Self::V;

    /// Loads `LANES` values (`src.len() == LANES`).
    fn load(self, src: &[u64]) -> Self::V;
    /// Loads `LANES` signed values as their two's complement bits.
    fn load_i64(self, src: &[i64]) -> Self::V;
    /// Stores `LANES` values (`dst.len() == LANES`).
    fn store(self, v: Self::V, dst: &mut [u64]);
    /// Loads `LANES` 128-bit values as (low halves, high halves).
    fn load_u128(self, src: &[u128]) -> (Self::V, Self::V);
    /// Stores `LANES` 128-bit values from (low halves, high halves).
    fn store_u128(self, lo: Self::V, hi: Self::V, dst: &mut [u128]);

    /// `a mod p` for `a < 2p`.
    #[inline(always)]
    fn reduce_once(self, a: Self::V, p: Self::V) -> Self::V {
        self.min(a, self.sub(a, p))
    }

    /// The carry out of `a + b`, as 0 or 1, given `sum = a + b` (wrapping).
    #[inline(always)]
    fn carry(self, sum: Self::V, a: Self::V) -> Self::V {
        self.select(self.lt(sum, a), self.splat(1), self.splat(0))
    }
}

/// A computation over any [`Lanes`].
pub(crate) trait Kernel {
    /// What it returns.
    type Output;
    /// Runs it on `lanes`.
    fn run<L: Lanes>(self, lanes: L) -> Self::Output;
}

/// A lane width (tests run the kernels at each).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// AVX-512, 8 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2, 4 lanes.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Scalar code.
    Scalar,
}

/// Runs `k` with the widest lanes this processor supports.
#[inline]
pub(crate) fn dispatch<K: Kernel>(k: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            return simd.vectorize(
                #[inline(always)]
                move || k.run(x86::Avx512(simd)),
            );
        }
        if let Some(simd) = pulp::x86::V3::try_new() {
            return simd.vectorize(
                #[inline(always)]
                move || k.run(x86::Avx2(simd)),
            );
        }
    }
    k.run(Scalar)
}

/// Runs `k` with the given width, or `None` if this processor lacks it
/// (tests run every available width).
#[cfg(test)]
pub(crate) fn dispatch_width<K: Kernel>(width: Width, k: K) -> Option<K::Output> {
    match width {
        #[cfg(target_arch = "x86_64")]
        Width::Avx512 => pulp::x86::V4::try_new().map(|simd| {
            simd.vectorize(
                #[inline(always)]
                move || k.run(x86::Avx512(simd)),
            )
        }),
        #[cfg(target_arch = "x86_64")]
        Width::Avx2 => pulp::x86::V3::try_new().map(|simd| {
            simd.vectorize(
                #[inline(always)]
                move || k.run(x86::Avx2(simd)),
            )
        }),
        Width::Scalar => Some(k.run(Scalar)),
    }
}

/// Every width, widest first.
#[cfg(test)]
pub(crate) fn widths() -> Vec<Width> {
    vec![
        #[cfg(target_arch = "x86_64")]
        Width::Avx512,
        #[cfg(target_arch = "x86_64")]
        Width::Avx2,
        Width::Scalar,
    ]
}

/// One lane of plain `u64` arithmetic: the fallback, and the reference
/// that the vector widths must match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalar;

impl Lanes for Scalar {
    type V = u64;
    type M = bool;
    const LANES: usize = 1;

    #[inline(always)]
    fn splat(self, x: u64) -> u64 {
        x
    }
    #[inline(always)]
    fn add(self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn sub(self, a: u64, b: u64) -> u64 {
        a.wrapping_sub(b)
    }
    #[inline(always)]
    fn and(self, a: u64, b: u64) -> u64 {
        a & b
    }
    #[inline(always)]
    fn or(self, a: u64, b: u64) -> u64 {
        a | b
    }
    #[inline(always)]
    fn xor(self, a: u64, b: u64) -> u64 {
        a ^ b
    }
    #[inline(always)]
    fn shr<const K: u32>(self, a: u64) -> u64 {
        a >> K
    }
    #[inline(always)]
    fn shl<const K: u32>(self, a: u64) -> u64 {
        a << K
    }
    #[inline(always)]
    fn mul32(self, a: u64, b: u64) -> u64 {
        (a & 0xFFFF_FFFF) * (b & 0xFFFF_FFFF)
    }
    #[inline(always)]
    fn mul_lo(self, a: u64, b: u64) -> u64 {
        a.wrapping_mul(b)
    }
    #[inline(always)]
    fn mul_hi(self, a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) >> 64) as u64
    }
    #[inline(always)]
    fn mul_wide(self, a: u64, b: u64) -> (u64, u64) {
        let p = a as u128 * b as u128;
        (p as u64, (p >> 64) as u64)
    }
    #[inline(always)]
    fn min(self, a: u64, b: u64) -> u64 {
        a.min(b)
    }
    #[inline(always)]
    fn lt(self, a: u64, b: u64) -> bool {
        a < b
    }
    #[inline(always)]
    fn select(self, m: bool, yes: u64, no: u64) -> u64 {
        if m { yes } else { no }
    }
    #[inline(always)]
    fn reverse(self, a: u64) -> u64 {
        a
    }
    #[inline(always)]
    fn load(self, src: &[u64]) -> u64 {
        src[0]
    }
    #[inline(always)]
    fn load_i64(self, src: &[i64]) -> u64 {
        src[0] as u64
    }
    #[inline(always)]
    fn store(self, v: u64, dst: &mut [u64]) {
        dst[0] = v;
    }
    #[inline(always)]
    fn load_u128(self, src: &[u128]) -> (u64, u64) {
        (src[0] as u64, (src[0] >> 64) as u64)
    }
    #[inline(always)]
    fn store_u128(self, lo: u64, hi: u64, dst: &mut [u128]) {
        dst[0] = (hi as u128) << 64 | lo as u128;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use pulp::{b8, cast, m64x4, u64x2, u64x4, u64x8};

    /// The first `N` values of `src` (`src.len() >= N`, else a panic at
    /// the slice index, never at the conversion).
    #[inline(always)]
    fn array<T: Copy + Default, const N: usize>(src: &[T]) -> [T; N] {
        <[T; N]>::try_from(&src[..N]).unwrap_or([T::default(); N])
    }

    /// Eight lanes on AVX-512 (F, DQ).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Avx512(pub pulp::x86::V4);

    /// Four lanes on AVX2.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Avx2(pub pulp::x86::V3);

    impl Lanes for Avx512 {
        type V = u64x8;
        type M = b8;
        const LANES: usize = 8;

        #[inline(always)]
        fn splat(self, x: u64) -> u64x8 {
            self.0.splat_u64x8(x)
        }
        #[inline(always)]
        fn add(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.wrapping_add_u64x8(a, b)
        }
        #[inline(always)]
        fn sub(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.wrapping_sub_u64x8(a, b)
        }
        #[inline(always)]
        fn and(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.and_u64x8(a, b)
        }
        #[inline(always)]
        fn or(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.or_u64x8(a, b)
        }
        #[inline(always)]
        fn xor(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.xor_u64x8(a, b)
        }
        #[inline(always)]
        fn shr<const K: u32>(self, a: u64x8) -> u64x8 {
            self.0.shr_const_u64x8::<K>(a)
        }
        #[inline(always)]
        fn shl<const K: u32>(self, a: u64x8) -> u64x8 {
            self.0.shl_const_u64x8::<K>(a)
        }
        #[inline(always)]
        fn mul32(self, a: u64x8, b: u64x8) -> u64x8 {
            cast(self.0.avx512f._mm512_mul_epu32(cast(a), cast(b)))
        }
        #[inline(always)]
        fn mul_lo(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.wrapping_mul_u64x8(a, b)
        }
        #[inline(always)]
        fn mul_hi(self, a: u64x8, b: u64x8) -> u64x8 {
            self.mul_wide(a, b).1
        }
        #[inline(always)]
        fn mul_wide(self, a: u64x8, b: u64x8) -> (u64x8, u64x8) {
            // Four 32 x 32 products (as tfhe-ntt does).
            let lo32 = self.splat(0xFFFF_FFFF);
            let (a_hi, b_hi) = (self.shr::<32>(a), self.shr::<32>(b));
            let ll = self.mul32(a, b);
            let lh = self.mul32(a, b_hi);
            let hl = self.mul32(a_hi, b);
            let hh = self.mul32(a_hi, b_hi);
            let mid = self.add(lh, self.shr::<32>(ll));
            let mid2 = self.add(hl, self.and(mid, lo32));
            let hi = self.add(self.add(hh, self.shr::<32>(mid)), self.shr::<32>(mid2));
            let lo = self.or(self.shl::<32>(mid2), self.and(ll, lo32));
            (lo, hi)
        }
        #[inline(always)]
        fn min(self, a: u64x8, b: u64x8) -> u64x8 {
            self.0.min_u64x8(a, b)
        }
        #[inline(always)]
        fn lt(self, a: u64x8, b: u64x8) -> b8 {
            self.0.cmp_lt_u64x8(a, b)
        }
        #[inline(always)]
        fn select(self, m: b8, yes: u64x8, no: u64x8) -> u64x8 {
            self.0.select_u64x8(m, yes, no)
        }
        #[inline(always)]
        fn reverse(self, a: u64x8) -> u64x8 {
            let avx = self.0.avx512f;
            let idx = avx._mm512_setr_epi64(7, 6, 5, 4, 3, 2, 1, 0);
            cast(avx._mm512_permutexvar_epi64(idx, cast(a)))
        }
        #[inline(always)]
        fn load(self, src: &[u64]) -> u64x8 {
            cast(array::<u64, 8>(src))
        }
        #[inline(always)]
        fn load_i64(self, src: &[i64]) -> u64x8 {
            cast(array::<i64, 8>(src))
        }
        #[inline(always)]
        fn store(self, v: u64x8, dst: &mut [u64]) {
            let a: [u64; 8] = cast(v);
            dst[..8].copy_from_slice(&a);
        }
        #[inline(always)]
        fn load_u128(self, src: &[u128]) -> (u64x8, u64x8) {
            let [x, y]: [u64x8; 2] = cast(array::<u128, 8>(src));
            let avx = self.0.avx512f;
            let even = avx._mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
            let odd = avx._mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
            (
                cast(avx._mm512_permutex2var_epi64(cast(x), even, cast(y))),
                cast(avx._mm512_permutex2var_epi64(cast(x), odd, cast(y))),
            )
        }
        #[inline(always)]
        fn store_u128(self, lo: u64x8, hi: u64x8, dst: &mut [u128]) {
            let avx = self.0.avx512f;
            let first = avx._mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
            let second = avx._mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
            let x: u64x8 = cast(avx._mm512_permutex2var_epi64(cast(lo), first, cast(hi)));
            let y: u64x8 = cast(avx._mm512_permutex2var_epi64(cast(lo), second, cast(hi)));
            let a: [u128; 8] = cast([x, y]);
            dst[..8].copy_from_slice(&a);
        }
    }

    impl Lanes for Avx2 {
        type V = u64x4;
        type M = m64x4;
        const LANES: usize = 4;

        #[inline(always)]
        fn splat(self, x: u64) -> u64x4 {
            self.0.splat_u64x4(x)
        }
        #[inline(always)]
        fn add(self, a: u64x4, b: u64x4) -> u64x4 {
            self.0.wrapping_add_u64x4(a, b)
        }
        #[inline(always)]
        fn sub(self, a: u64x4, b: u64x4) -> u64x4 {
            self.0.wrapping_sub_u64x4(a, b)
        }
        #[inline(always)]
        fn and(self, a: u64x4, b: u64x4) -> u64x4 {
            self.0.and_u64x4(a, b)
        }
        #[inline(always)]
        fn or(self, a: u64x4, b: u64x4) -> u64x4 {
            self.0.or_u64x4(a, b)
        }
        #[inline(always)]
        fn xor(self, a: u64x4, b: u64x4) -> u64x4 {
            self.0.xor_u64x4(a, b)
        }
        #[inline(always)]
        fn shr<const K: u32>(self, a: u64x4) -> u64x4 {
            // (pulp's const shifts take i32 here; LLVM folds the constant count)
            self.0.shr_u64x4(a, u64x2(K as u64, 0))
        }
        #[inline(always)]
        fn shl<const K: u32>(self, a: u64x4) -> u64x4 {
            self.0.shl_u64x4(a, u64x2(K as u64, 0))
        }
        #[inline(always)]
        fn mul32(self, a: u64x4, b: u64x4) -> u64x4 {
            cast(self.0.avx2._mm256_mul_epu32(cast(a), cast(b)))
        }
        #[inline(always)]
        fn mul_lo(self, a: u64x4, b: u64x4) -> u64x4 {
            let cross = self.add(
                self.mul32(self.shr::<32>(a), b),
                self.mul32(a, self.shr::<32>(b)),
            );
            self.add(self.mul32(a, b), self.shl::<32>(cross))
        }
        #[inline(always)]
        fn mul_hi(self, a: u64x4, b: u64x4) -> u64x4 {
            self.mul_wide(a, b).1
        }
        #[inline(always)]
        fn mul_wide(self, a: u64x4, b: u64x4) -> (u64x4, u64x4) {
            let lo32 = self.splat(0xFFFF_FFFF);
            let (a_hi, b_hi) = (self.shr::<32>(a), self.shr::<32>(b));
            let ll = self.mul32(a, b);
            let lh = self.mul32(a, b_hi);
            let hl = self.mul32(a_hi, b);
            let hh = self.mul32(a_hi, b_hi);
            let mid = self.add(lh, self.shr::<32>(ll));
            let mid2 = self.add(hl, self.and(mid, lo32));
            let hi = self.add(self.add(hh, self.shr::<32>(mid)), self.shr::<32>(mid2));
            let lo = self.or(self.shl::<32>(mid2), self.and(ll, lo32));
            (lo, hi)
        }
        #[inline(always)]
        fn min(self, a: u64x4, b: u64x4) -> u64x4 {
            self.0.select_u64x4(self.0.cmp_lt_u64x4(a, b), a, b)
        }
        #[inline(always)]
        fn lt(self, a: u64x4, b: u64x4) -> m64x4 {
            self.0.cmp_lt_u64x4(a, b)
        }
        #[inline(always)]
        fn select(self, m: m64x4, yes: u64x4, no: u64x4) -> u64x4 {
            self.0.select_u64x4(m, yes, no)
        }
        #[inline(always)]
        fn reverse(self, a: u64x4) -> u64x4 {
            cast(
                self.0
                    .avx2
                    ._mm256_permute4x64_epi64::<0b00_01_10_11>(cast(a)),
            )
        }
        #[inline(always)]
        fn load(self, src: &[u64]) -> u64x4 {
            cast(array::<u64, 4>(src))
        }
        #[inline(always)]
        fn load_i64(self, src: &[i64]) -> u64x4 {
            cast(array::<i64, 4>(src))
        }
        #[inline(always)]
        fn store(self, v: u64x4, dst: &mut [u64]) {
            let a: [u64; 4] = cast(v);
            dst[..4].copy_from_slice(&a);
        }
        #[inline(always)]
        fn load_u128(self, src: &[u128]) -> (u64x4, u64x4) {
            let [x, y]: [u64x4; 2] = cast(array::<u128, 4>(src));
            let avx2 = self.0.avx2;
            // unpack gives lanes 0, 2, 1, 3; the permutation puts them back.
            let lo = avx2._mm256_unpacklo_epi64(cast(x), cast(y));
            let hi = avx2._mm256_unpackhi_epi64(cast(x), cast(y));
            (
                cast(avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(lo)),
                cast(avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(hi)),
            )
        }
        #[inline(always)]
        fn store_u128(self, lo: u64x4, hi: u64x4, dst: &mut [u128]) {
            let avx2 = self.0.avx2;
            let lo = avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(cast(lo));
            let hi = avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(cast(hi));
            let x: u64x4 = cast(avx2._mm256_unpacklo_epi64(lo, hi));
            let y: u64x4 = cast(avx2._mm256_unpackhi_epi64(lo, hi));
            let a: [u128; 4] = cast([x, y]);
            dst[..4].copy_from_slice(&a);
        }
    }
}
