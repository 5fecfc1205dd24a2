//! A member's per-cycle secrets and the key bundle it signs.
//!
//! Every cycle a member draws three fresh secrets: an X25519 key to
//! encrypt shares to its neighbours, a mask key (an ed25519 scalar used as
//! an X25519 secret, so that it can be Shamir-shared) from which its
//! pairwise masks come, and a self-mask seed (also a scalar). Nothing
//! revealed for one cycle says anything about another. The bundle of
//! public keys (and a commitment to the self-mask seed) is signed with the
//! member's enrolled Ed25519 identity and binds the community, cycle and
//! roster fingerprint.

use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey};
use pb_units::MemberId;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::roster::Roster;
use crate::{Refusal, Session, hash};

/// A member's secrets for one cycle. Zeroized on drop; never printed.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct CycleSecrets {
    share_key: [u8; 32],
    mask_key: [u8; 32],
    self_seed: [u8; 32],
}

impl std::fmt::Debug for CycleSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CycleSecrets(..)")
    }
}

/// A uniformly random scalar.
fn random_scalar<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    let s = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    s
}

/// The X25519 public key of a mask-key scalar.
pub fn mask_public(scalar_bytes: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*scalar_bytes)).to_bytes()
}

/// The commitment to a self-mask seed published in the bundle.
pub fn seed_commitment(session: &Session, member: &MemberId, seed: &[u8; 32]) -> [u8; 32] {
    hash(
        "pbill/secagg/self-commitment/v1",
        &[&session.bytes(), member.as_str().as_bytes(), seed],
    )
}

impl CycleSecrets {
    /// Draws fresh secrets.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> CycleSecrets {
        let mut share_key = [0u8; 32];
        rng.fill_bytes(&mut share_key);
        CycleSecrets {
            share_key,
            mask_key: random_scalar(rng).to_bytes(),
            self_seed: random_scalar(rng).to_bytes(),
        }
    }

    pub(crate) fn share_secret(&self) -> StaticSecret {
        StaticSecret::from(self.share_key)
    }
    pub(crate) fn mask_secret(&self) -> StaticSecret {
        StaticSecret::from(self.mask_key)
    }
    pub(crate) fn mask_scalar(&self) -> Scalar {
        Scalar::from_bytes_mod_order(self.mask_key)
    }
    pub(crate) fn self_seed(&self) -> &[u8; 32] {
        &self.self_seed
    }
    pub(crate) fn self_scalar(&self) -> Scalar {
        Scalar::from_bytes_mod_order(self.self_seed)
    }

    /// The signed bundle of the public halves.
    pub fn bundle(
        &self,
        session: &Session,
        member: &MemberId,
        identity: &SigningKey,
    ) -> SignedBundle {
        let bundle = KeyBundle {
            session: session.clone(),
            member: member.clone(),
            share_pk: PublicKey::from(&self.share_secret()).to_bytes(),
            mask_pk: mask_public(&self.mask_key),
            self_commitment: seed_commitment(session, member, &self.self_seed),
        };
        bundle.sign(identity)
    }
}

/// A member's public keys for one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundle {
    /// Community, cycle and roster fingerprint.
    pub session: Session,
    /// The member.
    pub member: MemberId,
    /// X25519 key that shares are encrypted to.
    pub share_pk: [u8; 32],
    /// X25519 key of the mask key (pairwise masks).
    pub mask_pk: [u8; 32],
    /// Commitment to the self-mask seed.
    pub self_commitment: [u8; 32],
}

impl KeyBundle {
    /// Signs the bundle with the member's identity.
    pub fn sign(self, identity: &SigningKey) -> SignedBundle {
        let signature = identity.sign(&self.message()).to_bytes().to_vec();
        SignedBundle {
            bundle: self,
            signature,
        }
    }

    fn message(&self) -> Vec<u8> {
        let mut m = b"pbill/secagg/bundle/v1".to_vec();
        m.extend_from_slice(&hash(
            "pbill/secagg/bundle-body/v1",
            &[
                &self.session.bytes(),
                self.member.as_str().as_bytes(),
                &self.share_pk,
                &self.mask_pk,
                &self.self_commitment,
            ],
        ));
        m
    }
}

/// A key bundle signed by its member's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBundle {
    /// The keys.
    pub bundle: KeyBundle,
    /// Ed25519 signature by the member's enrolled identity.
    pub signature: Vec<u8>,
}

/// Whether X25519 with `pk` is contributory (not a low-order point).
pub(crate) fn usable(pk: &[u8; 32]) -> bool {
    let probe = StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&PublicKey::from(*pk))
        .was_contributory()
}

impl SignedBundle {
    /// Checks the bundle against the session and the roster (the edge's
    /// check): the member is listed, the signature is its identity's, the
    /// keys are not low-order points.
    pub fn verify(&self, session: &Session, roster: &Roster) -> Result<(), Refusal> {
        let identity = roster
            .entry(&self.bundle.member)
            .ok_or_else(|| Refusal::NotInRoster(self.bundle.member.clone()))?
            .identity;
        self.verify_with(session, &identity)?;
        let b = &self.bundle;
        if !usable(&b.share_pk) || !usable(&b.mask_pk) {
            return Err(Refusal::WeakKey(b.member.clone()));
        }
        Ok(())
    }

    /// The session and signature check against a known identity (a core
    /// knows its neighbours' identities from the roster). Weak keys are
    /// refused where they are used (`Refusal::WeakKey`).
    pub fn verify_with(&self, session: &Session, identity: &[u8; 32]) -> Result<(), Refusal> {
        let b = &self.bundle;
        if b.session.community != session.community {
            return Err(Refusal::OtherContext("community"));
        }
        if b.session.cycle != session.cycle {
            return Err(Refusal::OtherContext("cycle"));
        }
        if b.session.roster != session.roster {
            return Err(Refusal::OtherContext("member list"));
        }
        crate::roster::verify_with(identity, &b.member, &b.message(), &self.signature)
    }
}
