//! The ciphertexts that travel: seeded GLWE ciphertexts (a household's
//! upload and its compact public key) and the evaluated totals (its
//! download), with the TFHE-rs definitions they follow.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;

use crate::params::POLYNOMIAL_SIZE;

/// The evaluated ciphertext a household receives: the full mask and the two
/// body coefficients (bill, reward).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenTotals {
    /// Mask polynomial, `N` coefficients.
    pub mask: Vec<u128>,
    /// Body coefficients `0` (bill) and
    /// [`REWARD_COEFF`](crate::layout::REWARD_COEFF) (reward).
    pub body: [u128; 2],
}

/// A seeded GLWE ciphertext: the 128-bit seed from which the mask is
/// regenerated, and the body polynomial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededGlwe {
    /// Seed of the mask (TFHE-rs AES-CTR mask generator).
    pub seed: u128,
    /// Body polynomial, `N` coefficients.
    pub body: Vec<u128>,
}

/// A household's compact public key: a seeded GLWE encryption of zero under
/// its secret key. The billing authority uses it to re-randomise the
/// household's bill ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactPublicKey(pub SeededGlwe);

/// The native modulus `2^128`.
pub(crate) fn native() -> CiphertextModulus<u128> {
    CiphertextModulus::new_native()
}

impl SeededGlwe {
    /// Whether the body has the expected size.
    pub fn is_well_formed(&self) -> bool {
        self.body.len() == POLYNOMIAL_SIZE
    }

    /// Regenerates the mask polynomial from the seed with TFHE-rs (the
    /// definition that [`crate::mask::expand_mask`] reproduces in bulk).
    ///
    /// The body must be well formed (see [`SeededGlwe::is_well_formed`]).
    pub fn expand_mask_tfhe(&self, glwe: &mut GlweCiphertextOwned<u128>) {
        let seeded = SeededGlweCiphertext::from_container(
            self.body.as_slice(),
            GlweSize(2),
            CompressionSeed::from(Seed(self.seed)),
            native(),
        );
        decompress_seeded_glwe_ciphertext::<_, _, _, DefaultRandomGenerator>(glwe, &seeded);
    }
}

/// A scratch GLWE ciphertext for [`SeededGlwe::expand_mask_tfhe`].
pub(crate) fn glwe_buffer() -> GlweCiphertextOwned<u128> {
    GlweCiphertext::new(
        0u128,
        GlweSize(2),
        PolynomialSize(POLYNOMIAL_SIZE),
        native(),
    )
}
