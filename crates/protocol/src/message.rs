use pb_glwe::CompactPublicKey;
use pb_hiding::{DropoutCorrection, HiddenBill, HiddenData};
use pb_model::CycleContext;
use pb_przs::IdentityPublic;
use pb_units::{CommunityId, CycleId, MemberId};
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A request to the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Core: join the community (the sender's key must be enrolled for
    /// `member`) with the member's PRZS and GLWE public keys.
    Join {
        /// The member the sender speaks for.
        member: MemberId,
        /// X25519 key for PRZS.
        przs: IdentityPublic,
        /// Compact public key for re-randomisation.
        public_key: CompactPublicKey,
    },
    /// Any enrolled node: the current member list.
    GetMembers,
    /// Operator: a cycle's context.
    PutContext(CycleContext),
    /// Core: a cycle's context, members and dropouts.
    GetCycle {
        /// The cycle.
        cycle: CycleId,
    },
    /// Core: the household's hidden data for a cycle.
    Submit(HiddenData),
    /// Core: a dropout correction.
    Correct(DropoutCorrection),
    /// Core: the household's hidden bill, once computed.
    GetBill {
        /// The cycle.
        cycle: CycleId,
    },
    /// Operator: where the cycles stand ([`crate::StatusReport`]): one
    /// cycle with its members by node id, or the latest cycles.
    Status {
        /// The cycle, or `None` for the latest ones.
        cycle: Option<CycleId>,
    },
}

impl Request {
    /// Consistency of the content beyond what decoding checks.
    pub fn check_shape(&self) -> Result<(), &'static str> {
        match self {
            Request::Join { public_key, .. } if !public_key.0.is_well_formed() => {
                Err("malformed public key")
            }
            Request::Submit(d) => d.check_shape(),
            Request::Correct(c)
                if c.vectors.len() != 3
                    || c.vectors.iter().any(|v| v.len() != c.vectors[0].len()) =>
            {
                Err("correction vectors of unequal lengths")
            }
            _ => Ok(()),
        }
    }
}

/// One member as published by the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The member.
    pub member: MemberId,
    /// Its core's signing identity.
    pub node: NodeId,
    /// Its X25519 key for PRZS.
    pub przs: IdentityPublic,
}

/// The community's member list, signed by the edge as part of its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    /// The community.
    pub community: CommunityId,
    /// Members, sorted by id.
    pub members: Vec<MemberEntry>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame did not decode, or was too large.
    BadFrame,
    /// The signature did not verify.
    BadSignature,
    /// Signed for another edge or another community.
    Misdirected,
    /// The counter was not fresh.
    Replay,
    /// The sender is not enrolled.
    NotEnrolled,
    /// The sender may not make this request.
    Forbidden,
    /// No such cycle.
    UnknownCycle,
    /// The request was understood and refused (see the message).
    Rejected,
    /// The result is not available yet.
    NotReady,
    /// Too many requests from this sender.
    RateLimited,
    /// Already done (e.g. a second submission for the cycle); nothing changed.
    AlreadyDone,
    /// The server failed.
    Internal,
}

/// The edge's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// The member list.
    Members(MemberList),
    /// A cycle's context, members and dropped members.
    Cycle {
        /// Context.
        context: CycleContext,
        /// Members of the cycle with their PRZS keys, frozen when the
        /// context was recorded.
        members: Vec<MemberEntry>,
        /// Members declared dropped out.
        dropped: Vec<MemberId>,
        /// Submissions or corrections still awaited (0 once billed).
        waiting: usize,
        /// Whether the bills are computed.
        billed: bool,
    },
    /// A hidden bill.
    Bill(HiddenBill),
    /// Not yet: this many members' data or corrections are missing.
    Pending {
        /// Members waited for.
        waiting: usize,
        /// Members were declared dropped out: survivors must send their
        /// dropout corrections (the list comes with `GetCycle`).
        dropouts: bool,
    },
    /// Refused; nothing changed.
    Error {
        /// Class of error.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
    /// The operator's view of the cycles.
    Status(crate::StatusReport),
}
