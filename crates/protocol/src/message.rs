use pb_glwe::CompactPublicKey;
use pb_hiding::{HiddenBill, HiddenData};
use pb_model::CycleContext;
use pb_przs::IdentityPublic;
use pb_secagg::{Confirmation, EncryptedShare, Reveal, Round, SignedBundle, SurvivorBits};
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
    /// Core: a cycle's context, its member list version and its round.
    GetCycle {
        /// The cycle.
        cycle: CycleId,
    },
    /// Core, mask round: the household's hidden data, whose aggregate
    /// contributions (`HiddenData::masked`) are masked by SecAgg+ with the
    /// self mask and the pairwise masks of `partners`.
    Submit {
        /// The hidden data.
        data: HiddenData,
        /// The neighbours the contributions are masked with (sorted).
        partners: Vec<MemberId>,
    },
    /// Core: the household's hidden bill, once computed.
    GetBill {
        /// The cycle.
        cycle: CycleId,
    },
    /// Operator: a new version of the member list, signed by the
    /// operator's enrolment key (sent in pages: the edge assembles them
    /// and checks the signature once the last page is in).
    PutRoster(RosterPage),
    /// Any enrolled node: one page of the member list of `version` (the
    /// current one when `None`).
    GetRoster {
        /// The version.
        version: Option<u64>,
        /// The page, from 0.
        page: u32,
    },
    /// Core, advertise round: its signed per-cycle key bundle.
    Advertise {
        /// The cycle.
        cycle: CycleId,
        /// The bundle.
        bundle: SignedBundle,
    },
    /// Core, share round: the bundles of its neighbours that advertised.
    GetBundles {
        /// The cycle.
        cycle: CycleId,
    },
    /// Core, share round: its encrypted shares, one per holder.
    Share {
        /// The cycle.
        cycle: CycleId,
        /// The shares.
        shares: Vec<EncryptedShare>,
    },
    /// Core, mask round: the shares its neighbours sent it.
    GetShares {
        /// The cycle.
        cycle: CycleId,
    },
    /// Core, confirm round: the survivor set the edge announced.
    GetSurvivors {
        /// The cycle.
        cycle: CycleId,
    },
    /// Core, confirm round: its signature over the survivor set.
    Confirm {
        /// The cycle.
        cycle: CycleId,
        /// The signature.
        confirmation: Confirmation,
    },
    /// Core, reveal round: its neighbours' confirmations.
    GetConfirmations {
        /// The cycle.
        cycle: CycleId,
    },
    /// Core, reveal round: one share per neighbour it holds shares of.
    Reveal {
        /// The cycle.
        cycle: CycleId,
        /// The answers.
        reveal: Reveal,
    },
    /// Operator: where the cycles stand ([`crate::StatusReport`]): one
    /// cycle with its members by node id, or the latest cycles.
    Status {
        /// The cycle, or `None` for the latest ones.
        cycle: Option<CycleId>,
    },
    /// Core, between cycles: replace this member's node key by
    /// `new_node`. The envelope is signed by the member's current
    /// (enrolled) key, which asks for the change; `proof` is the new key's
    /// signature over the rotation ([`crate::rotation_proof`]), which shows
    /// that the sender holds it. Once the edge accepts, the old key is
    /// refused everywhere and the new one speaks for the member.
    ///
    /// Appended last, so the other requests keep their encoding: an edge
    /// that predates it refuses it as a malformed frame.
    RotateKey {
        /// The member's next node id.
        new_node: NodeId,
        /// The new key's signature over the rotation
        /// ([`crate::ROTATION_PROOF_LEN`] bytes).
        proof: Vec<u8>,
    },
}

/// Members per page of the member list (each entry is a member id of at
/// most 64 bytes and a 32-byte key: a page stays far below a frame).
pub const ROSTER_PAGE: usize = 5_000;

/// One page of a signed member list: the list's header and signature on
/// every page, its entries `page * ROSTER_PAGE ..` on this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterPage {
    /// The list's header (community, version, tolerances) with this
    /// page's entries only.
    pub roster: pb_secagg::Roster,
    /// The operator's enrolment key.
    pub operator: [u8; 32],
    /// The operator's signature over the whole list's fingerprint.
    pub signature: Vec<u8>,
    /// This page.
    pub page: u32,
    /// Pages in all.
    pub pages: u32,
}

impl RosterPage {
    /// Splits a signed list into pages.
    pub fn split(signed: &pb_secagg::SignedRoster) -> Vec<RosterPage> {
        let entries = &signed.roster.members;
        let pages = entries.len().div_ceil(ROSTER_PAGE).max(1);
        (0..pages)
            .map(|p| {
                let mut roster = signed.roster.clone();
                roster.members = entries
                    .iter()
                    .skip(p * ROSTER_PAGE)
                    .take(ROSTER_PAGE)
                    .cloned()
                    .collect();
                RosterPage {
                    roster,
                    operator: signed.operator,
                    signature: signed.signature.clone(),
                    page: p as u32,
                    pages: pages as u32,
                }
            })
            .collect()
    }

    /// Reassembles pages (in order, all of one list) into the signed list;
    /// `None` when they do not fit together. The signature is checked by
    /// the caller against the key it pins.
    pub fn join(pages: &[RosterPage]) -> Option<pb_secagg::SignedRoster> {
        let first = pages.first()?;
        let n = first.pages as usize;
        if pages.len() != n {
            return None;
        }
        let mut roster = first.roster.clone();
        roster.members.clear();
        for (i, p) in pages.iter().enumerate() {
            let same_header = p.roster.community == first.roster.community
                && p.roster.version == first.roster.version
                && p.roster.dropout_permille == first.roster.dropout_permille
                && p.roster.collusion_permille == first.roster.collusion_permille;
            if p.page as usize != i
                || p.pages != first.pages
                || !same_header
                || p.operator != first.operator
                || p.signature != first.signature
                || p.roster.members.len() > ROSTER_PAGE
            {
                return None;
            }
            roster.members.extend(p.roster.members.iter().cloned());
        }
        Some(pb_secagg::SignedRoster {
            roster,
            operator: first.operator,
            signature: first.signature.clone(),
        })
    }
}

impl Request {
    /// Consistency of the content beyond what decoding checks.
    pub fn check_shape(&self) -> Result<(), &'static str> {
        match self {
            Request::Join { public_key, .. } if !public_key.0.is_well_formed() => {
                Err("malformed public key")
            }
            Request::Submit { data, partners } => {
                if partners.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("partners not sorted, or one twice");
                }
                data.check_shape()
            }
            Request::RotateKey { proof, .. } if proof.len() != crate::ROTATION_PROOF_LEN => {
                Err("rotation proof of the wrong length")
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
    /// A cycle's context, the member list it runs on and its round.
    Cycle {
        /// Context.
        context: CycleContext,
        /// Version of the signed member list the cycle runs on.
        roster_version: u64,
        /// That list's fingerprint.
        roster_fingerprint: [u8; 32],
        /// The SecAgg+ round (`Done` once the aggregate is unmasked).
        round: Round,
        /// Members whose message for this round is awaited.
        waiting: usize,
        /// Whether the bills are computed.
        billed: bool,
    },
    /// A hidden bill.
    Bill(HiddenBill),
    /// Not yet: the cycle is in `round`, waiting for this many members.
    Pending {
        /// The round.
        round: Round,
        /// Members waited for.
        waiting: usize,
    },
    /// One page of the member list.
    Roster(RosterPage),
    /// The key bundles of the asker's neighbours.
    Bundles(Vec<SignedBundle>),
    /// The shares addressed to the asker.
    Shares(Vec<EncryptedShare>),
    /// The survivor set, one bit per member of the cycle's roster (a core
    /// reads it with the roster it holds).
    Survivors(SurvivorBits),
    /// The asker's neighbours' confirmations.
    Confirmations(Vec<Confirmation>),
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
