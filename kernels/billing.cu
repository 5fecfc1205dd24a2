// The billing authority's homomorphic vector work on a CUDA device.
//
// Compiled at run time with NVRTC (crates/cuda, `pb_cuda`), and on machines
// without a GPU compiled as plain C++ against kernels/emu/emu.hpp, whose
// thread-per-thread emulation lets the test suite check every kernel bit for
// bit against the CPU backend. Keep this file free of headers and of CUDA
// features the emulator lacks (warp intrinsics, atomics, cooperative groups):
// threads of a block share data only through shared memory and
// __syncthreads(), and every kernel works for any power-of-two block size.
//
// Arithmetic (docs/design.md, "CUDA backend"):
// * polynomials of N = 8192 coefficients; u128 values travel as two u64
//   words, low word first (the host's little-endian layout);
// * products modulo 2^128 are exact integer products recovered by CRT from
//   three primes p_k < 2^62 (the same primes as the CPU backend); residues
//   use Montgomery arithmetic with R = 2^64: mont(a, b) = a b R^-1 mod p;
// * the negacyclic NTT is Cooley-Tukey forward / Gentleman-Sande inverse
//   with bit-reversed powers of psi (a 2N-th root of unity), twiddles stored
//   in Montgomery form; the factor N^-1 and the Montgomery factors are folded
//   into the weights once per cycle, so inverse transforms need no scaling.

#ifndef PB_EMULATOR
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;
#define PB_KERNEL extern "C" __global__
#define PB_DEV __device__ __forceinline__
#define PB_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#define PB_MULHI(a, b) __umul64hi((a), (b))
#endif

#define PB_N 8192u
#define PB_LOG_N 13u

// ---------------------------------------------------------------------------
// Per-prime constants, passed by the host as one array of PB_PRIME_WORDS u64
// per prime.
// ---------------------------------------------------------------------------
#define PB_PRIME_WORDS 4u
#define PB_P 0u        // the prime
#define PB_PINV 1u     // -p^-1 mod 2^64
#define PB_SCALE 2u    // N^-1 R^3 mod p (folds N^-1 and Montgomery factors)
#define PB_HALF 3u     // p / 2

PB_DEV u64 add_mod(u64 a, u64 b, u64 p) {
    u64 s = a + b;  // a, b < p < 2^62: no overflow
    return s >= p ? s - p : s;
}

PB_DEV u64 sub_mod(u64 a, u64 b, u64 p) { return a >= b ? a - b : a + p - b; }

// Montgomery reduction of h * 2^64 + lo with h < p: returns (h 2^64 + lo) R^-1
// mod p, fully reduced.
PB_DEV u64 redc(u64 h, u64 lo, u64 p, u64 pinv) {
    u64 m = lo * pinv;
    u64 u = h + PB_MULHI(m, p) + (lo != 0 ? 1ull : 0ull);
    return u >= p ? u - p : u;
}

// a b R^-1 mod p for a, b < p.
PB_DEV u64 mont(u64 a, u64 b, u64 p, u64 pinv) {
    return redc(PB_MULHI(a, b), a * b, p, pinv);
}

// x R^-1 mod p for the u128 x = hi 2^64 + lo read as a signed (centred) value.
PB_DEV u64 reduce_centred(u64 lo, u64 hi, u64 p, u64 pinv) {
    int neg = (int)(hi >> 63);
    if (neg) {
        lo = ~lo + 1ull;
        hi = ~hi + (lo == 0 ? 1ull : 0ull);
    }
    // |x| <= 2^127, so hi <= 2^63 < 4p.
    while (hi >= p) hi -= p;
    u64 r = redc(hi, lo, p, pinv);
    if (neg && r != 0) r = p - r;
    return r;
}

// Signed 64-bit value modulo p (|x| < p).
PB_DEV u64 reduce_small(long long x, u64 p) {
    return x >= 0 ? (u64)x : p - (u64)(-x);
}

// ---------------------------------------------------------------------------
// AES-128 in counter mode: the TFHE-rs mask generator. Key = the 128-bit seed
// (little-endian bytes); block i encrypts the little-endian counter i; the
// mask coefficient i is the ciphertext block read as a little-endian u128.
// ---------------------------------------------------------------------------
__constant__ u8 PB_SBOX[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

PB_DEV u32 rotr32(u32 x, u32 r) { return (x >> r) | (x << (32u - r)); }

PB_DEV u32 be_word(u64 v, u32 byte) {
    // Big-endian word of little-endian bytes byte..byte+3 of v.
    u32 b0 = (u32)(v >> (8u * byte)) & 0xffu;
    u32 b1 = (u32)(v >> (8u * (byte + 1u))) & 0xffu;
    u32 b2 = (u32)(v >> (8u * (byte + 2u))) & 0xffu;
    u32 b3 = (u32)(v >> (8u * (byte + 3u))) & 0xffu;
    return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3;
}

PB_DEV u64 le_pair(u32 w_lo, u32 w_hi) {
    // Bytes of two big-endian words, read little-endian.
    u64 out = 0;
    for (u32 i = 0; i < 4u; ++i) out |= (u64)((w_lo >> (24u - 8u * i)) & 0xffu) << (8u * i);
    for (u32 i = 0; i < 4u; ++i) out |= (u64)((w_hi >> (24u - 8u * i)) & 0xffu) << (8u * (i + 4u));
    return out;
}

PB_DEV u32 sub_word(const u8* sbox, u32 t) {
    return ((u32)sbox[t >> 24] << 24) | ((u32)sbox[(t >> 16) & 0xffu] << 16) |
           ((u32)sbox[(t >> 8) & 0xffu] << 8) | (u32)sbox[t & 0xffu];
}

PB_DEV void aes128_expand(const u8* sbox, u64 key_lo, u64 key_hi, u32* rk) {
    rk[0] = be_word(key_lo, 0);
    rk[1] = be_word(key_lo, 4);
    rk[2] = be_word(key_hi, 0);
    rk[3] = be_word(key_hi, 4);
    u32 rcon = 0x01u;
    for (u32 i = 4; i < 44u; ++i) {
        u32 t = rk[i - 1];
        if (i % 4u == 0) {
            t = sub_word(sbox, (t << 8) | (t >> 24)) ^ (rcon << 24);
            rcon = (rcon << 1) ^ ((rcon & 0x80u) ? 0x11bu : 0u);
        }
        rk[i] = rk[i - 4] ^ t;
    }
}

// Encrypts the 128-bit counter (ctr, 0) and returns the block as (lo, hi).
PB_DEV void aes128_ctr_block(const u8* sbox, const u32* te0, const u32* rk, u64 ctr, u64* lo,
                             u64* hi) {
    u32 s0 = be_word(ctr, 0) ^ rk[0];
    u32 s1 = be_word(ctr, 4) ^ rk[1];
    u32 s2 = rk[2];  // the counter's high half is zero
    u32 s3 = rk[3];
    for (u32 r = 1; r < 10u; ++r) {
        const u32* k = rk + 4u * r;
        u32 t0 = te0[s0 >> 24] ^ rotr32(te0[(s1 >> 16) & 0xffu], 8) ^
                 rotr32(te0[(s2 >> 8) & 0xffu], 16) ^ rotr32(te0[s3 & 0xffu], 24) ^ k[0];
        u32 t1 = te0[s1 >> 24] ^ rotr32(te0[(s2 >> 16) & 0xffu], 8) ^
                 rotr32(te0[(s3 >> 8) & 0xffu], 16) ^ rotr32(te0[s0 & 0xffu], 24) ^ k[1];
        u32 t2 = te0[s2 >> 24] ^ rotr32(te0[(s3 >> 16) & 0xffu], 8) ^
                 rotr32(te0[(s0 >> 8) & 0xffu], 16) ^ rotr32(te0[s1 & 0xffu], 24) ^ k[2];
        u32 t3 = te0[s3 >> 24] ^ rotr32(te0[(s0 >> 16) & 0xffu], 8) ^
                 rotr32(te0[(s1 >> 8) & 0xffu], 16) ^ rotr32(te0[s2 & 0xffu], 24) ^ k[3];
        s0 = t0;
        s1 = t1;
        s2 = t2;
        s3 = t3;
    }
    const u32* k = rk + 40;
    u32 o0 = (((u32)sbox[s0 >> 24] << 24) | ((u32)sbox[(s1 >> 16) & 0xffu] << 16) |
              ((u32)sbox[(s2 >> 8) & 0xffu] << 8) | (u32)sbox[s3 & 0xffu]) ^ k[0];
    u32 o1 = (((u32)sbox[s1 >> 24] << 24) | ((u32)sbox[(s2 >> 16) & 0xffu] << 16) |
              ((u32)sbox[(s3 >> 8) & 0xffu] << 8) | (u32)sbox[s0 & 0xffu]) ^ k[1];
    u32 o2 = (((u32)sbox[s2 >> 24] << 24) | ((u32)sbox[(s3 >> 16) & 0xffu] << 16) |
              ((u32)sbox[(s0 >> 8) & 0xffu] << 8) | (u32)sbox[s1 & 0xffu]) ^ k[2];
    u32 o3 = (((u32)sbox[s3 >> 24] << 24) | ((u32)sbox[(s0 >> 16) & 0xffu] << 16) |
              ((u32)sbox[(s1 >> 8) & 0xffu] << 8) | (u32)sbox[s2 & 0xffu]) ^ k[3];
    *lo = le_pair(o0, o1);
    *hi = le_pair(o2, o3);
}

PB_DEV u32 xtime(u32 b) { return ((b << 1) ^ ((b & 0x80u) ? 0x1bu : 0u)) & 0xffu; }

// Expands the masks of `polys` seeded ciphertexts (seed i at seeds[2i],
// seeds[2i+1]) and writes their residues times R^-1, modulo each of the three
// primes: out[(i * 3 + k) * N + j]. One block per polynomial.
PB_KERNEL void pb_mask_residues(const u64* seeds, const u64* primes, u64* out) {
    __shared__ u8 sbox[256];
    __shared__ u32 te0[256];
    __shared__ u32 rk[44];
    for (u32 x = threadIdx.x; x < 256u; x += blockDim.x) {
        u32 s = PB_SBOX[x];
        sbox[x] = (u8)s;
        te0[x] = (xtime(s) << 24) | (s << 16) | (s << 8) | (xtime(s) ^ s);
    }
    __syncthreads();
    u64 poly = blockIdx.x;
    if (threadIdx.x == 0) aes128_expand(sbox, seeds[2 * poly], seeds[2 * poly + 1], rk);
    __syncthreads();
    u64 p[3], pinv[3];
    for (u32 k = 0; k < 3u; ++k) {
        p[k] = primes[k * PB_PRIME_WORDS + PB_P];
        pinv[k] = primes[k * PB_PRIME_WORDS + PB_PINV];
    }
    u64* dst = out + poly * 3ull * PB_N;
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) {
        u64 lo, hi;
        aes128_ctr_block(sbox, te0, rk, (u64)j, &lo, &hi);
        for (u32 k = 0; k < 3u; ++k) dst[k * PB_N + j] = reduce_centred(lo, hi, p[k], pinv[k]);
    }
}

// ---------------------------------------------------------------------------
// ChaCha20 (rand_chacha's ChaCha20Rng: 64-bit block counter, stream 0): the
// re-randomisation stream of one household, PB_STREAM_BLOCKS blocks of 64
// bytes from a 32-byte seed. Byte layout (Rerandomizer::from_seed):
//   [0, 1024)         r, one bit per coefficient (LSB first)
//   [1024, 9216)      e1, one TUniform(3) byte per coefficient
//   [9216, 9218)      e2
//   [9220, 9236)      flood 0 (the byte stream restarts at a word boundary)
//   [9236, 9252)      flood 1
// ---------------------------------------------------------------------------
#define PB_STREAM_BLOCKS 145u
#define PB_STREAM_WORDS (PB_STREAM_BLOCKS * 8u)  // u64 words per household
#define PB_E1_OFFSET 1024u
#define PB_E2_OFFSET 9216u
#define PB_FLOOD_OFFSET 9220u

PB_DEV u32 rotl32(u32 x, u32 r) { return (x << r) | (x >> (32u - r)); }

#define PB_QR(a, b, c, d)        \
    a += b;                      \
    d = rotl32(d ^ a, 16);       \
    c += d;                      \
    b = rotl32(b ^ c, 12);       \
    a += b;                      \
    d = rotl32(d ^ a, 8);        \
    c += d;                      \
    b = rotl32(b ^ c, 7);

// seeds: 4 u64 per household (the 32 seed bytes, little-endian);
// out: PB_STREAM_WORDS u64 per household. One thread per ChaCha block.
PB_KERNEL void pb_chacha_streams(const u64* seeds, u32 households, u64* out) {
    u64 gid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (u64)households * PB_STREAM_BLOCKS) return;
    u64 h = gid / PB_STREAM_BLOCKS;
    u32 block = (u32)(gid % PB_STREAM_BLOCKS);
    u32 in[16];
    in[0] = 0x61707865u;
    in[1] = 0x3320646eu;
    in[2] = 0x79622d32u;
    in[3] = 0x6b206574u;
    for (u32 i = 0; i < 4u; ++i) {
        u64 s = seeds[4 * h + i];
        in[4 + 2 * i] = (u32)s;
        in[5 + 2 * i] = (u32)(s >> 32);
    }
    in[12] = block;
    in[13] = 0;
    in[14] = 0;
    in[15] = 0;
    u32 x[16];
    for (u32 i = 0; i < 16u; ++i) x[i] = in[i];
    for (u32 round = 0; round < 10u; ++round) {
        PB_QR(x[0], x[4], x[8], x[12]);
        PB_QR(x[1], x[5], x[9], x[13]);
        PB_QR(x[2], x[6], x[10], x[14]);
        PB_QR(x[3], x[7], x[11], x[15]);
        PB_QR(x[0], x[5], x[10], x[15]);
        PB_QR(x[1], x[6], x[11], x[12]);
        PB_QR(x[2], x[7], x[8], x[13]);
        PB_QR(x[3], x[4], x[9], x[14]);
    }
    u64* dst = out + h * PB_STREAM_WORDS + (u64)block * 8u;
    for (u32 i = 0; i < 8u; ++i) {
        u32 lo = x[2 * i] + in[2 * i];
        u32 hi = x[2 * i + 1] + in[2 * i + 1];
        dst[i] = (u64)lo | ((u64)hi << 32);
    }
}

PB_DEV u32 stream_byte(const u64* stream, u32 byte) {
    return (u32)(stream[byte >> 3] >> (8u * (byte & 7u))) & 0xffu;
}

PB_DEV long long tuniform3(u32 byte) {
    long long u = (long long)(byte & 31u);
    return (u >> 1) + (u & 1) - 8;
}

// The binary polynomial r of each household, replicated per prime:
// out[(h * 3 + k) * N + j] = r_j. One block per household.
PB_KERNEL void pb_rerandomizer_r(const u64* streams, u64* out) {
    u64 h = blockIdx.x;
    const u64* stream = streams + h * PB_STREAM_WORDS;
    u64* dst = out + h * 3ull * PB_N;
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) {
        u64 bit = (stream[j >> 6] >> (j & 63u)) & 1ull;
        dst[j] = bit;
        dst[PB_N + j] = bit;
        dst[2 * PB_N + j] = bit;
    }
}

// Small signed polynomials (the cycle's weights, i64 two's complement) to
// residues: out[(c * 3 + k) * N + j] = w_c[j] mod p_k. One block per
// polynomial.
PB_KERNEL void pb_small_residues(const u64* polys, const u64* primes, u64* out) {
    u64 c = blockIdx.x;
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) {
        long long w = (long long)polys[c * PB_N + j];
        for (u32 k = 0; k < 3u; ++k)
            out[(c * 3 + k) * PB_N + j] = reduce_small(w, primes[k * PB_PRIME_WORDS + PB_P]);
    }
}

// ---------------------------------------------------------------------------
// NTT. Polynomial b of a launch lives at data + (b / 3) * stride + (b % 3) * N
// and is transformed modulo prime b % 3. One block per polynomial, the
// polynomial in dynamic shared memory (64 KiB).
// twiddles: 3 tables of N Montgomery-form powers, bit-reversed order.
// ---------------------------------------------------------------------------
PB_KERNEL void pb_ntt_forward(u64* data, u64 stride, const u64* primes, const u64* twiddles) {
    PB_DYNAMIC_SHARED(u64, a);
    u32 k = blockIdx.x % 3u;
    u64* poly = data + (u64)(blockIdx.x / 3u) * stride + (u64)k * PB_N;
    const u64* psi = twiddles + (u64)k * PB_N;
    u64 p = primes[k * PB_PRIME_WORDS + PB_P];
    u64 pinv = primes[k * PB_PRIME_WORDS + PB_PINV];
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) a[j] = poly[j];
    __syncthreads();
    u32 t = PB_N;
    for (u32 m = 1; m < PB_N; m <<= 1) {
        t >>= 1;
        for (u32 b = threadIdx.x; b < PB_N / 2u; b += blockDim.x) {
            u32 i = b / t;
            u32 j = 2u * i * t + (b % t);
            u64 s = psi[m + i];
            u64 u = a[j];
            u64 v = mont(a[j + t], s, p, pinv);
            a[j] = add_mod(u, v, p);
            a[j + t] = sub_mod(u, v, p);
        }
        __syncthreads();
    }
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) poly[j] = a[j];
}

// Inverse transform without the factor N^-1 (folded into the weights).
// inv_twiddles: Montgomery-form powers of psi^-1, bit-reversed order.
PB_KERNEL void pb_ntt_inverse(u64* data, u64 stride, const u64* primes,
                              const u64* inv_twiddles) {
    PB_DYNAMIC_SHARED(u64, a);
    u32 k = blockIdx.x % 3u;
    u64* poly = data + (u64)(blockIdx.x / 3u) * stride + (u64)k * PB_N;
    const u64* psi = inv_twiddles + (u64)k * PB_N;
    u64 p = primes[k * PB_PRIME_WORDS + PB_P];
    u64 pinv = primes[k * PB_PRIME_WORDS + PB_PINV];
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) a[j] = poly[j];
    __syncthreads();
    u32 t = 1;
    for (u32 m = PB_N; m > 1u; m >>= 1) {
        u32 h = m >> 1;
        for (u32 b = threadIdx.x; b < PB_N / 2u; b += blockDim.x) {
            u32 i = b / t;
            u32 j = 2u * i * t + (b % t);
            u64 s = psi[h + i];
            u64 u = a[j];
            u64 v = a[j + t];
            a[j] = add_mod(u, v, p);
            a[j + t] = mont(sub_mod(u, v, p), s, p, pinv);
        }
        t <<= 1;
        __syncthreads();
    }
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) poly[j] = a[j];
}

// In-place mont(x, PB_SCALE) over `polys` residue polynomials laid out
// [poly][prime][N]: turns NTT(w) into NTT(w) N^-1 R^2. Grid-stride loop.
PB_KERNEL void pb_scale(u64* data, u32 polys, const u64* primes) {
    u64 total = (u64)polys * 3ull * PB_N;
    for (u64 g = (u64)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (u64)gridDim.x * blockDim.x) {
        u32 k = (u32)((g / PB_N) % 3ull);
        const u64* c = primes + k * PB_PRIME_WORDS;
        data[g] = mont(data[g], c[PB_SCALE], c[PB_P], c[PB_PINV]);
    }
}

// Point-wise products, accumulated per household into its chunk-0 slot:
//   acc = sum_c mont(A_c, W_c) + mont(mont(A_pk, R), SCALE)
// masks: per household (chunks + 1) residue polynomials (chunk masks, then
// the public key's mask), each 3 x N; weights: chunks x 3 x N; r: 3 x N per
// household. Grid-stride over households x 3 x N.
PB_KERNEL void pb_pointwise(u64* masks, const u64* r, const u64* weights, u32 households,
                            u32 chunks, const u64* primes) {
    u64 per = 3ull * PB_N;
    u64 total = (u64)households * per;
    for (u64 g = (u64)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (u64)gridDim.x * blockDim.x) {
        u64 h = g / per;
        u64 e = g % per;  // prime * N + coefficient
        u32 k = (u32)(e / PB_N);
        const u64* c = primes + k * PB_PRIME_WORDS;
        u64 p = c[PB_P], pinv = c[PB_PINV];
        u64* base = masks + h * (chunks + 1ull) * per;
        u64 acc = 0;
        for (u32 ch = 0; ch < chunks; ++ch)
            acc = add_mod(acc, mont(base[ch * per + e], weights[ch * per + e], p, pinv), p);
        u64 pk = mont(mont(base[chunks * per + e], r[h * per + e], p, pinv), c[PB_SCALE], p, pinv);
        base[e] = add_mod(acc, pk, p);
    }
}

// ---------------------------------------------------------------------------
// CRT (Garner) back to u128, plus the mask noise e1. acc: household h's
// residues at acc + h * stride (3 x N); out: N u128 (2 u64) per household.
// crt: p0, p1, p2, inv(p0) mod p1 (Montgomery form), p0 mod p2 (Montgomery
// form), inv(p0 p1) mod p2 (Montgomery form), p0 p1 (lo, hi),
// p0 p1 p2 mod 2^128 (lo, hi), pinv1, pinv2, p2 / 2.
// ---------------------------------------------------------------------------
#define PB_CRT_WORDS 13u

PB_KERNEL void pb_crt_mask(const u64* acc, u64 stride, const u64* streams, u32 households,
                           const u64* crt, u64* out) {
    u64 total = (u64)households * PB_N;
    u64 p0 = crt[0], p1 = crt[1], p2 = crt[2];
    u64 inv01 = crt[3], p0_mod_p2 = crt[4], inv012 = crt[5];
    u64 c01_lo = crt[6], c01_hi = crt[7], prod_lo = crt[8], prod_hi = crt[9];
    u64 pinv1 = crt[10], pinv2 = crt[11], half_p2 = crt[12];
    for (u64 g = (u64)blockIdx.x * blockDim.x + threadIdx.x; g < total;
         g += (u64)gridDim.x * blockDim.x) {
        u64 h = g / PB_N;
        u32 j = (u32)(g % PB_N);
        const u64* res = acc + h * stride;
        u64 v0 = res[j];
        u64 v0_1 = v0 >= p1 ? v0 - p1 : v0;
        u64 v1 = mont(sub_mod(res[PB_N + j], v0_1, p1), inv01, p1, pinv1);
        u64 v0_2 = v0 >= p2 ? v0 - p2 : v0;
        u64 t = sub_mod(res[2 * PB_N + j], v0_2, p2);
        u64 v1_2 = v1 >= p2 ? v1 - p2 : v1;
        t = sub_mod(t, mont(v1_2, p0_mod_p2, p2, pinv2), p2);
        u64 v2 = mont(t, inv012, p2, pinv2);
        // x = v0 + v1 p0 + v2 p0p1 (mod 2^128)
        u64 lo = v0, hi = 0;
        u64 m_lo = v1 * p0, m_hi = PB_MULHI(v1, p0);
        lo += m_lo;
        hi += m_hi + (lo < m_lo ? 1ull : 0ull);
        u64 n_lo = v2 * c01_lo;
        u64 n_hi = PB_MULHI(v2, c01_lo) + v2 * c01_hi;
        lo += n_lo;
        hi += n_hi + (lo < n_lo ? 1ull : 0ull);
        if (v2 > half_p2) {
            u64 borrow = lo < prod_lo ? 1ull : 0ull;
            lo -= prod_lo;
            hi -= prod_hi + borrow;
        }
        // + e1_j, sign-extended
        long long e = tuniform3(stream_byte(streams + h * PB_STREAM_WORDS, PB_E1_OFFSET + j));
        u64 e_lo = (u64)e, e_hi = e < 0 ? ~0ull : 0ull;
        lo += e_lo;
        hi += e_hi + (lo < e_lo ? 1ull : 0ull);
        out[2 * g] = lo;
        out[2 * g + 1] = hi;
    }
}

// ---------------------------------------------------------------------------
// The two body coefficients (0 and `reward_coeff`) of
//   sum_c B_c W_c + pk_b r + e2 + flood.
// bodies: per household (chunks + 1) u128 polynomials (chunk bodies, then the
// public key's body); weights: chunks x N signed i64; out: 2 u128 per
// household. One block per household; partial sums meet in shared memory.
// ---------------------------------------------------------------------------
PB_DEV void add128(u64* lo, u64* hi, u64 b_lo, u64 b_hi) {
    *lo += b_lo;
    *hi += b_hi + (*lo < b_lo ? 1ull : 0ull);
}

// (lo, hi) += x * w for a u128 x and a signed 64-bit w, modulo 2^128.
PB_DEV void mac128(u64* lo, u64* hi, u64 x_lo, u64 x_hi, long long w) {
    u64 w_lo = (u64)w, w_hi = w < 0 ? ~0ull : 0ull;
    u64 p_lo = x_lo * w_lo;
    u64 p_hi = PB_MULHI(x_lo, w_lo) + x_hi * w_lo + x_lo * w_hi;
    add128(lo, hi, p_lo, p_hi);
}

PB_KERNEL void pb_bodies(const u64* bodies, const u64* weights, const u64* streams, u32 chunks,
                         u32 reward_coeff, u64* out) {
    PB_DYNAMIC_SHARED(u64, part);  // 4 * blockDim.x words
    u64 h = blockIdx.x;
    const u64* hb = bodies + h * (chunks + 1ull) * 2ull * PB_N;
    const u64* stream = streams + h * PB_STREAM_WORDS;
    u64 acc[4] = {0, 0, 0, 0};  // coefficient 0 (lo, hi), reward (lo, hi)
    u32 coeff[2] = {0u, reward_coeff};
    for (u32 j = threadIdx.x; j < PB_N; j += blockDim.x) {
        for (u32 q = 0; q < 2u; ++q) {
            u32 kq = coeff[q];
            // (B W)_k = sum_j B_j W_{k - j}, negated where k - j wraps.
            u32 idx = j <= kq ? kq - j : PB_N + kq - j;
            int wrap = j > kq;
            for (u32 c = 0; c < chunks; ++c) {
                long long w = (long long)weights[(u64)c * PB_N + idx];
                if (w != 0) {
                    const u64* b = hb + (u64)c * 2ull * PB_N + 2ull * j;
                    mac128(&acc[2 * q], &acc[2 * q + 1], b[0], b[1], wrap ? -w : w);
                }
            }
            // (pk_b r)_k = sum_j pk_b[k - j] r_j, negated where k - j wraps.
            u64 bit = (stream[j >> 6] >> (j & 63u)) & 1ull;
            if (bit) {
                const u64* b = hb + (u64)chunks * 2ull * PB_N + 2ull * idx;
                u64 lo = b[0], hi = b[1];
                if (wrap) {
                    lo = ~lo + 1ull;
                    hi = ~hi + (lo == 0 ? 1ull : 0ull);
                }
                add128(&acc[2 * q], &acc[2 * q + 1], lo, hi);
            }
        }
    }
    for (u32 i = 0; i < 4u; ++i) part[i * blockDim.x + threadIdx.x] = acc[i];
    __syncthreads();
    for (u32 half = blockDim.x / 2u; half > 0u; half >>= 1) {
        if (threadIdx.x < half) {
            for (u32 q = 0; q < 2u; ++q) {
                u64 lo = part[(2 * q) * blockDim.x + threadIdx.x];
                u64 hi = part[(2 * q + 1) * blockDim.x + threadIdx.x];
                add128(&lo, &hi, part[(2 * q) * blockDim.x + threadIdx.x + half],
                       part[(2 * q + 1) * blockDim.x + threadIdx.x + half]);
                part[(2 * q) * blockDim.x + threadIdx.x] = lo;
                part[(2 * q + 1) * blockDim.x + threadIdx.x] = hi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        for (u32 q = 0; q < 2u; ++q) {
            u64 lo = part[(2 * q) * blockDim.x];
            u64 hi = part[(2 * q + 1) * blockDim.x];
            long long e2 = tuniform3(stream_byte(stream, PB_E2_OFFSET + q));
            add128(&lo, &hi, (u64)e2, e2 < 0 ? ~0ull : 0ull);
            // flood: 81 bits of 16 stream bytes, minus 2^80
            u32 off = PB_FLOOD_OFFSET + 16u * q;
            u64 f_lo = 0, f_hi = 0;
            for (u32 i = 0; i < 8u; ++i) {
                f_lo |= (u64)stream_byte(stream, off + i) << (8u * i);
                f_hi |= (u64)stream_byte(stream, off + 8u + i) << (8u * i);
            }
            f_hi &= (1ull << 17) - 1ull;
            f_hi -= 1ull << 16;
            add128(&lo, &hi, f_lo, f_hi);
            out[4 * h + 2 * q] = lo;
            out[4 * h + 2 * q + 1] = hi;
        }
    }
}

// ---------------------------------------------------------------------------
// PRZS aggregation: out[j] = sum_m vectors[m * len + j] modulo 2^64.
// ---------------------------------------------------------------------------
PB_KERNEL void pb_sum_columns(const u64* vectors, u32 members, u32 len, u64* out) {
    for (u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x; j < len;
         j += (u64)gridDim.x * blockDim.x) {
        u64 s = 0;
        for (u32 m = 0; m < members; ++m) s += vectors[(u64)m * len + j];
        out[j] = s;
    }
}
