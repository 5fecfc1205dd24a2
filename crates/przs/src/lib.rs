//! Pseudo-random zero sharing (PRZS) over `Z_2^64` (design section 4).
//!
//! Every member holds an X25519 [`IdentityKey`]. From the signed member list
//! each member derives one 256-bit secret per peer,
//! `k_ij = HKDF-SHA256(X25519(i, j), info = community | min(i,j) | max(i,j))`,
//! so no seed ever travels. The mask of member `i` for `(cycle, field)` is
//! `sum_{j != i} sign(i, j) * PRG(k_ij, cycle, field)` with `sign = +1` when
//! `i < j` and `-1` otherwise; the PRG is the ChaCha20 keystream with nonce
//! `cycle | field`. Summed over all members the masks cancel exactly, so the
//! billing authority adds the masked vectors mod 2^64 and reads the totals.
//!
//! When a member drops out, the survivors reveal
//! [`PairwiseKeys::dropout_correction`]: only their pairwise masks with the
//! missing members for that cycle and field. Subtracting them from the
//! survivors' sum leaves the survivors' exact total.
//!
//! ```
//! use pb_przs::{IdentityKey, PairwiseKeys, aggregate};
//! use pb_units::{CommunityId, CycleId, MemberId};
//!
//! let community = CommunityId("demo".into());
//! let keys: Vec<(MemberId, IdentityKey)> = (0..3)
//!     .map(|i| (MemberId::new(format!("h{i}")).unwrap(), IdentityKey::from_bytes([i as u8 + 1; 32])))
//!     .collect();
//! let members: Vec<_> = keys.iter().map(|(id, k)| (id.clone(), k.public())).collect();
//! let values = [[5u64, 7], [1, 2], [10, 20]];
//! let masked: Vec<Vec<u64>> = keys.iter().zip(values).map(|((id, k), v)| {
//!     let pk = PairwiseKeys::derive(&community, id, k, &members).unwrap();
//!     let mut v = v.to_vec();
//!     pk.add_mask(CycleId(1), 0, &mut v);
//!     v
//! }).collect();
//! assert_eq!(aggregate(2, masked.iter().map(Vec::as_slice)).unwrap(), vec![16, 29]);
//! ```

#![warn(missing_docs)]

use std::collections::BTreeMap;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use pb_units::{CommunityId, CycleId, MemberId};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Errors of the PRZS layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrzsError {
    /// The member deriving keys is not in the member list.
    #[error("member {0} is not in the member list")]
    NotAMember(MemberId),
    /// The member list names a member twice.
    #[error("member {0} appears twice in the member list")]
    DuplicateMember(MemberId),
    /// A peer's public key is a low-order point: the shared secret would be
    /// known to anyone.
    #[error("public key of member {0} is not a valid X25519 key")]
    WeakPublicKey(MemberId),
    /// Vectors of different lengths were summed.
    #[error("masked vector of length {found} where {expected} was expected")]
    LengthMismatch {
        /// Length every vector must have.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A correction names a member that is not missing or not a peer.
    #[error("member {0} is not a peer of this member")]
    UnknownPeer(MemberId),
    /// The operating system's randomness was unavailable.
    #[error("no randomness available from the operating system")]
    NoEntropy,
}

/// A member's long-term X25519 identity key for PRZS.
#[derive(Clone)]
pub struct IdentityKey(StaticSecret);

impl IdentityKey {
    /// Draws a fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> IdentityKey {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let key = IdentityKey::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// Rebuilds a key from its 32 secret bytes (as stored by its owner).
    pub fn from_bytes(bytes: [u8; 32]) -> IdentityKey {
        IdentityKey(StaticSecret::from(bytes))
    }

    /// The secret bytes, for the owner's own storage.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half, published in the member list.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic(PublicKey::from(&self.0).to_bytes())
    }
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityKey({:02x?}..)", &self.public().0[..4])
    }
}

/// The public X25519 key of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityPublic(pub [u8; 32]);

/// One pairwise secret `k_ij`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct PairKey([u8; 32]);

/// The pairwise PRZS keys of one member, derived once per member list.
#[derive(Clone)]
pub struct PairwiseKeys {
    community: CommunityId,
    me: MemberId,
    peers: BTreeMap<MemberId, PairKey>,
}

impl std::fmt::Debug for PairwiseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairwiseKeys")
            .field("community", &self.community)
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .finish()
    }
}

impl PairwiseKeys {
    /// Derives `k_ij` for every other member of `members` (which must
    /// contain `me`).
    pub fn derive(
        community: &CommunityId,
        me: &MemberId,
        key: &IdentityKey,
        members: &[(MemberId, IdentityPublic)],
    ) -> Result<PairwiseKeys, PrzsError> {
        let mut seen = std::collections::BTreeSet::new();
        for (id, _) in members {
            if !seen.insert(id) {
                return Err(PrzsError::DuplicateMember(id.clone()));
            }
        }
        if !seen.contains(me) {
            return Err(PrzsError::NotAMember(me.clone()));
        }
        let mut peers = BTreeMap::new();
        for (id, public) in members.iter().filter(|(id, _)| id != me) {
            let shared = key.0.diffie_hellman(&PublicKey::from(public.0));
            if !shared.was_contributory() {
                return Err(PrzsError::WeakPublicKey(id.clone()));
            }
            let (lo, hi) = if me < id { (me, id) } else { (id, me) };
            let mut info =
                Vec::with_capacity(community.0.len() + lo.as_str().len() + hi.as_str().len() + 24);
            for part in [
                community.0.as_bytes(),
                lo.as_str().as_bytes(),
                hi.as_str().as_bytes(),
            ] {
                info.extend_from_slice(&(part.len() as u64).to_le_bytes());
                info.extend_from_slice(part);
            }
            let mut okm = [0u8; 32];
            Hkdf::<Sha256>::new(Some(b"private-billing przs v1"), shared.as_bytes())
                .expand(&info, &mut okm)
                .map_err(|_| PrzsError::WeakPublicKey(id.clone()))?;
            peers.insert(id.clone(), PairKey(okm));
        }
        Ok(PairwiseKeys {
            community: community.clone(),
            me: me.clone(),
            peers,
        })
    }

    /// Keys with no peer: every PRZS mask is zero, so `hide` leaves the
    /// aggregate contributions for secure aggregation (`pb-secagg`) to
    /// mask. This is how the network and the local community hide today.
    pub fn alone(community: &CommunityId, me: &MemberId) -> PairwiseKeys {
        PairwiseKeys {
            community: community.clone(),
            me: me.clone(),
            peers: BTreeMap::new(),
        }
    }

    /// The community these keys were derived for.
    pub fn community(&self) -> &CommunityId {
        &self.community
    }

    /// The member these keys belong to.
    pub fn member(&self) -> &MemberId {
        &self.me
    }

    /// Number of peers (members other than this one).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Adds this member's mask for `(cycle, field)` to `values` in place.
    pub fn add_mask(&self, cycle: CycleId, field: u32, values: &mut [u64]) {
        self.apply(self.peers.iter(), cycle, field, values);
    }

    /// This member's pairwise masks with the `missing` members only, for a
    /// cycle and field: what the billing authority subtracts from the
    /// survivors' sum when those members dropped out.
    pub fn dropout_correction(
        &self,
        cycle: CycleId,
        field: u32,
        missing: &[MemberId],
        len: usize,
    ) -> Result<Vec<u64>, PrzsError> {
        let mut out = vec![0u64; len];
        let mut pairs = Vec::with_capacity(missing.len());
        for id in missing {
            let key = self
                .peers
                .get_key_value(id)
                .ok_or_else(|| PrzsError::UnknownPeer(id.clone()))?;
            pairs.push(key);
        }
        self.apply(pairs.into_iter(), cycle, field, &mut out);
        Ok(out)
    }

    fn apply<'a>(
        &self,
        peers: impl Iterator<Item = (&'a MemberId, &'a PairKey)>,
        cycle: CycleId,
        field: u32,
        values: &mut [u64],
    ) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&cycle.0.to_le_bytes());
        nonce[8..].copy_from_slice(&field.to_le_bytes());
        let mut stream = vec![0u8; values.len() * 8];
        for (peer, key) in peers {
            stream.fill(0);
            ChaCha20::new(&key.0.into(), &nonce.into()).apply_keystream(&mut stream);
            let add = self.me < *peer;
            for (v, chunk) in values.iter_mut().zip(stream.chunks_exact(8)) {
                let r = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                *v = if add {
                    v.wrapping_add(r)
                } else {
                    v.wrapping_sub(r)
                };
            }
        }
        stream.zeroize();
    }
}

/// Sums masked vectors of equal length mod 2^64.
pub fn aggregate<'a>(
    len: usize,
    vectors: impl IntoIterator<Item = &'a [u64]>,
) -> Result<Vec<u64>, PrzsError> {
    let mut sum = vec![0u64; len];
    for v in vectors {
        add_assign(&mut sum, v)?;
    }
    Ok(sum)
}

/// `acc += v` element-wise mod 2^64.
pub fn add_assign(acc: &mut [u64], v: &[u64]) -> Result<(), PrzsError> {
    zip_apply(acc, v, u64::wrapping_add)
}

/// `acc -= v` element-wise mod 2^64.
pub fn sub_assign(acc: &mut [u64], v: &[u64]) -> Result<(), PrzsError> {
    zip_apply(acc, v, u64::wrapping_sub)
}

fn zip_apply(acc: &mut [u64], v: &[u64], op: fn(u64, u64) -> u64) -> Result<(), PrzsError> {
    if v.len() != acc.len() {
        return Err(PrzsError::LengthMismatch {
            expected: acc.len(),
            found: v.len(),
        });
    }
    for (a, b) in acc.iter_mut().zip(v) {
        *a = op(*a, *b);
    }
    Ok(())
}

/// Encodes a signed value in `Z_2^64` (two's complement).
pub fn encode(v: i64) -> u64 {
    v as u64
}

/// Reads an unmasked sum as a signed integer.
pub fn decode(v: u64) -> i64 {
    v as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn keys_alone_mask_nothing_and_equal_keys_derived_with_oneself_only() {
        let c = CommunityId("c".into());
        let (me, key) = community(1, 4).remove(0);
        let alone = PairwiseKeys::alone(&c, &me);
        let derived = PairwiseKeys::derive(&c, &me, &key, &[(me.clone(), key.public())]).unwrap();
        assert_eq!(alone.peer_count(), 0);
        assert_eq!((alone.community(), alone.member()), (&c, &me));
        let values: Vec<u64> = (0..8).map(|i| i * 7 + 1).collect();
        let (mut a, mut b) = (values.clone(), values.clone());
        alone.add_mask(CycleId(3), 1, &mut a);
        derived.add_mask(CycleId(3), 1, &mut b);
        assert_eq!(a, values);
        assert_eq!(b, values);
    }

    fn community(n: usize, seed: u64) -> Vec<(MemberId, IdentityKey)> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                (
                    MemberId::new(format!("m{i:03}")).unwrap(),
                    IdentityKey::generate(&mut rng),
                )
            })
            .collect()
    }

    fn all_keys(members: &[(MemberId, IdentityKey)]) -> Vec<PairwiseKeys> {
        let list: Vec<_> = members
            .iter()
            .map(|(id, k)| (id.clone(), k.public()))
            .collect();
        let c = CommunityId("c".into());
        members
            .iter()
            .map(|(id, k)| PairwiseKeys::derive(&c, id, k, &list).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn masks_cancel_exactly(n in 2usize..12, len in 1usize..64, seed in any::<u64>(), cycle in any::<u64>(), field in 0u32..8) {
            let members = community(n, seed);
            let keys = all_keys(&members);
            let values: Vec<Vec<i64>> = (0..n).map(|i| (0..len).map(|t| (i as i64 - 3) * 1000 + t as i64).collect()).collect();
            let masked: Vec<Vec<u64>> = keys.iter().zip(&values).map(|(k, v)| {
                let mut m: Vec<u64> = v.iter().map(|&x| encode(x)).collect();
                k.add_mask(CycleId(cycle), field, &mut m);
                m
            }).collect();
            // A masked vector on its own does not show the value.
            prop_assert_ne!(&masked[0], &values[0].iter().map(|&x| encode(x)).collect::<Vec<_>>());
            let sum = aggregate(len, masked.iter().map(Vec::as_slice)).unwrap();
            for t in 0..len {
                prop_assert_eq!(decode(sum[t]), values.iter().map(|v| v[t]).sum::<i64>());
            }
        }

        #[test]
        fn dropout_correction_recovers_survivor_total(n in 4usize..10, drop in 1usize..3, seed in any::<u64>()) {
            let members = community(n, seed);
            let keys = all_keys(&members);
            let missing: Vec<MemberId> = members[..drop].iter().map(|(id, _)| id.clone()).collect();
            let len = 5;
            let mut sum = vec![0u64; len];
            let mut expected = vec![0i64; len];
            for (i, k) in keys.iter().enumerate().skip(drop) {
                let mut v: Vec<u64> = (0..len).map(|t| encode(i as i64 * 10 - t as i64)).collect();
                for (t, e) in expected.iter_mut().enumerate() {
                    *e += i as i64 * 10 - t as i64;
                }
                k.add_mask(CycleId(9), 2, &mut v);
                add_assign(&mut sum, &v).unwrap();
            }
            for k in keys.iter().skip(drop) {
                let c = k.dropout_correction(CycleId(9), 2, &missing, len).unwrap();
                sub_assign(&mut sum, &c).unwrap();
            }
            prop_assert_eq!(sum.iter().map(|&s| decode(s)).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn pairwise_keys_agree_and_differ_per_pair() {
        let members = community(3, 1);
        let keys = all_keys(&members);
        let (a, b, c) = (&members[0].0, &members[1].0, &members[2].0);
        assert_eq!(keys[0].peers[b].0, keys[1].peers[a].0);
        assert_ne!(keys[0].peers[b].0, keys[0].peers[c].0);
        assert_eq!(keys[0].community(), &CommunityId("c".into()));
    }

    #[test]
    fn bad_member_lists_are_refused() {
        let members = community(3, 2);
        let mut list: Vec<_> = members
            .iter()
            .map(|(id, k)| (id.clone(), k.public()))
            .collect();
        let c = CommunityId("c".into());
        let outsider = MemberId::new("zz").unwrap();
        assert_eq!(
            PairwiseKeys::derive(&c, &outsider, &members[0].1, &list).unwrap_err(),
            PrzsError::NotAMember(outsider)
        );
        list.push(list[0].clone());
        assert!(matches!(
            PairwiseKeys::derive(&c, &members[0].0, &members[0].1, &list),
            Err(PrzsError::DuplicateMember(_))
        ));
        list.pop();
        list[1].1 = IdentityPublic([0u8; 32]);
        assert!(matches!(
            PairwiseKeys::derive(&c, &members[0].0, &members[0].1, &list),
            Err(PrzsError::WeakPublicKey(_))
        ));
    }

    #[test]
    fn length_mismatch_is_an_error_and_leaves_the_sum_alone() {
        let mut acc = vec![1u64, 2];
        assert!(add_assign(&mut acc, &[1]).is_err());
        assert_eq!(acc, vec![1, 2]);
    }

    #[test]
    fn correction_for_a_non_peer_is_refused() {
        let members = community(3, 3);
        let keys = all_keys(&members);
        let me = members[0].0.clone();
        assert!(keys[0].dropout_correction(CycleId(1), 0, &[me], 4).is_err());
    }
}
