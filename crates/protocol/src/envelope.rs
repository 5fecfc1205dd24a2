use bincode::config::{self, Config};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{NodeId, NodeKey, Request, Response};

/// Version of the envelope and message formats.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame accepted: a `HiddenData` of the longest cycle (1 MiB) plus
/// the envelope.
pub const MAX_FRAME: usize = (1 << 20) + 4096;

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
    payload: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + 50 + payload.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(&version.to_le_bytes());
    m.extend_from_slice(&sender.0);
    m.extend_from_slice(&counter.to_le_bytes());
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
    const TAG: &'static [u8] = b"private-billing request v1\0";
    fn check(&self) -> Result<(), &'static str> {
        self.check_shape()
    }
}

impl Kind for Response {
    const TAG: &'static [u8] = b"private-billing response v1\0";
    fn check(&self) -> Result<(), &'static str> {
        match self {
            Response::Bill(b) => b.check_shape(),
            _ => Ok(()),
        }
    }
}

fn seal<T: Kind>(key: &NodeKey, counter: u64, body: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    let payload = bincode::serde::encode_to_vec(body, cfg()).unwrap_or_default();
    seal_payload(key, counter, T::TAG, payload)
}

fn seal_payload(key: &NodeKey, counter: u64, tag: &[u8], payload: Vec<u8>) -> Vec<u8> {
    let sender = key.id();
    let signature = key
        .sign(&signing_input(
            tag,
            PROTOCOL_VERSION,
            &sender,
            counter,
            &payload,
        ))
        .to_vec();
    let env = Envelope {
        version: PROTOCOL_VERSION,
        sender,
        counter,
        payload,
        signature,
    };
    let mut out = MAGIC.to_vec();
    out.extend(bincode::serde::encode_to_vec(&env, cfg()).unwrap_or_default());
    out
}

fn open<T: Kind>(frame: &[u8]) -> Result<(NodeId, u64, T), ProtocolError> {
    if frame.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge(frame.len()));
    }
    if frame.len() < MAGIC.len() || frame[..4] != MAGIC {
        return Err(ProtocolError::Malformed(
            "not a private-billing envelope".into(),
        ));
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
    let signature: [u8; 64] = env
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| ProtocolError::BadSignature)?;
    if !env.sender.verify(
        &signing_input(T::TAG, env.version, &env.sender, env.counter, &env.payload),
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
    Ok((env.sender, env.counter, body))
}

impl Envelope {
    /// Signs a request as `key` with `counter` and frames it.
    pub fn seal_request(key: &NodeKey, counter: u64, request: &Request) -> Vec<u8> {
        seal(key, counter, request)
    }

    /// Signs a response to the request with `counter`.
    pub fn seal_response(key: &NodeKey, counter: u64, response: &Response) -> Vec<u8> {
        seal(key, counter, response)
    }

    /// Signs arbitrary payload bytes as a request (for tests and fuzzing:
    /// what a holder of an enrolled key could send, so that the decoders
    /// behind the signature check can be exercised).
    pub fn seal_request_payload(key: &NodeKey, counter: u64, payload: &[u8]) -> Vec<u8> {
        seal_payload(key, counter, Request::TAG, payload.to_vec())
    }

    /// Like [`Envelope::seal_request_payload`] for a response.
    pub fn seal_response_payload(key: &NodeKey, counter: u64, payload: &[u8]) -> Vec<u8> {
        seal_payload(key, counter, Response::TAG, payload.to_vec())
    }

    /// Checks size, version and signature of a request frame and decodes
    /// it: `(sender, counter, request)`. Freshness of the counter is the
    /// receiver's to check ([`crate::ReplayGuard`]).
    pub fn open_request(frame: &[u8]) -> Result<(NodeId, u64, Request), ProtocolError> {
        open(frame)
    }

    /// Like [`Envelope::open_request`] for a response.
    pub fn open_response(frame: &[u8]) -> Result<(NodeId, u64, Response), ProtocolError> {
        open(frame)
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

    #[test]
    fn sealed_requests_open_with_sender_and_counter() {
        let frame = Envelope::seal_request(&key(1), 42, &Request::GetBill { cycle: CycleId(3) });
        let (sender, counter, req) = Envelope::open_request(&frame).unwrap();
        assert_eq!(
            (sender, counter, req),
            (key(1).id(), 42, Request::GetBill { cycle: CycleId(3) })
        );
    }

    #[test]
    fn a_request_cannot_pass_as_a_response() {
        let frame = Envelope::seal_request(&key(1), 1, &Request::GetMembers);
        assert_eq!(
            Envelope::open_response(&frame).unwrap_err(),
            ProtocolError::BadSignature
        );
    }

    #[test]
    fn tampering_is_detected() {
        let frame = Envelope::seal_response(
            &key(2),
            7,
            &Response::Error {
                code: ErrorCode::Rejected,
                message: "no".into(),
            },
        );
        // another sender claimed
        let (_, mut env): (usize, Envelope) = (
            0,
            bincode::serde::decode_from_slice(&frame[4..], cfg())
                .unwrap()
                .0,
        );
        env.sender = key(3).id();
        let mut forged = MAGIC.to_vec();
        forged.extend(bincode::serde::encode_to_vec(&env, cfg()).unwrap());
        assert_eq!(
            Envelope::open_response(&forged).unwrap_err(),
            ProtocolError::BadSignature
        );
        // counter changed
        env.sender = key(2).id();
        env.counter = 8;
        let mut forged = MAGIC.to_vec();
        forged.extend(bincode::serde::encode_to_vec(&env, cfg()).unwrap());
        assert_eq!(
            Envelope::open_response(&forged).unwrap_err(),
            ProtocolError::BadSignature
        );
        // version changed
        env.counter = 7;
        env.version = 2;
        let mut forged = MAGIC.to_vec();
        forged.extend(bincode::serde::encode_to_vec(&env, cfg()).unwrap());
        assert_eq!(
            Envelope::open_response(&forged).unwrap_err(),
            ProtocolError::Version(2)
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        assert!(matches!(
            Envelope::open_request(&[]),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::open_request(b"PBEN"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::open_request(&vec![0; MAX_FRAME + 1]),
            Err(ProtocolError::TooLarge(_))
        ));
        let mut frame = Envelope::seal_request(&key(1), 1, &Request::GetMembers);
        frame.push(0);
        assert!(matches!(
            Envelope::open_request(&frame),
            Err(ProtocolError::Malformed(_))
        ));
        // a huge claimed payload length is refused without allocating it
        let mut huge = b"PBEN".to_vec();
        huge.extend_from_slice(&1u16.to_le_bytes());
        huge.extend_from_slice(&[0; 32]);
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Envelope::open_request(&huge),
            Err(ProtocolError::Malformed(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
            let mut frame = bytes;
            if magic { frame.splice(0..0, MAGIC); }
            prop_assert!(Envelope::open_request(&frame).is_err());
        }

        #[test]
        fn every_truncation_and_bit_flip_is_refused(cut in any::<prop::sample::Index>(), bit in 0u8..8) {
            let frame = Envelope::seal_request(&key(5), 9, &Request::GetCycle { cycle: CycleId(77) });
            let at = cut.index(frame.len());
            prop_assert!(Envelope::open_request(&frame[..at]).is_err());
            let mut flipped = frame.clone();
            flipped[at] ^= 1 << bit;
            prop_assert!(Envelope::open_request(&flipped).is_err());
        }
    }
}
