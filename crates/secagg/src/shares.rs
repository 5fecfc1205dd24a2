//! Shamir shares of a member's mask key and self-mask seed, one pair per
//! neighbour, encrypted to that neighbour so that the edge, which carries
//! them, cannot read them.
//!
//! Sharing uses `vsss-rs` over the ed25519 scalar field (any number of
//! holders). A pair is encrypted with ChaCha20-Poly1305 under
//! `HKDF-SHA256(X25519(share key of sender, share key of holder))`, the
//! session, sender and holder in the key derivation and as associated
//! data: a share cannot be moved to another cycle, sender or holder.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use pb_units::MemberId;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vsss_rs::curve25519::WrappedScalar;
use vsss_rs::{DefaultShare, IdentifierPrimeField, ReadableShareSet, Share};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Refusal, Session};

type VShare =
    DefaultShare<IdentifierPrimeField<WrappedScalar>, IdentifierPrimeField<WrappedScalar>>;

/// One Shamir share: the point `(x, y)`, both canonical scalars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SecretShare {
    /// The holder's abscissa (1, 2, ... in holder order).
    pub x: [u8; 32],
    /// The polynomial's value there.
    pub y: [u8; 32],
}

/// Splits `secret` into `holders` shares, any `threshold` of which
/// recover it.
pub(crate) fn split<R: RngCore + CryptoRng>(
    secret: Scalar,
    threshold: usize,
    holders: usize,
    rng: &mut R,
) -> Result<Vec<SecretShare>, Refusal> {
    let value = IdentifierPrimeField(WrappedScalar(secret));
    let shares =
        vsss_rs::shamir::split_secret::<VShare>(threshold, holders, &value, rng).map_err(|_| {
            Refusal::TooFewNeighbours {
                have: holders,
                need: threshold,
            }
        })?;
    Ok(shares
        .iter()
        .map(|s| SecretShare {
            x: s.identifier().0.0.to_bytes(),
            y: s.value().0.0.to_bytes(),
        })
        .collect())
}

/// Recovers a secret from shares (at least the threshold, distinct
/// abscissae); `None` when they are malformed.
pub(crate) fn combine(shares: &[&SecretShare]) -> Option<Scalar> {
    let scalar = |b: &[u8; 32]| Option::<Scalar>::from(Scalar::from_canonical_bytes(*b));
    let mut set: Vec<VShare> = Vec::with_capacity(shares.len());
    for s in shares {
        let (x, y) = (scalar(&s.x)?, scalar(&s.y)?);
        if x == Scalar::ZERO {
            return None;
        }
        set.push(VShare::with_identifier_and_value(
            IdentifierPrimeField(WrappedScalar(x)),
            IdentifierPrimeField(WrappedScalar(y)),
        ));
    }
    set.combine().ok().map(|v| v.0.0)
}

/// Which secret a share or answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Secret {
    /// The self-mask seed: revealed for a survivor.
    SelfSeed,
    /// The mask key: revealed for a member that dropped out.
    MaskKey,
}

/// What a holder receives from a neighbour: one share of each secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePair {
    /// Share of the self-mask seed.
    pub self_seed: SecretShare,
    /// Share of the mask key.
    pub mask_key: SecretShare,
}

/// A share pair encrypted from one member to one neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    /// The sender (whose secrets these are shares of).
    pub from: MemberId,
    /// The holder.
    pub to: MemberId,
    /// ChaCha20-Poly1305 ciphertext of the pair.
    pub ciphertext: Vec<u8>,
}

/// Length of a sealed pair: four scalars and the tag.
pub const SEALED_LEN: usize = 4 * 32 + 16;

fn aead(
    shared: &[u8; 32],
    session: &Session,
    from: &MemberId,
    to: &MemberId,
) -> (ChaCha20Poly1305, Vec<u8>) {
    let mut info = b"pbill/secagg/share/v1".to_vec();
    info.extend_from_slice(&session.bytes());
    for m in [from, to] {
        info.extend_from_slice(&(m.as_str().len() as u64).to_le_bytes());
        info.extend_from_slice(m.as_str().as_bytes());
    }
    let mut key = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, shared).expand(&info, &mut key);
    let cipher = ChaCha20Poly1305::new(&key.into());
    key.zeroize();
    (cipher, info)
}

/// Encrypts `pair` from `from` (its share secret) to `to` (its share key).
pub(crate) fn seal(
    secret: &StaticSecret,
    to_pk: &[u8; 32],
    session: &Session,
    from: &MemberId,
    to: &MemberId,
    pair: &SharePair,
) -> Result<EncryptedShare, Refusal> {
    let shared = secret.diffie_hellman(&PublicKey::from(*to_pk));
    if !shared.was_contributory() {
        return Err(Refusal::WeakKey(to.clone()));
    }
    let (cipher, aad) = aead(shared.as_bytes(), session, from, to);
    let mut plain = Vec::with_capacity(128);
    for s in [&pair.self_seed, &pair.mask_key] {
        plain.extend_from_slice(&s.x);
        plain.extend_from_slice(&s.y);
    }
    // The key is used for this one message: a zero nonce is unique.
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| Refusal::BadShare(from.clone()))?;
    plain.zeroize();
    Ok(EncryptedShare {
        from: from.clone(),
        to: to.clone(),
        ciphertext,
    })
}

/// Decrypts a pair sent to us (`secret`) by the member with `from_pk`.
pub(crate) fn open(
    secret: &StaticSecret,
    from_pk: &[u8; 32],
    session: &Session,
    share: &EncryptedShare,
) -> Result<SharePair, Refusal> {
    let bad = || Refusal::BadShare(share.from.clone());
    if share.ciphertext.len() != SEALED_LEN {
        return Err(bad());
    }
    let shared = secret.diffie_hellman(&PublicKey::from(*from_pk));
    if !shared.was_contributory() {
        return Err(Refusal::WeakKey(share.from.clone()));
    }
    let (cipher, aad) = aead(shared.as_bytes(), session, &share.from, &share.to);
    let mut plain = cipher
        .decrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: &share.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| bad())?;
    let take = |i: usize| -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&plain[i * 32..(i + 1) * 32]);
        out
    };
    let pair = SharePair {
        self_seed: SecretShare {
            x: take(0),
            y: take(1),
        },
        mask_key: SecretShare {
            x: take(2),
            y: take(3),
        },
    };
    plain.zeroize();
    let canonical = |b: &[u8; 32]| bool::from(Scalar::from_canonical_bytes(*b).is_some());
    if ![
        &pair.self_seed.x,
        &pair.self_seed.y,
        &pair.mask_key.x,
        &pair.mask_key.y,
    ]
    .into_iter()
    .all(canonical)
        || pair.self_seed.x != pair.mask_key.x
    {
        return Err(bad());
    }
    Ok(pair)
}

/// One revealed share: about which member, which secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The member whose secret this is a share of.
    pub about: MemberId,
    /// Which secret.
    pub secret: Secret,
    /// The share.
    pub share: SecretShare,
}

/// A member's answers in the reveal round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    /// Who answers.
    pub member: MemberId,
    /// The survivor set the answers follow (its hash).
    pub set: [u8; 32],
    /// One answer per neighbour whose shares the member holds.
    pub answers: Vec<Answer>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn any_threshold_of_shares_recovers_and_fewer_do_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = Scalar::from(123_456_789u64);
        let shares = split(secret, 4, 7, &mut rng).unwrap();
        assert_eq!(shares.len(), 7);
        let pick = |ix: &[usize]| combine(&ix.iter().map(|&i| &shares[i]).collect::<Vec<_>>());
        assert_eq!(pick(&[0, 1, 2, 3]), Some(secret));
        assert_eq!(pick(&[6, 2, 4, 1, 0]), Some(secret));
        assert_ne!(pick(&[0, 1, 2]), Some(secret));
        let mut bad = shares[0].clone();
        bad.x = [0; 32];
        assert_eq!(combine(&[&bad, &shares[1], &shares[2], &shares[3]]), None);
    }

    #[test]
    fn sealed_shares_open_only_for_their_holder_session_and_sender() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let session = Session {
            community: "c".into(),
            cycle: 1,
            roster: [3; 32],
        };
        let (a, b, c) = (
            StaticSecret::random_from_rng(&mut rng),
            StaticSecret::random_from_rng(&mut rng),
            StaticSecret::random_from_rng(&mut rng),
        );
        let pk = |s: &StaticSecret| PublicKey::from(s).to_bytes();
        let (ma, mb) = (MemberId::new("a").unwrap(), MemberId::new("b").unwrap());
        let s = split(Scalar::from(5u64), 2, 3, &mut rng).unwrap();
        let pair = SharePair {
            self_seed: s[0].clone(),
            mask_key: s[0].clone(),
        };
        let sealed = seal(&a, &pk(&b), &session, &ma, &mb, &pair).unwrap();
        assert_eq!(open(&b, &pk(&a), &session, &sealed).unwrap(), pair);
        assert!(open(&c, &pk(&a), &session, &sealed).is_err());
        let other = Session {
            cycle: 2,
            ..session.clone()
        };
        assert!(open(&b, &pk(&a), &other, &sealed).is_err());
        let mut moved = sealed.clone();
        moved.from = MemberId::new("z").unwrap();
        assert!(open(&b, &pk(&a), &session, &moved).is_err());
        let mut cut = sealed;
        cut.ciphertext.pop();
        assert!(open(&b, &pk(&a), &session, &cut).is_err());
        assert!(matches!(
            seal(&a, &[0; 32], &session, &ma, &mb, &pair),
            Err(Refusal::WeakKey(_))
        ));
    }
}

/// Recovers a secret's 32 bytes from shares (as the edge does); `None`
/// when they are malformed. Fewer shares than the threshold give a wrong
/// value, not an error: the edge checks recovered secrets against their
/// commitments.
pub fn recover(shares: &[&SecretShare]) -> Option<[u8; 32]> {
    combine(shares).map(|s| s.to_bytes())
}

/// Lagrange coefficients at 0 for the abscissae `xs` (distinct, non-zero):
/// `lambda_i = prod_{j != i} x_j / (x_j - x_i)`, with one batched inversion.
/// The edge recovers many secrets from the same set of abscissae (every
/// holder answering gives every member the abscissae 1..t), so it computes
/// these once per set and each recovery is then a sum of `t` products,
/// `O(t)` instead of `O(t^2)`. `None` for a repeated or zero abscissa.
pub fn lagrange_at_zero(xs: &[[u8; 32]]) -> Option<Vec<Scalar>> {
    let xs: Vec<Scalar> = xs
        .iter()
        .map(|b| Option::<Scalar>::from(Scalar::from_canonical_bytes(*b)))
        .collect::<Option<_>>()?;
    let mut num = Vec::with_capacity(xs.len());
    let mut den = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        if *xi == Scalar::ZERO {
            return None;
        }
        let mut n = Scalar::ONE;
        let mut d = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                n *= xj;
                d *= xj - xi;
            }
        }
        if d == Scalar::ZERO {
            return None;
        }
        num.push(n);
        den.push(d);
    }
    Scalar::batch_invert(&mut den);
    Some(num.into_iter().zip(den).map(|(n, d)| n * d).collect())
}

/// `sum_i lambda_i y_i`: the secret from shares and their coefficients.
pub fn combine_with(coefficients: &[Scalar], shares: &[&SecretShare]) -> Option<Scalar> {
    let mut acc = Scalar::ZERO;
    for (l, s) in coefficients.iter().zip(shares) {
        let y = Option::<Scalar>::from(Scalar::from_canonical_bytes(s.y))?;
        acc += l * y;
    }
    Some(acc)
}

#[cfg(test)]
mod lagrange_tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Cached coefficients recover what vsss-rs recovers.
        #[test]
        fn cached_coefficients_agree_with_vsss(seed in any::<u64>(), t in 2usize..12, extra in 0usize..6) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let secret = Scalar::from(seed) + Scalar::from(7u64);
            let shares = split(secret, t, t + extra, &mut rng).unwrap();
            let pick: Vec<&SecretShare> = shares.iter().skip(extra).collect();
            let xs: Vec<[u8; 32]> = pick.iter().map(|s| s.x).collect();
            let l = lagrange_at_zero(&xs).unwrap();
            prop_assert_eq!(combine_with(&l, &pick), Some(secret));
            prop_assert_eq!(combine(&pick), Some(secret));
        }
    }

    #[test]
    fn repeated_or_zero_abscissae_are_refused() {
        let one = Scalar::ONE.to_bytes();
        assert!(lagrange_at_zero(&[one, one]).is_none());
        assert!(lagrange_at_zero(&[[0; 32], one]).is_none());
        assert!(lagrange_at_zero(&[[0xff; 32]]).is_none());
    }
}
