//! The masks, as ChaCha20 keystreams over `Z_2^64`: the pairwise mask of
//! two neighbours (from X25519 of their mask keys) and a member's self
//! mask (from its self-mask seed). One key per pair and cycle, one nonce
//! per field.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use pb_units::MemberId;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use crate::Session;

/// A 256-bit stream key; zeroized on drop.
pub(crate) struct StreamKey(pub(crate) [u8; 32]);

impl Drop for StreamKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn derive(ikm: &[u8], label: &str, session: &Session, who: &[&MemberId]) -> StreamKey {
    let mut info = label.as_bytes().to_vec();
    info.extend_from_slice(&session.bytes());
    for m in who {
        info.extend_from_slice(&(m.as_str().len() as u64).to_le_bytes());
        info.extend_from_slice(m.as_str().as_bytes());
    }
    let mut key = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(&info, &mut key);
    StreamKey(key)
}

/// The pairwise key of `a` and `b` from one side's mask secret and the
/// other's public key; `None` for a low-order key.
pub(crate) fn pair_key(
    secret: &StaticSecret,
    peer_pk: &[u8; 32],
    session: &Session,
    a: &MemberId,
    b: &MemberId,
) -> Option<StreamKey> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer_pk));
    if !shared.was_contributory() {
        return None;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    Some(derive(
        shared.as_bytes(),
        "pbill/secagg/pair-mask/v1",
        session,
        &[lo, hi],
    ))
}

/// The self-mask key of `member` from its seed.
pub(crate) fn self_key(seed: &[u8; 32], session: &Session, member: &MemberId) -> StreamKey {
    derive(seed, "pbill/secagg/self-mask/v1", session, &[member])
}

/// Adds (`sign = 1`) or subtracts (`sign = -1`) the keystream of `key` for
/// `field` to `values`, wrapping mod 2^64.
pub(crate) fn apply(key: &StreamKey, field: u32, sign: i8, values: &mut [u64]) {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&field.to_le_bytes());
    let mut cipher = ChaCha20::new(&key.0.into(), &nonce.into());
    let mut block = [0u8; 512];
    for chunk in values.chunks_mut(64) {
        let bytes = &mut block[..chunk.len() * 8];
        bytes.fill(0);
        cipher.apply_keystream(bytes);
        for (v, b) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            let m = u64::from_le_bytes(w);
            *v = if sign >= 0 {
                v.wrapping_add(m)
            } else {
                v.wrapping_sub(m)
            };
        }
    }
}

/// `+1` when `me < peer`, else `-1`: the two sides of a pair cancel.
pub(crate) fn pair_sign(me: &MemberId, peer: &MemberId) -> i8 {
    if me < peer { 1 } else { -1 }
}

/// The self mask of `member` for `field`, `len` values long, from its
/// seed (as the edge computes it once the seed is recovered).
pub fn self_mask(
    seed: &[u8; 32],
    session: &Session,
    member: &MemberId,
    field: u32,
    len: usize,
) -> Vec<u64> {
    let mut v = vec![0u64; len];
    apply(&self_key(seed, session, member), field, 1, &mut v);
    v
}

/// The pairwise mask `me` added for `peer` (sign included), from either
/// side's mask secret and the other side's public mask key; `None` for a
/// low-order key.
pub fn pair_mask(
    secret: &[u8; 32],
    other_pk: &[u8; 32],
    session: &Session,
    me: &MemberId,
    peer: &MemberId,
    field: u32,
    len: usize,
) -> Option<Vec<u64>> {
    let key = pair_key(&StaticSecret::from(*secret), other_pk, session, me, peer)?;
    let mut v = vec![0u64; len];
    apply(&key, field, pair_sign(me, peer), &mut v);
    Some(v)
}
