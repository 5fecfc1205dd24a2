//! TUniform(3) noise from a ChaCha20 stream, shared by encryption and
//! re-randomisation.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// One TUniform(3) sample (an integer in `[-8, 8]`, the ends with half the
/// probability) from the low five bits of a byte.
pub(crate) fn tuniform3(byte: u8) -> i64 {
    let u = (byte & 31) as i64;
    (u >> 1) + (u & 1) - 8
}

/// `len` TUniform(3) samples from a ChaCha20 stream.
pub(crate) fn tuniform3_vec(seed: [u8; 32], len: usize) -> Vec<i64> {
    let mut bytes = vec![0u8; len];
    ChaCha20Rng::from_seed(seed).fill_bytes(&mut bytes);
    bytes.into_iter().map(tuniform3).collect()
}
