//! One open cycle's SecAgg+ rounds at the edge, as explicit, persisted
//! states: every member message and every round closing is a
//! [`RoundEvent`], applied to the cycle's [`Server`] only if the server
//! accepts it and appended to the store with the request's counter.
//! Replaying a cycle's stored events rebuilds its state after a restart
//! (the store is the truth; memory is a cache of it).
//!
//! A round closes when every member it waits for is in, or when its time
//! is up: the advertise round `dropout_deadline_secs` after the context
//! was recorded, the share and mask rounds `round_secs` after they
//! opened. The confirm and reveal rounds have no closing: the aggregate is
//! unmasked as soon as every secret it needs has its threshold of shares.

use pb_hiding::HiddenData;
use pb_protocol::ErrorCode;
use pb_secagg::client::MaskedInput;
use pb_secagg::server::{Progress, Server};
use pb_secagg::{Confirmation, EncryptedShare, Refusal, Reveal, Round, SignedBundle};
use pb_units::MemberId;
use serde::{Deserialize, Serialize};

use crate::service;

/// Something that moved a cycle's rounds on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundEvent {
    /// A member's signed key bundle.
    Advertise(Box<SignedBundle>),
    /// The advertise round closed (unix seconds).
    CloseAdvertise {
        /// When.
        at: u64,
    },
    /// A member's encrypted shares.
    Share {
        /// The sender.
        from: MemberId,
        /// The shares.
        shares: Vec<EncryptedShare>,
    },
    /// The share round closed.
    CloseShare {
        /// When.
        at: u64,
    },
    /// A member's masked input: its vectors are the stored submission's
    /// masked contributions.
    Submit {
        /// The member.
        member: MemberId,
        /// Its partners.
        partners: Vec<MemberId>,
    },
    /// The mask round closed: the survivor set is announced.
    CloseMask {
        /// When.
        at: u64,
    },
    /// A survivor's signature over the survivor set.
    Confirm(Confirmation),
    /// A survivor's answers.
    Reveal(Reveal),
}

impl RoundEvent {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            RoundEvent::Advertise(_) => "advertise",
            RoundEvent::CloseAdvertise { .. } => "close-advertise",
            RoundEvent::Share { .. } => "share",
            RoundEvent::CloseShare { .. } => "close-share",
            RoundEvent::Submit { .. } => "submit",
            RoundEvent::CloseMask { .. } => "close-mask",
            RoundEvent::Confirm(_) => "confirm",
            RoundEvent::Reveal(_) => "reveal",
        }
    }
}

/// A cycle whose aggregate is not unmasked yet.
#[derive(Debug)]
pub struct OpenCycle {
    /// Its SecAgg+ state.
    pub server: Server,
    /// Events applied (the next event's sequence number).
    pub events: u64,
    /// When the context was recorded.
    pub posted_at: u64,
    /// When the current round opened.
    pub round_since: u64,
    /// Why the cycle cannot go on, if it cannot.
    pub stuck: Option<String>,
    /// When each round opened (unix seconds), in order.
    pub opened: Vec<(Round, u64)>,
    /// Its billing, once the aggregate is unmasked.
    pub billing: Option<crate::service::Billing>,
    /// `events` when unmasking was last found impossible.
    checked_at: Option<u64>,
}

impl OpenCycle {
    /// A cycle in its advertise round.
    pub fn new(server: Server, posted_at: u64) -> OpenCycle {
        OpenCycle {
            server,
            events: 0,
            posted_at,
            round_since: posted_at,
            stuck: None,
            opened: vec![(Round::Advertise, posted_at)],
            billing: None,
            checked_at: None,
        }
    }

    /// Applies one event; refused, nothing changed. A submission's event
    /// needs its data.
    pub fn apply(&mut self, event: RoundEvent, data: Option<&HiddenData>) -> Result<(), Refusal> {
        let closed = |this: &mut OpenCycle, at: u64| {
            this.round_since = at;
            this.opened.push((this.server.round(), at));
        };
        match event {
            RoundEvent::Advertise(b) => self.server.advertise(*b)?,
            RoundEvent::CloseAdvertise { at } => {
                self.server.close_advertise()?;
                closed(self, at);
            }
            RoundEvent::Share { from, shares } => self.server.share(&from, shares)?,
            RoundEvent::CloseShare { at } => {
                self.server.close_share()?;
                closed(self, at);
            }
            RoundEvent::Submit { member, partners } => {
                let data = data.ok_or(Refusal::BadInput(member.clone(), "no data"))?;
                if data.member != member {
                    return Err(Refusal::BadInput(member, "data of another member"));
                }
                self.server.submit(MaskedInput {
                    member,
                    partners,
                    vectors: data.masked.clone(),
                })?;
            }
            RoundEvent::CloseMask { at } => {
                self.server.close_mask()?;
                closed(self, at);
            }
            RoundEvent::Confirm(c) => self.server.confirm(c)?,
            RoundEvent::Reveal(r) => {
                let first = self.server.round() == Round::Confirm;
                self.server.reveal(r)?;
                if first && self.server.round() == Round::Reveal {
                    let now = service::now_secs();
                    self.opened.push((Round::Reveal, now));
                }
            }
        }
        self.events += 1;
        Ok(())
    }

    /// Where the cycle stands.
    pub fn progress(&self) -> Progress {
        self.server.progress()
    }

    /// Refuses, as not ready yet, a request for `round` before it opened.
    pub fn wait_for(&self, round: Round) -> Result<(), service::Refusal> {
        let now = self.server.round();
        if now < round {
            return Err(service::refuse(
                ErrorCode::NotReady,
                format!(
                    "the cycle is in its {} round; the {} round has not begun",
                    round_name(now),
                    round_name(round)
                ),
            ));
        }
        Ok(())
    }

    /// The closing due now, if any: when every member the round waits for
    /// is in, or its time is up.
    pub fn due(
        &self,
        now: u64,
        deadline: u64,
        round_time: u64,
    ) -> Result<Option<RoundEvent>, Refusal> {
        let round = self.server.round();
        let limit = match round {
            Round::Advertise => self.posted_at.saturating_add(deadline),
            Round::Share | Round::Mask => self.round_since.saturating_add(round_time),
            _ => return Ok(None),
        };
        if now < limit && !self.progress().waiting.is_empty() {
            return Ok(None);
        }
        Ok(Some(match round {
            Round::Advertise => RoundEvent::CloseAdvertise { at: now },
            Round::Share => RoundEvent::CloseShare { at: now },
            _ => RoundEvent::CloseMask { at: now },
        }))
    }

    /// Whether every secret the unmasking needs may have its threshold of
    /// shares (checked again only after new events).
    pub fn unmaskable(&mut self) -> bool {
        if !matches!(self.server.round(), Round::Confirm | Round::Reveal) {
            return false;
        }
        if self.checked_at == Some(self.events) {
            return false;
        }
        if self.progress().waiting.is_empty() {
            return true;
        }
        self.checked_at = Some(self.events);
        false
    }
}

/// The round's name for people.
pub fn round_name(r: Round) -> &'static str {
    match r {
        Round::Advertise => "advertise",
        Round::Share => "share",
        Round::Mask => "mask",
        Round::Confirm => "confirm",
        Round::Reveal => "reveal",
        Round::Done => "done",
    }
}

/// A SecAgg+ refusal as the edge answers it.
pub fn secagg_refusal(e: Refusal) -> service::Refusal {
    let code = match &e {
        Refusal::WrongRound { expected, actual } if actual < expected => ErrorCode::NotReady,
        Refusal::WrongRound { expected, .. } => {
            return service::refuse(
                ErrorCode::Rejected,
                format!(
                    "the {} round of this cycle is closed: this member takes no further part in it",
                    round_name(*expected)
                ),
            );
        }
        Refusal::NotInRoster(_) | Refusal::NotANeighbour(..) => ErrorCode::Forbidden,
        Refusal::NotEnoughShares { .. } | Refusal::TooFewConfirmations { .. } => {
            ErrorCode::NotReady
        }
        _ => ErrorCode::Rejected,
    };
    service::refuse(code, e.to_string())
}
