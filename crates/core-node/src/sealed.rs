//! Optional encryption of the household's secret keys at rest.
//!
//! Off by default. With `secrets_passphrase_file` in `core.toml`, the
//! core's X25519 and GLWE secret keys are stored as one sealed record:
//! `"PBSK" | version 1 | salt (16) | nonce (12) | ChaCha20-Poly1305
//! ciphertext`, under a key derived from the file's contents with Argon2id
//! (the `argon2` crate's default parameters: 19 MiB, 2 passes). The
//! passphrase, the derived key and the opened secrets are zeroized after
//! use. A wrong passphrase or a changed byte fails the authentication, with
//! a clear error, and changes nothing.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::RngCore;
use zeroize::Zeroizing;

use crate::CoreError;

const MAGIC: &[u8; 5] = b"PBSK\x01";
const SALT: usize = 16;
const NONCE: usize = 12;
const AAD: &[u8] = b"private-billing core secrets v1";

/// The secret that unlocks the household's keys at rest (the contents of
/// the passphrase or key file, without a trailing newline).
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// A passphrase from bytes (at least 8).
    pub fn new(bytes: &[u8]) -> Result<Passphrase, CoreError> {
        if bytes.len() < 8 {
            return Err(CoreError::Config(
                "secrets passphrase: at least 8 bytes are needed".into(),
            ));
        }
        Ok(Passphrase(Zeroizing::new(bytes.to_vec())))
    }

    /// Reads a passphrase or key file (at most 256 bytes; a trailing
    /// newline is not part of it).
    pub fn read_file(path: &Path) -> Result<Passphrase, CoreError> {
        let text = Zeroizing::new(
            pb_inputs::bounded_text(path, pb_inputs::Kind::Key)
                .map_err(|e| CoreError::Config(format!("secrets_passphrase_file: {e}")))?,
        );
        Passphrase::new(text.trim_end_matches(['\n', '\r']).as_bytes())
            .map_err(|e| CoreError::Config(format!("{}: {e}", path.display())))
    }

    fn key(&self, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, CoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        argon2::Argon2::default()
            .hash_password_into(&self.0, salt, &mut key[..])
            .map_err(|e| CoreError::Store(format!("key derivation: {e}")))?;
        Ok(key)
    }
}

/// Seals `plaintext` under `passphrase` (fresh salt and nonce).
pub fn seal(passphrase: &Passphrase, plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
    let mut salt = [0u8; SALT];
    let mut nonce = [0u8; NONCE];
    rand_core::OsRng.fill_bytes(&mut salt);
    rand_core::OsRng.fill_bytes(&mut nonce);
    let key = passphrase.key(&salt)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: AAD,
            },
        )
        .map_err(|_| CoreError::Store("cannot encrypt the household's secrets".into()))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a record written by [`seal`].
pub fn open(passphrase: &Passphrase, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CoreError> {
    let head = MAGIC.len() + SALT + NONCE;
    if sealed.len() < head + 16 || &sealed[..MAGIC.len()] != MAGIC {
        return Err(CoreError::Store(
            "the sealed household secrets are malformed".into(),
        ));
    }
    let salt = &sealed[MAGIC.len()..MAGIC.len() + SALT];
    let nonce = &sealed[MAGIC.len() + SALT..head];
    let key = passphrase.key(salt)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: &sealed[head..],
                aad: AAD,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            CoreError::Store(
                "cannot decrypt the household's secrets: wrong passphrase or key file (or a damaged store)"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_passphrase() {
        let p = Passphrase::new(b"correct horse").unwrap();
        let sealed = seal(&p, b"the keys").unwrap();
        assert_eq!(&open(&p, &sealed).unwrap()[..], b"the keys");
        assert!(!sealed.windows(8).any(|w| w == b"the keys"));
        let wrong = Passphrase::new(b"battery staple").unwrap();
        assert!(
            open(&wrong, &sealed)
                .unwrap_err()
                .to_string()
                .contains("wrong passphrase")
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open(&p, &flipped).is_err());
        assert!(open(&p, &sealed[..20]).is_err());
        assert!(Passphrase::new(b"short").is_err());
    }
}
