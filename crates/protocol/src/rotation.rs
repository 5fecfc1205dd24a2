//! A member's key rotation: the proof that whoever asks for a rotation
//! holds the new key.
//!
//! A rotation travels as [`crate::Request::RotateKey`] in an envelope
//! signed by the member's current (enrolled) key: that signature says the
//! enrolled identity wants the change. The proof inside is a signature by
//! the *new* key over a domain-separated message naming the community, the
//! member, the old node id and the new node id, so that
//!
//! * nobody can move a member onto a key they do not hold (the new key
//!   signs);
//! * a proof made for one member, community or old key cannot be reused
//!   for another (all are signed);
//! * a proof can never be taken for an envelope, a member list or a
//!   SecAgg+ message, which sign other tags.
//!
//! ```
//! use pb_protocol::{NodeKey, rotation_proof, verify_rotation};
//! use pb_units::{CommunityId, MemberId};
//!
//! let community = CommunityId("c".into());
//! let member = MemberId::new("alice").unwrap();
//! let old = NodeKey::from_bytes([1; 32]);
//! let new = NodeKey::from_bytes([2; 32]);
//! let proof = rotation_proof(&new, &community, &member, &old.id());
//! assert!(verify_rotation(&community, &member, &old.id(), &new.id(), &proof));
//! ```

use pb_units::{CommunityId, MemberId};

use crate::{NodeId, NodeKey};

/// Domain-separation tag of the rotation proof.
const ROTATION_TAG: &[u8] = b"private-billing key rotation v1";

/// Length of a rotation proof (an Ed25519 signature).
pub const ROTATION_PROOF_LEN: usize = 64;

/// The message the new key signs: the tag, then the community and the
/// member (each with its length, so that no two pairs encode alike), the
/// old node id and the new one.
fn rotation_message(
    community: &CommunityId,
    member: &MemberId,
    old: &NodeId,
    new: &NodeId,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(ROTATION_TAG.len() + 8 + 64 + 64 + 64);
    m.extend_from_slice(ROTATION_TAG);
    for part in [community.0.as_bytes(), member.as_str().as_bytes()] {
        m.extend_from_slice(&(part.len() as u64).to_le_bytes());
        m.extend_from_slice(part);
    }
    m.extend_from_slice(&old.0);
    m.extend_from_slice(&new.0);
    m
}

/// The proof that the holder of `new_key` accepts to become `member`'s
/// node in `community` in place of `old`.
pub fn rotation_proof(
    new_key: &NodeKey,
    community: &CommunityId,
    member: &MemberId,
    old: &NodeId,
) -> Vec<u8> {
    new_key
        .sign(&rotation_message(community, member, old, &new_key.id()))
        .to_vec()
}

/// Whether `proof` is `new`'s signature over the rotation of `member` in
/// `community` from `old` to `new` (strict verification: no malleable
/// signatures or small-order keys).
pub fn verify_rotation(
    community: &CommunityId,
    member: &MemberId,
    old: &NodeId,
    new: &NodeId,
    proof: &[u8],
) -> bool {
    let Ok(signature) = <[u8; ROTATION_PROOF_LEN]>::try_from(proof) else {
        return false;
    };
    new.verify(&rotation_message(community, member, old, new), &signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (CommunityId, MemberId, NodeKey, NodeKey) {
        (
            CommunityId("c".into()),
            MemberId::new("alice").unwrap(),
            NodeKey::from_bytes([1; 32]),
            NodeKey::from_bytes([2; 32]),
        )
    }

    #[test]
    fn a_proof_by_the_new_key_verifies() {
        let (c, m, old, new) = ids();
        let proof = rotation_proof(&new, &c, &m, &old.id());
        assert_eq!(proof.len(), ROTATION_PROOF_LEN);
        assert!(verify_rotation(&c, &m, &old.id(), &new.id(), &proof));
    }

    /// Attacker: a proof is bound to its community, member, old key and
    /// new key; changing any of them, truncating it or signing with
    /// another key fails.
    #[test]
    fn a_proof_does_not_verify_for_anything_else() {
        let (c, m, old, new) = ids();
        let proof = rotation_proof(&new, &c, &m, &old.id());
        let other = NodeKey::from_bytes([3; 32]);
        let bob = MemberId::new("bob").unwrap();
        let c2 = CommunityId("c2".into());
        assert!(!verify_rotation(&c2, &m, &old.id(), &new.id(), &proof));
        assert!(!verify_rotation(&c, &bob, &old.id(), &new.id(), &proof));
        assert!(!verify_rotation(&c, &m, &other.id(), &new.id(), &proof));
        assert!(!verify_rotation(&c, &m, &old.id(), &other.id(), &proof));
        assert!(!verify_rotation(&c, &m, &old.id(), &new.id(), &proof[..63]));
        let mut flipped = proof.clone();
        flipped[5] ^= 1;
        assert!(!verify_rotation(&c, &m, &old.id(), &new.id(), &flipped));
        // Signed by the old key (the attacker holds only that one): no.
        let by_old = rotation_proof(&old, &c, &m, &old.id());
        assert!(!verify_rotation(&c, &m, &old.id(), &new.id(), &by_old));
        // Signed by another key for the new id: no.
        let forged = other.sign(&rotation_message(&c, &m, &old.id(), &new.id()));
        assert!(!verify_rotation(&c, &m, &old.id(), &new.id(), &forged));
    }

    /// The length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
    #[test]
    fn community_and_member_cannot_trade_bytes() {
        let (_, _, old, new) = ids();
        let a = rotation_message(
            &CommunityId("ab".into()),
            &MemberId::new("c").unwrap(),
            &old.id(),
            &new.id(),
        );
        let b = rotation_message(
            &CommunityId("a".into()),
            &MemberId::new("bc").unwrap(),
            &old.id(),
            &new.id(),
        );
        assert_ne!(a, b);
    }
}
