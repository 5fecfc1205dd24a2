//! What travels between the billing authority (edge), the households'
//! cores and the operator (design section 7).
//!
//! Every message is a [`Request`] or a [`Response`] (serde enums, bincode 2)
//! inside a signed [`Envelope`]:
//! `{version, sender, counter, payload, Ed25519 signature}`. The signature
//! covers a domain-separation tag, the version, the sender's key, the
//! counter and the payload, so nothing unsigned is ever trusted. Requests
//! carry a per-sender counter that must grow ([`ReplayGuard`]); a response
//! repeats its request's counter, which binds it to that request.

#![warn(missing_docs)]

mod envelope;
mod identity;
mod message;
mod replay;
mod rotation;
mod status;

pub use envelope::{
    Audience, Binding, Envelope, MAX_COMMUNITY, MAX_FRAME, PROTOCOL_VERSION, ProtocolError,
    RequestHash,
};
pub use identity::{KeyFileError, NodeId, NodeKey, x25519_key_is_usable};
pub use message::{ErrorCode, MemberEntry, MemberList, ROSTER_PAGE, Request, Response, RosterPage};
pub use replay::{FRESHNESS_WINDOW, Replay, ReplayGuard, clock_counter};
pub use rotation::{ROTATION_PROOF_LEN, rotation_proof, verify_rotation};
pub use status::{
    CycleNodes, CycleProgress, RoundTime, STATUS_MAX_NODES, STATUS_RECENT_CYCLES, StatusReport,
};
