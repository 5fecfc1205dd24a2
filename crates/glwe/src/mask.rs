//! Bulk expansion of ciphertext masks from their seeds.
//!
//! TFHE-rs regenerates the mask of a seeded ciphertext with AES-128 in
//! counter mode: key = the 128-bit seed (little-endian bytes), block `i` =
//! the counter `i` (little-endian), one block per `u128` coefficient read
//! little-endian. Its generator hands the stream out byte by byte, which
//! made mask expansion 40 % of the billing authority's time; here the same
//! stream is produced many blocks at a time with AES-NI (RustCrypto `aes`).
//! A test holds the two bit-identical.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

/// Coefficients per AES batch of [`expand_mask_blocks`] (4 KiB).
pub(crate) const BLOCK: usize = 256;

/// Writes the mask of seed `seed` into `out` (one coefficient per block).
pub fn expand_mask(seed: u128, out: &mut [u128]) {
    expand_mask_blocks(seed, out.len(), |offset, block| {
        out[offset..offset + block.len()].copy_from_slice(block);
    });
}

/// Generates the first `len` mask coefficients of seed `seed` in blocks of
/// at most [`BLOCK`], handing each to `sink` with its offset while it is in
/// cache (so that the mask need not be stored).
pub(crate) fn expand_mask_blocks(seed: u128, len: usize, mut sink: impl FnMut(usize, &[u128])) {
    let cipher = Aes128::new(&GenericArray::from(seed.to_le_bytes()));
    let mut blocks = [GenericArray::from([0u8; 16]); BLOCK];
    let mut values = [0u128; BLOCK];
    let mut offset = 0;
    while offset < len {
        let count = BLOCK.min(len - offset);
        for (i, b) in blocks.iter_mut().enumerate().take(count) {
            *b = GenericArray::from(((offset + i) as u128).to_le_bytes());
        }
        cipher.encrypt_blocks(&mut blocks[..count]);
        for (v, b) in values.iter_mut().zip(&blocks[..count]) {
            *v = u128::from_le_bytes((*b).into());
        }
        sink(offset, &values[..count]);
        offset += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeededGlwe;
    use crate::ciphertext::glwe_buffer;
    use crate::params::POLYNOMIAL_SIZE;
    use tfhe::core_crypto::prelude::ContiguousEntityContainer;

    #[test]
    fn matches_tfhe_rs_decompression() {
        for seed in [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        ] {
            let ct = SeededGlwe {
                seed,
                body: vec![0; POLYNOMIAL_SIZE],
            };
            let mut glwe = glwe_buffer();
            ct.expand_mask_tfhe(&mut glwe);
            let want: Vec<u128> = glwe
                .get_mask()
                .as_polynomial_list()
                .iter()
                .next()
                .unwrap()
                .into_container()
                .to_vec();
            let mut got = vec![0u128; POLYNOMIAL_SIZE];
            expand_mask(seed, &mut got);
            assert_eq!(got, want, "seed {seed:#x}");
        }
    }
}
