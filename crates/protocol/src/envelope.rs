use bincode::config::{self, Config};
use pb_units::CommunityId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::{NodeId, NodeKey, Request, Response};

/// Version of the envelope and message formats (2: requests name their
/// edge and community, responses the hash of their request; 3: the
/// SecAgg+ rounds; 4: the survivor set travels as one bit per roster
/// member).
pub const PROTOCOL_VERSION: u16 = 4;

/// Largest frame accepted: a `HiddenData` of the longest cycle (1 MiB) plus
/// the envelope.
pub const MAX_FRAME: usize = (1 << 20) + 4096;

/// Longest community name an envelope may carry.
pub const MAX_COMMUNITY: usize = 256;

const MAGIC: [u8; 4] = *b"PBEN";

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// Not an envelope, or truncated, or trailing bytes.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Another protocol version.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u16),
    /// The signature does not verify for the claimed sender.
    #[error("bad signature")]
    BadSignature,
    /// The payload is signed but inconsistent.
    #[error("inconsistent message: {0}")]
    Inconsistent(&'static str),
    /// Validly signed, but meant for another edge or community, or the
    /// answer to another request.
    #[error("misdirected message: {0}")]
    Misdirected(&'static str),
}

/// Whom a request is meant for: the edge's identity and its community.
/// Both are signed, so a request cannot be replayed to another edge or
/// another community.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// The edge's node id.
    pub edge: NodeId,
    /// The community.
    pub community: CommunityId,
}

/// SHA-256 of a sealed request frame (with a domain tag): what a response
/// signs, binding it to that one request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestHash(pub [u8; 32]);

impl RequestHash {
    /// The hash of the request frame `frame`, exactly as received.
    pub fn of(frame: &[u8]) -> RequestHash {
        let mut h = Sha256::new();
        h.update(b"private-billing request hash v2\0");
        h.update(frame);
        RequestHash(h.finalize().into())
    }
}

impl std::fmt::Debug for RequestHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestHash(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// What an envelope is bound to, besides its sender and counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    /// A request: its recipient.
    Request(Audience),
    /// A response: the request it answers.
    Response(RequestHash),
}

/// A signed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The signer.
    pub sender: NodeId,
    /// Request counter (a response repeats its request's).
    pub counter: u64,
    /// Recipient (requests) or answered request (responses).
    pub binding: Binding,
    /// bincode of a [`Request`] or [`Response`].
    pub payload: Vec<u8>,
    /// Ed25519 signature (64 bytes).
    pub signature: Vec<u8>,
}

fn cfg() -> impl Config {
    config::standard().with_fixed_int_encoding()
}

/// Decoding configuration: claimed lengths beyond a frame are refused
/// before anything is allocated.
fn limited() -> impl Config {
    config::standard()
        .with_fixed_int_encoding()
        .with_limit::<MAX_FRAME>()
}

/// What is signed: a tag that tells requests from responses (a request can
/// never be replayed as a response), then every field but the signature.
fn signing_input(
    tag: &[u8],
    version: u16,
    sender: &NodeId,
    counter: u64,
    binding: &Binding,
    payload: &[u8],
) -> Vec<u8> {
    let binding = bincode::serde::encode_to_vec(binding, cfg()).unwrap_or_default();
    let mut m = Vec::with_capacity(tag.len() + 60 + binding.len() + payload.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(&version.to_le_bytes());
    m.extend_from_slice(&sender.0);
    m.extend_from_slice(&counter.to_le_bytes());
    m.extend_from_slice(&(binding.len() as u64).to_le_bytes());
    m.extend_from_slice(&binding);
    m.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// A message kind with its signing tag.
trait Kind: Serialize + DeserializeOwned {
    const TAG: &'static [u8];
    fn check(&self) -> Result<(), &'static str>;
}

impl Kind for Request {
    const TAG: &'static [u8] = b"private-billing request v4\0";
    fn check(&self) -> Result<(), &'static str> {
        self.check_shape()
    }
}

impl Kind for Response {
    const TAG: &'static [u8] = b"private-billing response v4\0";
    fn check(&self) -> Result<(), &'static str> {
        match self {
            Response::Bill(b) => b.check_shape(),
            _ => Ok(()),
        }
    }
}

fn seal<T: Kind>(key: &NodeKey, counter: u64, binding: Binding, body: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    let payload = bincode::serde::encode_to_vec(body, cfg()).unwrap_or_default();
    seal_payload(key, counter, T::TAG, binding, payload)
}

fn seal_payload(
    key: &NodeKey,
    counter: u64,
    tag: &[u8],
    binding: Binding,
    payload: Vec<u8>,
) -> Vec<u8> {
    let sender = key.id();
    let signature = key
        .sign(&signing_input(
            tag,
            PROTOCOL_VERSION,
            &sender,
            counter,
            &binding,
            &payload,
        ))
        .to_vec();
    let env = Envelope {
        version: PROTOCOL_VERSION,
        sender,
        counter,
        binding,
        payload,
        signature,
    };
    let mut out = MAGIC.to_vec();
    out.extend(bincode::serde::encode_to_vec(&env, cfg()).unwrap_or_default());
    out
}

/// Opens a frame: size, magic, version, signature, then the body. The
/// binding is returned for the caller to check.
fn open<T: Kind>(frame: &[u8]) -> Result<(NodeId, u64, Binding, T), ProtocolError> {
    if frame.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge(frame.len()));
    }
    if frame.len() < MAGIC.len() || frame[..4] != MAGIC {
        return Err(ProtocolError::Malformed(
            "not a private-billing envelope".into(),
        ));
    }
    // The version comes first after the magic: check it before decoding
    // the rest, so that another version gets a clear error.
    if let Some(v) = frame.get(4..6) {
        let version = u16::from_le_bytes([v[0], v[1]]);
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::Version(version));
        }
    }
    let decode = |bytes: &[u8]| -> Result<(Envelope, usize), ProtocolError> {
        bincode::serde::decode_from_slice(bytes, limited())
            .map_err(|e| ProtocolError::Malformed(e.to_string()))
    };
    let (env, used) = decode(&frame[4..])?;
    if used != frame.len() - 4 {
        return Err(ProtocolError::Malformed("trailing bytes".into()));
    }
    if env.version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(env.version));
    }
    if let Binding::Request(a) = &env.binding {
        if a.community.0.len() > MAX_COMMUNITY {
            return Err(ProtocolError::Malformed("community name too long".into()));
        }
    }
    let signature: [u8; 64] = env
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| ProtocolError::BadSignature)?;
    if !env.sender.verify(
        &signing_input(
            T::TAG,
            env.version,
            &env.sender,
            env.counter,
            &env.binding,
            &env.payload,
        ),
        &signature,
    ) {
        return Err(ProtocolError::BadSignature);
    }
    let (body, used): (T, usize) = bincode::serde::decode_from_slice(&env.payload, limited())
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if used != env.payload.len() {
        return Err(ProtocolError::Malformed(
            "trailing bytes in the payload".into(),
        ));
    }
    body.check().map_err(ProtocolError::Inconsistent)?;
    Ok((env.sender, env.counter, env.binding, body))
}

impl Envelope {
    /// Signs a request to `to` as `key` with `counter` and frames it.
    pub fn seal_request(key: &NodeKey, counter: u64, to: &Audience, request: &Request) -> Vec<u8> {
        seal(key, counter, Binding::Request(to.clone()), request)
    }

    /// Signs a response to the request with `counter` whose frame hashes
    /// to `answers`.
    pub fn seal_response(
        key: &NodeKey,
        counter: u64,
        answers: RequestHash,
        response: &Response,
    ) -> Vec<u8> {
        seal(key, counter, Binding::Response(answers), response)
    }

    /// Signs arbitrary payload bytes as a request (for tests and fuzzing:
    /// what a holder of an enrolled key could send, so that the decoders
    /// behind the signature check can be exercised).
    pub fn seal_request_payload(
        key: &NodeKey,
        counter: u64,
        to: &Audience,
        payload: &[u8],
    ) -> Vec<u8> {
        seal_payload(
            key,
            counter,
            Request::TAG,
            Binding::Request(to.clone()),
            payload.to_vec(),
        )
    }

    /// Like [`Envelope::seal_request_payload`] for a response.
    pub fn seal_response_payload(
        key: &NodeKey,
        counter: u64,
        answers: RequestHash,
        payload: &[u8],
    ) -> Vec<u8> {
        seal_payload(
            key,
            counter,
            Response::TAG,
            Binding::Response(answers),
            payload.to_vec(),
        )
    }

    /// Checks size, version and signature of a request frame, that it is
    /// meant for `me` (edge and community), and decodes it: `(sender,
    /// counter, request)`. Freshness of the counter is the receiver's to
    /// check ([`crate::ReplayGuard`]).
    pub fn open_request(
        frame: &[u8],
        me: &Audience,
    ) -> Result<(NodeId, u64, Request), ProtocolError> {
        let (sender, counter, binding, request) = open(frame)?;
        match binding {
            Binding::Request(to) if to.edge != me.edge => {
                Err(ProtocolError::Misdirected("sent to another edge"))
            }
            Binding::Request(to) if to.community != me.community => {
                Err(ProtocolError::Misdirected("sent for another community"))
            }
            Binding::Request(_) => Ok((sender, counter, request)),
            Binding::Response(_) => Err(ProtocolError::Misdirected("not a request")),
        }
    }

    /// Checks a response frame and that it answers the request `request`
    /// (its sealed frame): `(signer, counter, response)`.
    pub fn open_response(
        frame: &[u8],
        request: &[u8],
    ) -> Result<(NodeId, u64, Response), ProtocolError> {
        let (sender, counter, binding, response) = open(frame)?;
        match binding {
            Binding::Response(h) if h == RequestHash::of(request) => {
                Ok((sender, counter, response))
            }
            _ => Err(ProtocolError::Misdirected("answers another request")),
        }
    }

    /// Opens any response frame whatever request it answers (fuzzing and
    /// inspection only: a client must use [`Envelope::open_response`]).
    pub fn open_any_response(
        frame: &[u8],
    ) -> Result<(NodeId, u64, RequestHash, Response), ProtocolError> {
        let (sender, counter, binding, response) = open(frame)?;
        match binding {
            Binding::Response(h) => Ok((sender, counter, h, response)),
            Binding::Request(_) => Err(ProtocolError::Misdirected("not a response")),
        }
    }

    /// Opens any request frame whatever its audience (fuzzing and
    /// inspection only: an edge must use [`Envelope::open_request`]).
    pub fn open_any_request(
        frame: &[u8],
    ) -> Result<(NodeId, u64, Audience, Request), ProtocolError> {
        let (sender, counter, binding, request) = open(frame)?;
        match binding {
            Binding::Request(a) => Ok((sender, counter, a, request)),
            Binding::Response(_) => Err(ProtocolError::Misdirected("not a request")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use pb_units::CycleId;
    use proptest::prelude::*;

    fn key(b: u8) -> NodeKey {
        NodeKey::from_bytes([b; 32])
    }

    fn to() -> Audience {
        Audience {
            edge: key(9).id(),
            community: CommunityId("c".into()),
        }
    }

    #[test]
    fn sealed_requests_open_with_sender_and_counter() {
        let frame =
            Envelope::seal_request(&key(1), 42, &to(), &Request::GetBill { cycle: CycleId(3) });
        let (sender, counter, req) = Envelope::open_request(&frame, &to()).unwrap();
        assert_eq!(
            (sender, counter, req),
            (key(1).id(), 42, Request::GetBill { cycle: CycleId(3) })
        );
    }

    #[test]
    fn a_request_cannot_pass_as_a_response() {
        let frame = Envelope::seal_request(&key(1), 1, &to(), &Request::GetMembers);
        assert_eq!(
            Envelope::open_any_response(&frame).unwrap_err(),
            ProtocolError::BadSignature
        );
    }

    /// Attacker: a request captured on its way to one edge or community
    /// is sent to another; both refuse it.
    #[test]
    fn a_request_for_another_edge_or_community_is_refused() {
        let frame = Envelope::seal_request(&key(1), 1, &to(), &Request::GetMembers);
        let other_edge = Audience {
            edge: key(8).id(),
            ..to()
        };
        assert_eq!(
            Envelope::open_request(&frame, &other_edge).unwrap_err(),
            ProtocolError::Misdirected("sent to another edge")
        );
        let other_community = Audience {
            community: CommunityId("d".into()),
            ..to()
        };
        assert_eq!(
            Envelope::open_request(&frame, &other_community).unwrap_err(),
            ProtocolError::Misdirected("sent for another community")
        );
        // Rewriting the audience breaks the signature.
        let (mut env, _): (Envelope, usize) =
            bincode::serde::decode_from_slice(&frame[4..], cfg()).unwrap();
        env.binding = Binding::Request(other_community.clone());
        let mut forged = MAGIC.to_vec();
        forged.extend(bincode::serde::encode_to_vec(&env, cfg()).unwrap());
        assert_eq!(
            Envelope::open_request(&forged, &other_community).unwrap_err(),
            ProtocolError::BadSignature
        );
    }

    /// Attacker: the edge's answer to one request is handed to the client
    /// as the answer to another one (same counter even); it is refused.
    #[test]
    fn an_answer_to_another_request_is_refused() {
        let first =
            Envelope::seal_request(&key(1), 5, &to(), &Request::GetBill { cycle: CycleId(1) });
        let second =
            Envelope::seal_request(&key(1), 5, &to(), &Request::GetBill { cycle: CycleId(2) });
        let answer = Envelope::seal_response(
            &key(9),
            5,
            RequestHash::of(&first),
            &Response::Pending {
                round: pb_secagg::Round::Mask,
                waiting: 1,
            },
        );
        assert!(Envelope::open_response(&answer, &first).is_ok());
        assert_eq!(
            Envelope::open_response(&answer, &second).unwrap_err(),
            ProtocolError::Misdirected("answers another request")
        );
    }

    #[test]
    fn tampering_is_detected() {
        let request = Envelope::seal_request(&key(1), 7, &to(), &Request::GetMembers);
        let frame = Envelope::seal_response(
            &key(2),
            7,
            RequestHash::of(&request),
            &Response::Error {
                code: ErrorCode::Rejected,
                message: "no".into(),
            },
        );
        let reseal = |env: &Envelope| {
            let mut forged = MAGIC.to_vec();
            forged.extend(bincode::serde::encode_to_vec(env, cfg()).unwrap());
            forged
        };
        // another sender claimed
        let (mut env, _): (Envelope, usize) =
            bincode::serde::decode_from_slice(&frame[4..], cfg()).unwrap();
        env.sender = key(3).id();
        assert_eq!(
            Envelope::open_response(&reseal(&env), &request).unwrap_err(),
            ProtocolError::BadSignature
        );
        // counter changed
        env.sender = key(2).id();
        env.counter = 8;
        assert_eq!(
            Envelope::open_response(&reseal(&env), &request).unwrap_err(),
            ProtocolError::BadSignature
        );
        // answered request changed
        env.counter = 7;
        env.binding = Binding::Response(RequestHash([0; 32]));
        assert_eq!(
            Envelope::open_any_response(&reseal(&env)).unwrap_err(),
            ProtocolError::BadSignature
        );
        // version changed
        env.binding = Binding::Response(RequestHash::of(&request));
        env.version = 1;
        assert_eq!(
            Envelope::open_response(&reseal(&env), &request).unwrap_err(),
            ProtocolError::Version(1)
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        assert!(matches!(
            Envelope::open_request(&[], &to()),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::open_request(b"PBEN", &to()),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::open_request(&vec![0; MAX_FRAME + 1], &to()),
            Err(ProtocolError::TooLarge(_))
        ));
        let mut frame = Envelope::seal_request(&key(1), 1, &to(), &Request::GetMembers);
        frame.push(0);
        assert!(matches!(
            Envelope::open_request(&frame, &to()),
            Err(ProtocolError::Malformed(_))
        ));
        // a huge claimed payload length is refused without allocating it
        let mut huge = b"PBEN".to_vec();
        huge.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        huge.extend_from_slice(&[0; 32]);
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.extend_from_slice(&[0; 32]);
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Envelope::open_request(&huge, &to()),
            Err(ProtocolError::Malformed(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
            let mut frame = bytes;
            if magic { frame.splice(0..0, MAGIC); }
            prop_assert!(Envelope::open_request(&frame, &to()).is_err());
        }

        #[test]
        fn every_truncation_and_bit_flip_is_refused(cut in any::<prop::sample::Index>(), bit in 0u8..8) {
            let frame = Envelope::seal_request(&key(5), 9, &to(), &Request::GetCycle { cycle: CycleId(77) });
            let at = cut.index(frame.len());
            prop_assert!(Envelope::open_request(&frame[..at], &to()).is_err());
            let mut flipped = frame.clone();
            flipped[at] ^= 1 << bit;
            prop_assert!(Envelope::open_request(&flipped, &to()).is_err());
        }
    }
}
