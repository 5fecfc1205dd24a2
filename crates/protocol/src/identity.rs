use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

/// A node's long-term Ed25519 signing key (edge, core or operator).
#[derive(Clone)]
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

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let id = NodeKey::from_bytes([7; 32]).id();
        assert_eq!(NodeId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(NodeId::from_hex("zz"), None);
        assert_eq!(NodeId::from_hex(&"g".repeat(64)), None);
        assert_eq!(NodeId::from_hex(&"é".repeat(32)), None);
    }
}
