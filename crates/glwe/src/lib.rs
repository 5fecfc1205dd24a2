//! The homomorphic part of private-billing (design section 6).
//!
//! A household packs its per-slot vectors into plaintext polynomials and
//! encrypts them as *seeded* GLWE ciphertexts over `Z_q[X]/(X^N + 1)` with
//! `q = 2^128`, `N = 8192` and a binary key ([`SecretKey::encrypt`], built on
//! TFHE-rs `core_crypto`). The billing authority multiplies every ciphertext
//! by a public *weight polynomial* of the cycle, so that two coefficients of
//! the product hold the household's bill and reward totals
//! ([`layout`]), re-randomises the result with the household's
//! [`CompactPublicKey`] and floods its noise ([`eval`]). The household
//! decrypts only those two coefficients ([`SecretKey::decrypt_totals`]).
//!
//! Products modulo `2^128` are computed exactly by a three-prime NTT and CRT
//! ([`ntt::CrtNtt`], on `tfhe-ntt`), because TFHE-rs offers no `u128`
//! negacyclic product fast enough for the billing authority.
//! [`params`] holds every parameter and the noise budget that justifies it.

#![warn(missing_docs)]

// Modules depend only on those before them in this order: params, layout,
// mask, simd, ntt, noise, ciphertext, then keys and eval (neither of which
// uses the other).
mod ciphertext;
pub mod eval;
mod keys;
pub mod layout;
pub mod mask;
mod noise;
pub mod ntt;
pub mod params;
mod simd;

pub use ciphertext::{CompactPublicKey, HiddenTotals, SeededGlwe};
pub use eval::{EvalScratch, PreparedWeights, Rerandomizer, evaluate};
pub use keys::{DecryptError, SecretKey};
pub use params::BudgetError;

/// Entropy sources for TFHE-rs encryption, re-exported so that callers need
/// no direct dependency on `tfhe`.
pub mod seeding {
    pub use tfhe::core_crypto::commons::generators::DeterministicSeeder;
    pub use tfhe::core_crypto::commons::math::random::Seed;
    pub use tfhe::core_crypto::prelude::{DefaultRandomGenerator, Seeder, new_seeder};

    /// A reproducible seeder, for tests and benchmarks only.
    pub fn deterministic(seed: u128) -> DeterministicSeeder<DefaultRandomGenerator> {
        DeterministicSeeder::<DefaultRandomGenerator>::new(Seed(seed))
    }
}
