use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

/// A node's long-term Ed25519 signing key (edge, core or operator).
///
/// Not `Clone` (share it behind an `Arc`); the key is zeroized when
/// dropped (ed25519-dalek's `SigningKey` with its `zeroize` feature).
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// Draws a fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> NodeKey {
        NodeKey(SigningKey::generate(rng))
    }

    /// Rebuilds a key from its 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(&bytes))
    }

    /// The 32 secret bytes, for the owner's storage.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public identity of this key.
    pub fn id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    /// The Ed25519 key itself, for signatures outside the envelope (a
    /// member's SecAgg+ key bundles and confirmations; the operator's
    /// member list).
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The node's X25519 static secret for the encrypted transport,
    /// derived from its Ed25519 key by the standard map (the lower half of
    /// SHA-512 of the seed, as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519`; X25519 clamps it). Its
    /// public key is [`NodeId::transport_public`], so enrolling a node id
    /// also enrols its transport key.
    pub fn transport_secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_scalar_bytes())
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The file could not be read within its size cap.
    #[error(transparent)]
    Read(#[from] pb_inputs::ReadError),
    /// The file does not hold 64 hex digits.
    #[error("{0}: not a private-billing key file (expected 64 hex digits)")]
    Format(String),
}

impl NodeKey {
    /// Reads a key written by [`NodeKey::write_new`].
    pub fn read_file(path: &std::path::Path) -> Result<NodeKey, KeyFileError> {
        let text = pb_inputs::bounded_text(path, pb_inputs::Kind::Key)?;
        let bytes = NodeId::from_hex(&text)
            .ok_or_else(|| KeyFileError::Format(path.display().to_string()))?;
        Ok(NodeKey::from_bytes(bytes.0))
    }

    /// Writes the secret key as hex to a new file readable by its owner
    /// only; refuses to overwrite an existing file.
    pub fn write_new(&self, path: &std::path::Path) -> Result<(), KeyFileError> {
        use std::io::Write;
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let hex = NodeId(self.to_bytes()).to_hex();
        file.write_all(format!("{hex}\n").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.id())
    }
}

/// A node's public identity: its Ed25519 verifying key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Verifies `signature` over `message` (strict: no malleable or
    /// small-order keys and signatures).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match VerifyingKey::from_bytes(&self.0) {
            Ok(key) => key
                .verify_strict(message, &Signature::from_bytes(signature))
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The X25519 public key of the node's transport (the Montgomery form
    /// of its Ed25519 key; see [`NodeKey::transport_secret`]), or `None`
    /// when the id is not a valid Ed25519 key.
    pub fn transport_public(&self) -> Option<[u8; 32]> {
        VerifyingKey::from_bytes(&self.0)
            .ok()
            .map(|k| k.to_montgomery().to_bytes())
    }

    /// Lower-case hex, as in enrollment files.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`NodeId::to_hex`].
    pub fn from_hex(s: &str) -> Option<NodeId> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(NodeId(out))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Whether `public` is an X25519 key that yields a contributory shared
/// secret: false for the identity and the other low-order points (and
/// their non-canonical encodings), with which every Diffie-Hellman result
/// is all zeros whatever the secret key.
pub fn x25519_key_is_usable(public: &[u8; 32]) -> bool {
    // Any clamped scalar is a multiple of the cofactor, so the product is
    // the identity exactly when the point has low order.
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .was_contributory()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derived X25519 key pair matches: secret times the base point
    /// is the Montgomery form of the node id, and two nodes agree on their
    /// shared secret.
    #[test]
    fn transport_keys_derive_from_node_keys() {
        let a = NodeKey::from_bytes([3; 32]);
        let b = NodeKey::from_bytes([4; 32]);
        let sa = x25519_dalek::StaticSecret::from(*a.transport_secret());
        let sb = x25519_dalek::StaticSecret::from(*b.transport_secret());
        assert_eq!(
            x25519_dalek::PublicKey::from(&sa).to_bytes(),
            a.id().transport_public().unwrap()
        );
        let pb = x25519_dalek::PublicKey::from(b.id().transport_public().unwrap());
        let pa = x25519_dalek::PublicKey::from(a.id().transport_public().unwrap());
        assert_eq!(
            sa.diffie_hellman(&pb).to_bytes(),
            sb.diffie_hellman(&pa).to_bytes()
        );
        assert_ne!(a.id().transport_public(), b.id().transport_public());
    }

    #[test]
    fn low_order_x25519_keys_are_not_usable() {
        let mut one = [0u8; 32];
        one[0] = 1;
        // identity (0), 1, a point of order 8, p - 1, p, p + 1 (non-canonical)
        let order8 = [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ];
        let mut p_minus_1 = [0xff; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        let mut p = p_minus_1;
        p[0] = 0xed;
        let mut p_plus_1 = p_minus_1;
        p_plus_1[0] = 0xee;
        for bad in [[0u8; 32], one, order8, p_minus_1, p, p_plus_1] {
            assert!(!x25519_key_is_usable(&bad), "{bad:?}");
        }
        let good = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([7; 32]));
        assert!(x25519_key_is_usable(good.as_bytes()));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let id = NodeKey::from_bytes([7; 32]).id();
        assert_eq!(NodeId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(NodeId::from_hex("zz"), None);
        assert_eq!(NodeId::from_hex(&"g".repeat(64)), None);
        assert_eq!(NodeId::from_hex(&"é".repeat(32)), None);
    }
}
