//! Secure aggregation for the community's per-slot aggregates, against a
//! dishonest edge (design section 4): SecAgg+ (Bell et al., CCS 2020) on the
//! protocol of Bonawitz et al. (CCS 2017), adapted to our vectors over
//! `Z_2^64`.
//!
//! * [`roster`]: the member list, signed by the operator's enrolment key
//!   (a role distinct from the edge's key), with a fingerprint households
//!   can compare out of band.
//! * [`params`]: the graph degree `k` and share threshold `t` from the
//!   community's size and the tolerated dropout and collusion fractions.
//! * [`graph`]: each member's `k` neighbours, a ring over a permutation
//!   derived from the roster's fingerprint and the cycle, which neither the
//!   edge nor a member can steer.
//! * [`keys`]: per-cycle secrets (share-encryption key, mask key, self-mask
//!   seed) and the key bundle each member signs with its identity.
//! * [`shares`]: Shamir shares (`vsss-rs`, over the ed25519 scalar field)
//!   of the self-mask seed and the mask key, encrypted to each neighbour
//!   (X25519, HKDF, ChaCha20-Poly1305).
//! * [`mask`]: the pairwise and self masks (ChaCha20 keystreams).
//! * [`client`] and [`rounds`]: the rounds as explicit states (advertise,
//!   share, mask, confirm, reveal), the member's serialisable, the edge's
//!   rebuilt from the small [`Step`]s it records; each call either
//!   advances its state or returns a typed [`Refusal`] and changes
//!   nothing. [`rounds`] keeps no share, input or answer: the edge stores
//!   them ([`server`] keeps them in memory for one-process runs), and
//!   [`unmask`] streams them back in batches.

#![warn(missing_docs)]

pub mod client;
pub mod graph;
pub mod keys;
pub mod mask;
pub mod params;
pub mod roster;
pub mod rounds;
pub mod server;
pub mod shares;
pub mod unmask;

pub use client::Client;
pub use graph::Graph;
pub use keys::{KeyBundle, SignedBundle};
pub use params::{GraphParams, Tolerance};
pub use roster::{Roster, RosterEntry, SignedRoster};
pub use rounds::{Rounds, Step};
pub use server::Server;
pub use shares::{Answer, EncryptedShare, Reveal, Secret};
pub use unmask::UnmaskJob;

use pb_units::MemberId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The rounds of a cycle, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Round {
    /// Members publish their signed per-cycle key bundles.
    Advertise,
    /// Members send encrypted shares to their neighbours.
    Share,
    /// Members send their masked vectors.
    Mask,
    /// Members sign the survivor set.
    Confirm,
    /// Members reveal, for each neighbour, one share.
    Reveal,
    /// The aggregate is unmasked.
    Done,
}

impl Round {
    /// The round's name for people (`advertise`, `share`, `mask`,
    /// `confirm`, `reveal`, `done`).
    pub fn name(self) -> &'static str {
        match self {
            Round::Advertise => "advertise",
            Round::Share => "share",
            Round::Mask => "mask",
            Round::Confirm => "confirm",
            Round::Reveal => "reveal",
            Round::Done => "done",
        }
    }

    /// `Ok` when this is `round`, else the refusal of a message for it.
    pub fn require(self, round: Round) -> Result<(), Refusal> {
        if self != round {
            return Err(Refusal::WrongRound {
                expected: round,
                actual: self,
            });
        }
        Ok(())
    }
}

/// Why a message was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The message belongs to another round.
    #[error("this is the {actual:?} round, not {expected:?}")]
    WrongRound {
        /// The round the message belongs to.
        expected: Round,
        /// The current round.
        actual: Round,
    },
    /// The message is for another community, cycle or roster.
    #[error("message for another {0}")]
    OtherContext(&'static str),
    /// The roster's signature does not verify with the pinned operator key.
    #[error("the member list is not signed by the operator's enrolment key")]
    RosterSignature,
    /// The roster is malformed (unsorted, duplicate member or identity).
    #[error("the member list is malformed: {0}")]
    RosterMalformed(String),
    /// Fewer members than the minimum.
    #[error("the member list has {have} members, at least {need} are required")]
    TooFewMembers {
        /// Members present.
        have: usize,
        /// The minimum.
        need: usize,
    },
    /// The member is not in the roster.
    #[error("{0} is not in the signed member list")]
    NotInRoster(MemberId),
    /// A signature does not verify with the member's enrolled identity.
    #[error("bad signature of {0}")]
    BadSignature(MemberId),
    /// A public key is a low-order point or otherwise unusable.
    #[error("{0} published a weak key")]
    WeakKey(MemberId),
    /// The member is not a neighbour in this cycle's graph.
    #[error("{0} is not a neighbour of {1} in this cycle")]
    NotANeighbour(MemberId, MemberId),
    /// The same member appears twice, or sent a second, different message.
    #[error("{0} appears twice or changed its message")]
    Duplicate(MemberId),
    /// Too few neighbours took part to hide this member.
    #[error("only {have} neighbours took part, at least {need} are needed")]
    TooFewNeighbours {
        /// Neighbours present.
        have: usize,
        /// The minimum.
        need: usize,
    },
    /// A share did not decrypt or decode.
    #[error("share from {0} is malformed or not for this member")]
    BadShare(MemberId),
    /// The masked vectors have the wrong shape or partners.
    #[error("masked input of {0} is malformed: {1}")]
    BadInput(MemberId, &'static str),
    /// The member did not take part in an earlier round it needed to.
    #[error("{0} did not take part in the {1:?} round")]
    Absent(MemberId, Round),
    /// The survivor set does not contain this member, or is too small.
    #[error("survivor set refused: {0}")]
    BadSurvivorSet(&'static str),
    /// The member already signed a different survivor set for this cycle.
    #[error("a different survivor set was already signed for this cycle")]
    Equivocation,
    /// Too few of the member's neighbours confirmed the same survivor set.
    #[error("{have} neighbours confirmed this survivor set, at least {need} must")]
    TooFewConfirmations {
        /// Valid confirmations.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// An answer about a member the sender holds no share of, or of the
    /// wrong kind for the survivor set.
    #[error("{0} answered wrongly about {1}")]
    BadAnswer(MemberId, MemberId),
    /// Secrets cannot be recovered yet.
    #[error("waiting for {} member(s) to reveal shares: {}", waiting.len(), list(waiting))]
    NotEnoughShares {
        /// Members whose answers would complete the recovery.
        waiting: Vec<MemberId>,
    },
    /// Recovered secrets do not match their public commitments: a member
    /// sent wrong shares.
    #[error("recovered secret of {0} does not match its commitment")]
    BadRecovery(MemberId),
    /// Randomness was unavailable.
    #[error("no randomness available")]
    NoEntropy,
}

fn list(members: &[MemberId]) -> String {
    let shown: Vec<&str> = members.iter().take(20).map(MemberId::as_str).collect();
    if members.len() > 20 {
        format!("{} and {} more", shown.join(", "), members.len() - 20)
    } else {
        shown.join(", ")
    }
}

/// SHA-256 over length-prefixed parts, with a domain label first.
pub(crate) fn hash(label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in std::iter::once(label.as_bytes()).chain(parts.iter().copied()) {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Where a message belongs: community, cycle and roster fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Session {
    /// The community.
    pub community: String,
    /// The cycle.
    pub cycle: u64,
    /// Fingerprint of the signed roster the cycle uses.
    pub roster: [u8; 32],
}

impl Session {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.community.len() + 48);
        v.extend_from_slice(&(self.community.len() as u64).to_le_bytes());
        v.extend_from_slice(self.community.as_bytes());
        v.extend_from_slice(&self.cycle.to_le_bytes());
        v.extend_from_slice(&self.roster);
        v
    }
}

/// The survivor set the edge announces: members whose masked input it
/// holds and sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorSet {
    /// Where it belongs.
    pub session: Session,
    /// The survivors, sorted.
    pub members: Vec<MemberId>,
}

impl SurvivorSet {
    /// The hash members sign.
    pub fn hash(&self) -> [u8; 32] {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.members.len() + 1);
        let session = self.session.bytes();
        parts.push(&session);
        for m in &self.members {
            parts.push(m.as_str().as_bytes());
        }
        hash("pbill/secagg/survivors/v1", &parts)
    }

    /// Whether `m` survived.
    pub fn contains(&self, m: &MemberId) -> bool {
        self.members.binary_search(m).is_ok()
    }

    /// The set checked against the roster of its session (sorted, no
    /// member twice, every survivor on `roster`), with its hash: what a
    /// member signs ([`Client::confirm_checked`]). `O(n)`, once per set.
    pub fn checked(&self, roster: &Roster) -> Result<CheckedSet, Refusal> {
        if roster.fingerprint() != self.session.roster {
            return Err(Refusal::BadSurvivorSet(
                "a survivor is not in the member list",
            ));
        }
        if self.members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Refusal::BadSurvivorSet("not sorted, or a member twice"));
        }
        if self.members.iter().any(|m| roster.entry(m).is_none()) {
            return Err(Refusal::BadSurvivorSet(
                "a survivor is not in the member list",
            ));
        }
        Ok(CheckedSet {
            hash: self.hash(),
            set: self.clone(),
        })
    }

    /// The set as it travels: one bit per member of `roster`, in the
    /// roster's order. Refuses a survivor that is not on the roster.
    pub fn to_bits(&self, roster: &Roster) -> Result<SurvivorBits, Refusal> {
        let n = roster.members.len();
        let mut bits = vec![0u8; n.div_ceil(8)];
        for m in &self.members {
            let i = roster
                .members
                .binary_search_by(|e| e.member.cmp(m))
                .map_err(|_| Refusal::NotInRoster(m.clone()))?;
            bits[i / 8] |= 1 << (i % 8);
        }
        Ok(SurvivorBits {
            session: self.session.clone(),
            members: n as u32,
            bits,
        })
    }
}

/// A [`SurvivorSet`] as the edge sends it: one bit per member of the
/// cycle's signed roster, in the roster's (sorted) order, so that a
/// core's download is `n / 8` bytes (12.5 KB at 100,000 members) instead
/// of every survivor's id. Only a holder of the roster can read it
/// ([`SurvivorBits::expand`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorBits {
    /// Where it belongs.
    pub session: Session,
    /// The roster's length.
    pub members: u32,
    /// Bit `i % 8` of byte `i / 8` is set when the roster's `i`-th member
    /// survived.
    pub bits: Vec<u8>,
}

impl SurvivorBits {
    /// The set over `roster`; refuses bits for another roster length, a
    /// bit set past its end, or a roster of another session.
    pub fn expand(&self, roster: &Roster) -> Result<SurvivorSet, Refusal> {
        let n = roster.members.len();
        if roster.fingerprint() != self.session.roster {
            return Err(Refusal::OtherContext("member list"));
        }
        if self.members as usize != n || self.bits.len() != n.div_ceil(8) {
            return Err(Refusal::BadSurvivorSet(
                "its length is not the member list's",
            ));
        }
        if n % 8 != 0 && self.bits.last().is_some_and(|b| b >> (n % 8) != 0) {
            return Err(Refusal::BadSurvivorSet("a bit past the member list's end"));
        }
        let members = roster
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| self.bits[i / 8] & (1 << (i % 8)) != 0)
            .map(|(_, e)| e.member.clone())
            .collect();
        Ok(SurvivorSet {
            session: self.session.clone(),
            members,
        })
    }

    /// How many survived.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// [`SurvivorBits::expand`], checked and hashed once
    /// ([`SurvivorSet::checked`]).
    pub fn checked(&self, roster: &Roster) -> Result<CheckedSet, Refusal> {
        let set = self.expand(roster)?;
        Ok(CheckedSet {
            hash: set.hash(),
            set,
        })
    }
}

/// A survivor set checked against its session's roster, with its hash
/// (computed once: a set of every survivor is `O(n)` to check and hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSet {
    set: SurvivorSet,
    hash: [u8; 32],
}

impl CheckedSet {
    /// The set.
    pub fn set(&self) -> &SurvivorSet {
        &self.set
    }
    /// Its hash (what members sign).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

/// A member's signature over a survivor set's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The signer.
    pub member: MemberId,
    /// The set's hash.
    pub set: [u8; 32],
    /// Ed25519 signature by the member's identity.
    pub signature: Vec<u8>,
}

impl Confirmation {
    pub(crate) fn message(set: &[u8; 32]) -> Vec<u8> {
        let mut m = b"pbill/secagg/confirm/v1".to_vec();
        m.extend_from_slice(set);
        m
    }
}
