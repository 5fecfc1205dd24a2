//! Keys, seeded GLWE encryption (TFHE-rs) and decryption of the two totals.

use tfhe::core_crypto::commons::math::random::CompressionSeed;
use tfhe::core_crypto::prelude::*;
use thiserror::Error;

use crate::ciphertext::{CompactPublicKey, HiddenTotals, SeededGlwe, glwe_buffer, native};
use crate::layout::REWARD_COEFF;
use crate::noise::tuniform3_vec;
use crate::ntt::{NttPoly, plan};
use crate::params::{
    DELTA_LOG, FLOOD_LOG, MAX_NOISE, NOISE_BOUND_LOG2, POLYNOMIAL_SIZE, RERANDOMISATION_NOISE,
};

fn tuniform() -> DynamicDistribution<u128> {
    DynamicDistribution::new_t_uniform(NOISE_BOUND_LOG2)
}

/// Why a ciphertext could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecryptError {
    /// The ciphertext has the wrong size.
    #[error("ciphertext mask has {found} coefficients, expected {expected}")]
    Size {
        /// Expected size.
        expected: usize,
        /// Size found.
        found: usize,
    },
    /// The decrypted noise is larger than any honest evaluation produces:
    /// the ciphertext was altered, or it is for another key.
    #[error("decryption noise out of range: ciphertext altered or not for this key")]
    Noise,
}

/// A household's binary GLWE secret key (`k = 1`, `N = 8192`), with its
/// NTT form cached for encryption.
///
/// Not `Clone` (share it behind an `Arc` where several holders need it):
/// every copy is one more place the key lives in memory. Its bits and its
/// NTT form are overwritten with zeros when it is dropped, and decryption
/// does not branch on its bits.
pub struct SecretKey(GlweSecretKeyOwned<u128>, NttPoly);

impl Drop for SecretKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.as_mut().zeroize();
        self.1.zeroize();
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Draws a fresh binary key.
    pub fn generate(seeder: &mut dyn Seeder) -> SecretKey {
        let mut generator = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        SecretKey::from_tfhe(allocate_and_generate_new_binary_glwe_secret_key(
            GlweDimension(1),
            PolynomialSize(POLYNOMIAL_SIZE),
            &mut generator,
        ))
    }

    fn from_tfhe(key: GlweSecretKeyOwned<u128>) -> SecretKey {
        let ntt = plan();
        let bits =
            zeroize::Zeroizing::new(key.as_ref().iter().map(|&b| b as i64).collect::<Vec<i64>>());
        let mut transformed = NttPoly::zero(POLYNOMIAL_SIZE);
        ntt.forward_i64_normalized(&bits, &mut transformed);
        SecretKey(key, transformed)
    }

    /// The key as `N` bits (1 KiB), for its owner's storage.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(vec![0u8; POLYNOMIAL_SIZE / 8]);
        for (i, &b) in self.0.as_ref().iter().enumerate() {
            out[i / 8] |= ((b & 1) as u8) << (i % 8);
        }
        out
    }

    /// Rebuilds a key from [`SecretKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<SecretKey> {
        if bytes.len() != POLYNOMIAL_SIZE / 8 {
            return None;
        }
        let bits: Vec<u128> = (0..POLYNOMIAL_SIZE)
            .map(|i| ((bytes[i / 8] >> (i % 8)) & 1) as u128)
            .collect();
        // `from_container` keeps this vector as the key (zeroized on drop).
        Some(SecretKey::from_tfhe(GlweSecretKey::from_container(
            bits,
            PolynomialSize(POLYNOMIAL_SIZE),
        )))
    }

    /// Encrypts `Delta * m` for a plaintext polynomial `m` of at most `N`
    /// signed coefficients (the rest are zero).
    ///
    /// Same ciphertext distribution as TFHE-rs `encrypt_seeded_glwe_ciphertext`
    /// (mask from the seed's AES-CTR stream, TUniform(3) noise), with the
    /// product `A * S` computed by the exact NTT instead of TFHE-rs's
    /// Karatsuba (0.5 ms instead of 13 ms). The noise comes from ChaCha20
    /// keyed by 256 bits of the seeder.
    pub fn encrypt(&self, message: &[i64], seeder: &mut dyn Seeder) -> SeededGlwe {
        assert!(
            message.len() <= POLYNOMIAL_SIZE,
            "message longer than the polynomial"
        );
        let seed = seeder.seed().0;
        let mut noise_seed = [0u8; 32];
        noise_seed[..16].copy_from_slice(&seeder.seed().0.to_le_bytes());
        noise_seed[16..].copy_from_slice(&seeder.seed().0.to_le_bytes());
        let noise = tuniform3_vec(noise_seed, POLYNOMIAL_SIZE);
        let ntt = plan();
        let mut body = vec![0u128; POLYNOMIAL_SIZE];
        let mut a = NttPoly::zero(POLYNOMIAL_SIZE);
        ntt.forward_mask(seed, &mut a);
        let mut acc = NttPoly::zero(POLYNOMIAL_SIZE);
        ntt.mul_accumulate(&mut acc, &a, &self.1);
        ntt.inverse_u128(&mut acc, &mut body);
        for (i, b) in body.iter_mut().enumerate() {
            let m = message.get(i).copied().unwrap_or(0) as i128 as u128;
            *b = b
                .wrapping_add(m << DELTA_LOG)
                .wrapping_add(noise[i] as i128 as u128);
        }
        SeededGlwe { seed, body }
    }

    /// Encryption with TFHE-rs's own `encrypt_seeded_glwe_ciphertext`
    /// (tests cross-check [`SecretKey::encrypt`] against it).
    pub fn encrypt_tfhe(&self, message: &[i64], seeder: &mut dyn Seeder) -> SeededGlwe {
        assert!(
            message.len() <= POLYNOMIAL_SIZE,
            "message longer than the polynomial"
        );
        let mut encoded = vec![0u128; POLYNOMIAL_SIZE];
        for (e, &m) in encoded.iter_mut().zip(message) {
            *e = (m as i128 as u128) << DELTA_LOG;
        }
        let seed = seeder.seed();
        let mut ct = SeededGlweCiphertext::new(
            0u128,
            GlweSize(2),
            PolynomialSize(POLYNOMIAL_SIZE),
            CompressionSeed::from(seed),
            native(),
        );
        encrypt_seeded_glwe_ciphertext(
            &self.0,
            &mut ct,
            &PlaintextList::from_container(encoded),
            tuniform(),
            seeder,
        );
        SeededGlwe {
            seed: seed.0,
            body: ct.into_container(),
        }
    }

    /// The compact public key of this key.
    pub fn public_key(&self, seeder: &mut dyn Seeder) -> CompactPublicKey {
        CompactPublicKey(self.encrypt(&[], seeder))
    }

    /// Decrypts the two totals (bill at coefficient 0, reward at
    /// coefficient [`REWARD_COEFF`]) of an evaluated ciphertext.
    pub fn decrypt_totals(&self, ct: &HiddenTotals) -> Result<(i128, i128), DecryptError> {
        let [bill, reward] = self.phases(ct)?;
        Ok((decode(bill)?, decode(reward)?))
    }

    /// The two phases `body_k - (mask * S)_k = Delta * t_k + noise_k`, before
    /// rounding (what a household can see; used by the privacy tests).
    pub fn phases(&self, ct: &HiddenTotals) -> Result<[u128; 2], DecryptError> {
        if ct.mask.len() != POLYNOMIAL_SIZE {
            return Err(DecryptError::Size {
                expected: POLYNOMIAL_SIZE,
                found: ct.mask.len(),
            });
        }
        let s = self.0.as_ref();
        Ok([
            ct.body[0].wrapping_sub(secret_product_coefficient(&ct.mask, s, 0)),
            ct.body[1].wrapping_sub(secret_product_coefficient(&ct.mask, s, REWARD_COEFF)),
        ])
    }

    /// Full GLWE decryption with TFHE-rs (tests cross-check our own
    /// arithmetic against it).
    pub fn decrypt_glwe_reference(&self, ct: &SeededGlwe) -> Vec<u128> {
        let mut glwe = glwe_buffer();
        ct.expand_mask_tfhe(&mut glwe);
        let mut out = PlaintextList::new(0u128, PlaintextCount(POLYNOMIAL_SIZE));
        decrypt_glwe_ciphertext(&self.0, &glwe, &mut out);
        out.into_container()
    }

    /// The key coefficients (0 or 1).
    pub fn coefficients(&self) -> &[u128] {
        self.0.as_ref()
    }
}

/// Coefficient `k` of the negacyclic product `a * s` for the binary key
/// `s`, constant-time with respect to `s`: every term is added, each masked
/// by a `subtle` selection on its key bit (no branch, no comparison on key
/// bits, and the optimiser cannot see the bit through the selection).
fn secret_product_coefficient(a: &[u128], s: &[u128], k: usize) -> u128 {
    use subtle::{Choice, ConditionallySelectable};
    let n = a.len();
    debug_assert!(s.len() == n && k < n);
    let term = |x: u128, bit: u128| u128::conditional_select(&0, &x, Choice::from((bit & 1) as u8));
    let mut plus = 0u128;
    for j in 0..=k {
        plus = plus.wrapping_add(term(a[k - j], s[j]));
    }
    let mut minus = 0u128;
    for j in k + 1..n {
        minus = minus.wrapping_add(term(a[n + k - j], s[j]));
    }
    plus.wrapping_sub(minus)
}

/// Rounds `c = Delta * t + noise` to `t`, refusing noise that no honest
/// evaluation produces.
fn decode(c: u128) -> Result<i128, DecryptError> {
    let half = 1u128 << (DELTA_LOG - 1);
    let t = (c.wrapping_add(half) as i128) >> DELTA_LOG;
    let noise = c.wrapping_sub((t as u128) << DELTA_LOG) as i128;
    let limit = (1u128 << FLOOD_LOG) + MAX_NOISE + RERANDOMISATION_NOISE;
    if noise.unsigned_abs() > limit {
        return Err(DecryptError::Noise);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeding::deterministic;

    #[test]
    fn encryption_decrypts_with_tfhe_rs() {
        let mut seeder = deterministic(1);
        let sk = SecretKey::generate(&mut seeder);
        let msg: Vec<i64> = (0..100).map(|i| i * 1000 - 50_000).collect();
        let ct = sk.encrypt(&msg, &mut seeder);
        let pt = sk.decrypt_glwe_reference(&ct);
        for (i, &p) in pt.iter().enumerate() {
            let want = msg.get(i).copied().unwrap_or(0) as i128;
            assert_eq!(decode(p).unwrap(), want, "coefficient {i}");
        }
    }

    #[test]
    fn own_and_tfhe_rs_encryptions_decrypt_alike() {
        let mut seeder = deterministic(3);
        let sk = SecretKey::generate(&mut seeder);
        let msg: Vec<i64> = (0..300).map(|i| (i * 7919) % 100_000 - 50_000).collect();
        for ct in [
            sk.encrypt(&msg, &mut seeder),
            sk.encrypt_tfhe(&msg, &mut seeder),
        ] {
            let pt = sk.decrypt_glwe_reference(&ct);
            for (i, &p) in pt.iter().enumerate() {
                let want = msg.get(i).copied().unwrap_or(0) as i128;
                // noise of a fresh ciphertext is TUniform(3): at most 8
                assert!(
                    (p.wrapping_sub((want as u128) << DELTA_LOG) as i128).abs() <= 8,
                    "coefficient {i}"
                );
            }
        }
    }

    #[test]
    fn decryption_is_the_product_and_the_key_is_not_clone() {
        // Not Clone: this resolves only when `SecretKey: Clone` is false
        // (with Clone, both impls apply and inference fails to compile).
        trait AmbiguousIfClone<A> {
            fn check() {}
        }
        impl<T: ?Sized> AmbiguousIfClone<()> for T {}
        impl<T: ?Sized + Clone> AmbiguousIfClone<u8> for T {}
        <SecretKey as AmbiguousIfClone<_>>::check();

        // The constant-time product agrees with the reference one.
        let sk = SecretKey::generate(&mut deterministic(5));
        let mut x = 0x1234_5678_9abc_def0_u128;
        let a: Vec<u128> = (0..POLYNOMIAL_SIZE)
            .map(|_| {
                x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(1);
                x
            })
            .collect();
        for k in [0, 1, REWARD_COEFF, POLYNOMIAL_SIZE - 1] {
            assert_eq!(
                secret_product_coefficient(&a, sk.coefficients(), k),
                crate::ntt::coefficient_of_product(&a, sk.coefficients(), k)
            );
        }
        let mut ntt = NttPoly::zero(4);
        ntt.residues_mut_for_test()
            .iter_mut()
            .for_each(|r| r[0] = 7);
        zeroize::Zeroize::zeroize(&mut ntt);
        assert!(
            ntt.residues_mut_for_test()
                .iter()
                .all(|r| r.iter().all(|&v| v == 0))
        );
    }

    #[test]
    fn secret_key_bytes_round_trip() {
        let sk = SecretKey::generate(&mut deterministic(2));
        let back = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(back.coefficients(), sk.coefficients());
        assert!(SecretKey::from_bytes(&[0u8; 3]).is_none());
    }

    #[test]
    fn decode_rounds_and_rejects_large_noise() {
        let d = 1u128 << DELTA_LOG;
        assert_eq!(decode(d.wrapping_mul(5).wrapping_add(1 << 80)).unwrap(), 5);
        assert_eq!(
            decode(d.wrapping_mul(-5i128 as u128).wrapping_sub(1 << 80)).unwrap(),
            -5
        );
        assert_eq!(
            decode(d.wrapping_mul(5).wrapping_add(3 << 79)),
            Err(DecryptError::Noise)
        );
    }
}
