//! The encrypted transport between cores, operators and the edge: the
//! Noise protocol `Noise_IK_25519_ChaChaPoly_BLAKE2s` (the `snow` crate)
//! over the ZeroMQ request-reply framing.
//!
//! * Static keys are the nodes' X25519 transport keys, derived from their
//!   Ed25519 node keys ([`NodeKey::transport_secret`]), so a client that
//!   pins the edge's node id pins its static key, and the edge
//!   authenticates a client's static key against its enrolled node ids.
//! * One handshake per connection (the REQ client re-handshakes after any
//!   reconnect): `-> e, es, s, ss` then `<- e, ee, se`, both with empty
//!   payloads, so every request and answer travels in transport mode,
//!   encrypted under keys that depend on both ephemeral keys (forward
//!   secrecy: recorded traffic stays closed after the static keys leak).
//! * A message of the ZeroMQ payload frame starts with one type byte:
//!   [`HELLO`] (handshake message 1), [`WELCOME`] (message 2), [`DATA`]
//!   (a sealed message) or [`REFUSED`] (a plain-text reason from a server
//!   that cannot or will not answer encrypted; it carries nothing secret,
//!   and clients treat it as an error).
//! * A sealed message is the 4-byte length of the plaintext and the
//!   plaintext, cut into Noise messages of at most 65,535 bytes (each with
//!   its own nonce and tag). The length is authenticated, so dropping or
//!   cutting chunks fails.
//!
//! Everything here runs after the socket guard has checked sizes and
//! deadlines of the raw bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pb_protocol::{MAX_FRAME, NodeId, NodeKey};
use thiserror::Error;
use zeroize::Zeroizing;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Bound into every handshake (Noise prologue).
const PROLOGUE: &[u8] = b"private-billing transport v1";

/// Type byte: handshake message 1 (client to server).
pub const HELLO: u8 = 0x01;
/// Type byte: handshake message 2 (server to client).
pub const WELCOME: u8 = 0x02;
/// Type byte: a sealed message.
pub const DATA: u8 = 0x03;
/// Type byte: a plain refusal with a UTF-8 reason.
pub const REFUSED: u8 = 0x04;

/// Why [`ServerKeys::new`] refuses a key it does not list.
pub const NOT_ENROLLED: &str = "this node is not enrolled in this community";

/// Largest Noise message.
const NOISE_MAX: usize = 65_535;
/// Authentication tag per Noise message.
const TAG: usize = 16;
/// Plaintext per Noise message.
const CHUNK: usize = NOISE_MAX - TAG;

/// Largest plaintext one sealed message may carry.
pub const MAX_PLAINTEXT: usize = MAX_FRAME;

/// Largest message on the wire: a sealed [`MAX_PLAINTEXT`] with its type
/// byte, length and tags (what the socket guard lets through).
pub const MAX_WIRE: usize = MAX_FRAME + 1024;

/// Most Noise sessions a server keeps (one per connected peer); beyond it
/// the oldest is dropped and its peer re-handshakes after its timeout.
pub const MAX_SESSIONS: usize = 16_384;

/// Why the encrypted transport failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecureError {
    /// The node id is not a valid Ed25519 key, so it has no transport key.
    #[error("node id {0} has no X25519 transport key (not a valid Ed25519 key)")]
    BadKey(String),
    /// The Noise handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A sealed message did not open (wrong keys, tampering, truncation).
    #[error("cannot decrypt: {0}")]
    Decrypt(&'static str),
    /// A message too large to seal.
    #[error("message of {0} bytes exceeds the limit of {MAX_PLAINTEXT}")]
    TooLarge(usize),
    /// The peer refused (plain-text reason).
    #[error("refused by the server: {0}")]
    Refused(String),
    /// An unexpected message type.
    #[error("unexpected message (type byte {0:#04x})")]
    Unexpected(u8),
}

fn handshake(e: snow::Error) -> SecureError {
    SecureError::Handshake(e.to_string())
}

fn params() -> snow::params::NoiseParams {
    // The constant name always parses.
    NOISE_PARAMS
        .parse()
        .unwrap_or_else(|_| unreachable!("{NOISE_PARAMS} is a valid Noise protocol name"))
}

/// A plain refusal message.
pub fn refusal(reason: &str) -> Vec<u8> {
    let mut out = vec![REFUSED];
    out.extend_from_slice(reason.as_bytes());
    out
}

/// An established session (either side).
pub struct Session {
    state: snow::TransportState,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl Session {
    /// Seals `plaintext` as one [`DATA`] message.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SecureError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SecureError::TooLarge(plaintext.len()));
        }
        let mut stream = Zeroizing::new(Vec::with_capacity(plaintext.len() + 4));
        stream.extend_from_slice(&(plaintext.len() as u32).to_le_bytes());
        stream.extend_from_slice(plaintext);
        let chunks = stream.len().div_ceil(CHUNK);
        let mut out = vec![0u8; 1 + stream.len() + chunks * TAG];
        out[0] = DATA;
        let mut at = 1;
        for chunk in stream.chunks(CHUNK) {
            let n = self
                .state
                .write_message(chunk, &mut out[at..])
                .map_err(|_| SecureError::Decrypt("cannot encrypt"))?;
            at += n;
        }
        out.truncate(at);
        Ok(out)
    }

    /// Opens a [`DATA`] message (type byte included). Any failure leaves
    /// the session unusable: drop it.
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, SecureError> {
        match message.first() {
            Some(&DATA) => {}
            Some(&REFUSED) => {
                return Err(SecureError::Refused(
                    String::from_utf8_lossy(&message[1..]).into_owned(),
                ));
            }
            Some(&other) => return Err(SecureError::Unexpected(other)),
            None => return Err(SecureError::Decrypt("empty message")),
        }
        let body = &message[1..];
        if body.len() > MAX_WIRE {
            return Err(SecureError::TooLarge(body.len()));
        }
        let mut stream = Zeroizing::new(vec![0u8; body.len()]);
        let mut at = 0;
        for chunk in body.chunks(NOISE_MAX) {
            if chunk.len() <= TAG {
                return Err(SecureError::Decrypt("truncated"));
            }
            let n = self
                .state
                .read_message(chunk, &mut stream[at..])
                .map_err(|_| SecureError::Decrypt("authentication failed"))?;
            at += n;
        }
        if at < 4 {
            return Err(SecureError::Decrypt("truncated"));
        }
        let len = u32::from_le_bytes([stream[0], stream[1], stream[2], stream[3]]) as usize;
        if len != at - 4 {
            return Err(SecureError::Decrypt("length does not match (cut message)"));
        }
        Ok(stream[4..at].to_vec())
    }
}

/// The client's side of a handshake in progress.
pub struct ClientHandshake {
    state: snow::HandshakeState,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientHandshake")
    }
}

impl ClientHandshake {
    /// Starts a handshake as `key` towards the server whose node id is
    /// pinned as `server`; returns the state and the [`HELLO`] message.
    pub fn start(
        key: &NodeKey,
        server: &NodeId,
    ) -> Result<(ClientHandshake, Vec<u8>), SecureError> {
        let remote = server
            .transport_public()
            .ok_or_else(|| SecureError::BadKey(server.to_hex()))?;
        let secret = key.transport_secret();
        let mut state = snow::Builder::new(params())
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(&secret[..]))
            .and_then(|b| b.remote_public_key(&remote))
            .and_then(|b| b.build_initiator())
            .map_err(handshake)?;
        let mut out = vec![0u8; 256];
        out[0] = HELLO;
        let n = state.write_message(&[], &mut out[1..]).map_err(handshake)?;
        out.truncate(1 + n);
        Ok((ClientHandshake { state }, out))
    }

    /// Finishes with the server's answer.
    pub fn finish(mut self, answer: &[u8]) -> Result<Session, SecureError> {
        match answer.first() {
            Some(&WELCOME) => {}
            Some(&REFUSED) => {
                return Err(SecureError::Refused(
                    String::from_utf8_lossy(&answer[1..]).into_owned(),
                ));
            }
            Some(&other) => return Err(SecureError::Unexpected(other)),
            None => return Err(SecureError::Handshake("empty answer".into())),
        }
        let mut payload = [0u8; 256];
        self.state
            .read_message(&answer[1..], &mut payload)
            .map_err(|_| {
                SecureError::Handshake(
                    "the server's answer does not authenticate with the pinned key".into(),
                )
            })?;
        let state = self.state.into_transport_mode().map_err(handshake)?;
        Ok(Session { state })
    }
}

/// Which client static keys a server accepts (X25519 transport keys):
/// `Err(reason)` refuses the handshake, and the reason is sent back in
/// the plain refusal (it must carry nothing secret). Asked at every
/// handshake, so a server whose admission changes while it runs (a
/// member's key rotation) answers with what it admits now.
pub type Authorize = Arc<dyn Fn(&[u8; 32]) -> Result<(), String> + Send + Sync>;

/// A server's Noise identity and the clients it accepts.
#[derive(Clone)]
pub struct ServerKeys {
    secret: Arc<Zeroizing<[u8; 32]>>,
    authorize: Authorize,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKeys")
    }
}

impl ServerKeys {
    /// The server speaks as `key`; clients whose node ids pass `allowed`
    /// may open sessions.
    pub fn new(
        key: &NodeKey,
        allowed: impl IntoIterator<Item = NodeId>,
    ) -> Result<ServerKeys, SecureError> {
        let mut keys = std::collections::HashSet::new();
        for id in allowed {
            keys.insert(
                id.transport_public()
                    .ok_or_else(|| SecureError::BadKey(id.to_hex()))?,
            );
        }
        Ok(ServerKeys::with_authorize(
            key,
            Arc::new(move |k| {
                if keys.contains(k) {
                    Ok(())
                } else {
                    Err(NOT_ENROLLED.to_string())
                }
            }),
        ))
    }

    /// The server speaks as `key`; `authorize` decides at each handshake
    /// which clients may open sessions (for an admission that changes
    /// while the server runs).
    ///
    /// ```
    /// use std::sync::{Arc, RwLock};
    /// use pb_net::ServerKeys;
    /// use pb_protocol::NodeKey;
    ///
    /// let admitted: Arc<RwLock<Vec<[u8; 32]>>> = Arc::default();
    /// let view = admitted.clone();
    /// let keys = ServerKeys::with_authorize(
    ///     &NodeKey::from_bytes([2; 32]),
    ///     Arc::new(move |k| match view.read() {
    ///         Ok(a) if a.contains(k) => Ok(()),
    ///         _ => Err("this node is not enrolled in this community".into()),
    ///     }),
    /// );
    /// # drop(keys);
    /// ```
    pub fn with_authorize(key: &NodeKey, authorize: Authorize) -> ServerKeys {
        ServerKeys {
            secret: Arc::new(key.transport_secret()),
            authorize,
        }
    }

    /// Answers a [`HELLO`]: the session and the [`WELCOME`] message, with
    /// the client's static key; or a refusal message to send back.
    pub fn accept(&self, hello: &[u8]) -> Result<(Session, [u8; 32], Vec<u8>), Vec<u8>> {
        let refuse = |reason: &str| refusal(reason);
        if hello.first() != Some(&HELLO) {
            return Err(refuse(
                "this server speaks the encrypted transport only: start with a Noise handshake",
            ));
        }
        let mut state = snow::Builder::new(params())
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(&self.secret[..]))
            .and_then(|b| b.build_responder())
            .map_err(|_| refuse("internal error"))?;
        let mut payload = [0u8; 256];
        state.read_message(&hello[1..], &mut payload).map_err(|_| {
            refuse(
                "handshake failed: the client did not encrypt to this server's key (wrong pinned edge key?)",
            )
        })?;
        let client: [u8; 32] = state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| refuse("handshake failed: no client key"))?;
        if let Err(reason) = (self.authorize)(&client) {
            return Err(refuse(&format!("handshake refused: {reason}")));
        }
        let mut out = vec![0u8; 256];
        out[0] = WELCOME;
        let n = state
            .write_message(&[], &mut out[1..])
            .map_err(|_| refuse("internal error"))?;
        out.truncate(1 + n);
        let state = state
            .into_transport_mode()
            .map_err(|_| refuse("internal error"))?;
        Ok((Session { state }, client, out))
    }
}

/// A server's sessions by ZeroMQ peer routing id, bounded by
/// [`MAX_SESSIONS`] (the oldest goes first).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: HashMap<Bytes, (u64, [u8; 32], Session)>,
    next: u64,
}

/// Shared between the receiving task (opens) and the handler's replies
/// (seals).
pub(crate) type SharedSessions = Arc<Mutex<Sessions>>;

impl Sessions {
    pub(crate) fn insert(&mut self, peer: Bytes, client: [u8; 32], session: Session) {
        if self.map.len() >= MAX_SESSIONS && !self.map.contains_key(&peer) {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (seq, _, _))| *seq)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.next += 1;
        self.map.insert(peer, (self.next, client, session));
    }

    /// Opens a [`DATA`] message from `peer`: the plaintext and the peer's
    /// static key. A failure drops the session.
    pub(crate) fn open(
        &mut self,
        peer: &Bytes,
        message: &[u8],
    ) -> Result<(Vec<u8>, [u8; 32]), &'static str> {
        let Some((_, client, session)) = self.map.get_mut(peer) else {
            return Err("no session on this connection: start with a Noise handshake");
        };
        let client = *client;
        match session.open(message) {
            Ok(plain) => Ok((plain, client)),
            Err(_) => {
                self.map.remove(peer);
                Err("cannot decrypt: the session is closed, reconnect")
            }
        }
    }

    pub(crate) fn remove(&mut self, peer: &Bytes) {
        self.map.remove(peer);
    }

    /// Seals an answer to `peer`.
    pub(crate) fn seal(&mut self, peer: &Bytes, plaintext: &[u8]) -> Option<Vec<u8>> {
        let (_, _, session) = self.map.get_mut(peer)?;
        session.seal(plaintext).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(client: &NodeKey, server: &NodeKey) -> (Session, Session) {
        let keys = ServerKeys::new(server, [client.id()]).unwrap();
        let (hs, hello) = ClientHandshake::start(client, &server.id()).unwrap();
        let (s, seen, welcome) = keys.accept(&hello).unwrap();
        assert_eq!(Some(seen), client.id().transport_public());
        (hs.finish(&welcome).unwrap(), s)
    }

    #[test]
    fn sealed_messages_round_trip_at_every_size() {
        let (mut c, mut s) = pair(&NodeKey::from_bytes([1; 32]), &NodeKey::from_bytes([2; 32]));
        for len in [
            0,
            1,
            CHUNK - 4,
            CHUNK - 3,
            CHUNK,
            3 * CHUNK + 7,
            MAX_PLAINTEXT,
        ] {
            let m: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = c.seal(&m).unwrap();
            assert!(sealed.len() <= MAX_WIRE + 1, "{len}");
            assert_eq!(s.open(&sealed).unwrap(), m);
            let back = s.seal(&m).unwrap();
            assert_eq!(c.open(&back).unwrap(), m);
        }
        assert_eq!(
            c.seal(&vec![0; MAX_PLAINTEXT + 1]).unwrap_err(),
            SecureError::TooLarge(MAX_PLAINTEXT + 1)
        );
    }

    /// Attacker on the link: replays a recorded message, cuts a message at
    /// a chunk boundary, flips a bit; each is refused.
    #[test]
    fn replayed_cut_and_flipped_messages_are_refused() {
        let client = NodeKey::from_bytes([1; 32]);
        let server = NodeKey::from_bytes([2; 32]);
        let (mut c, mut s) = pair(&client, &server);
        let sealed = c.seal(b"first").unwrap();
        assert_eq!(s.open(&sealed).unwrap(), b"first");
        assert!(s.open(&sealed).is_err(), "replayed in the same session");

        let (mut c, mut s) = pair(&client, &server);
        let long = c.seal(&vec![7u8; 2 * CHUNK]).unwrap();
        assert!(matches!(
            s.open(&long[..1 + NOISE_MAX]),
            Err(SecureError::Decrypt(_))
        ));

        let (mut c, mut s) = pair(&client, &server);
        let mut flipped = c.seal(b"data").unwrap();
        flipped[3] ^= 1;
        assert!(s.open(&flipped).is_err());
    }

    /// Attacker: a client pins another key than the server's; the
    /// handshake fails on both sides with a clear error.
    #[test]
    fn a_wrong_pinned_key_fails_the_handshake() {
        let client = NodeKey::from_bytes([1; 32]);
        let server = NodeKey::from_bytes([2; 32]);
        let impostor = NodeKey::from_bytes([3; 32]);
        let keys = ServerKeys::new(&impostor, [client.id()]).unwrap();
        let (_, hello) = ClientHandshake::start(&client, &server.id()).unwrap();
        let refused = keys.accept(&hello).unwrap_err();
        assert_eq!(refused[0], REFUSED);
        assert!(String::from_utf8_lossy(&refused).contains("wrong pinned edge key"));
    }

    /// An admission that changes while the server runs: each handshake
    /// asks it again, and its reason for a refusal reaches the client.
    #[test]
    fn a_dynamic_admission_is_asked_at_each_handshake() {
        let client = NodeKey::from_bytes([1; 32]);
        let server = NodeKey::from_bytes([2; 32]);
        let admitted = Arc::new(Mutex::new(true));
        let view = admitted.clone();
        let keys = ServerKeys::with_authorize(
            &server,
            Arc::new(move |_| match view.lock() {
                Ok(a) if *a => Ok(()),
                _ => Err("this key was rotated away".into()),
            }),
        );
        let (_, hello) = ClientHandshake::start(&client, &server.id()).unwrap();
        assert!(keys.accept(&hello).is_ok());
        *admitted.lock().unwrap() = false;
        let (hs, hello) = ClientHandshake::start(&client, &server.id()).unwrap();
        let refused = keys.accept(&hello).unwrap_err();
        match hs.finish(&refused) {
            Err(SecureError::Refused(reason)) => {
                assert_eq!(reason, "handshake refused: this key was rotated away")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A key that is not enrolled gets no session.
    #[test]
    fn unknown_clients_are_refused() {
        let client = NodeKey::from_bytes([1; 32]);
        let server = NodeKey::from_bytes([2; 32]);
        let keys = ServerKeys::new(&server, [NodeKey::from_bytes([5; 32]).id()]).unwrap();
        let (_, hello) = ClientHandshake::start(&client, &server.id()).unwrap();
        let refused = keys.accept(&hello).unwrap_err();
        assert!(String::from_utf8_lossy(&refused).contains("not enrolled"));
        assert!(keys.accept(b"PBEN plain").is_err());
    }
}
