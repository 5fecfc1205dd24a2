//! One open cycle's SecAgg+ rounds at the edge, as explicit, persisted
//! states: every member message the cycle's [`Rounds`] accepts and every
//! round closing is a [`RoundEvent`], stored with the request's counter
//! and what the message carries (shares, masked vectors, answers: in the
//! cycle's tables, keyed by who reads them), then applied. Replaying a
//! cycle's stored events rebuilds its state after a restart (the store is
//! the truth; memory holds a few hundred bytes per member).
//!
//! A round closes when every member it waits for is in, or when its time
//! is up: the advertise round `dropout_deadline_secs` after the context
//! was recorded, the share and mask rounds `round_secs` after they
//! opened. The confirm and reveal rounds have no closing: the aggregate is
//! unmasked as soon as every secret it needs has its threshold of shares.

use std::time::{Duration, Instant};

use pb_protocol::ErrorCode;
use pb_secagg::rounds::{Progress, Rounds, Step};
use pb_secagg::{Refusal, Round};
use serde::{Deserialize, Serialize};

use crate::service;

/// Something that moved a cycle's rounds on: a member's checked message
/// (its [`Step`]: digests, not the shares, vectors or answers, which the
/// store keeps in the cycle's tables) or a round's closing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundEvent {
    /// A member's message, as the rounds recorded it.
    Step(Step),
    /// The advertise round closed (unix seconds).
    CloseAdvertise {
        /// When.
        at: u64,
    },
    /// The share round closed.
    CloseShare {
        /// When.
        at: u64,
    },
    /// The mask round closed: the survivor set is announced.
    CloseMask {
        /// When.
        at: u64,
    },
}

impl RoundEvent {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            RoundEvent::Step(Step::Advertise(_)) => "advertise",
            RoundEvent::CloseAdvertise { .. } => "close-advertise",
            RoundEvent::Step(Step::Share { .. }) => "share",
            RoundEvent::CloseShare { .. } => "close-share",
            RoundEvent::Step(Step::Submit { .. }) => "submit",
            RoundEvent::CloseMask { .. } => "close-mask",
            RoundEvent::Step(Step::Confirm(_)) => "confirm",
            RoundEvent::Step(Step::Reveal { .. }) => "reveal",
        }
    }
}

/// A cycle whose aggregate is not unmasked yet.
#[derive(Debug)]
pub struct OpenCycle {
    /// Its SecAgg+ state (the shares, inputs and answers are in the store).
    pub server: Rounds,
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
    /// The unmasking, while it runs on a thread of its own.
    pub unmasking: Option<std::thread::JoinHandle<Result<Vec<Vec<u64>>, service::UnmaskError>>>,
    /// Its billing, once the aggregate is unmasked.
    pub billing: Option<crate::service::Billing>,
    /// Where the cycle stood when last computed ([`OpenCycle::refresh`]):
    /// answers and round closings read this copy, so that a request never
    /// costs a pass over the cycle (`O(n k)` in the reveal round).
    progress: Progress,
    /// `events` at that computation, when it was made and what it took.
    computed: Option<(u64, Instant, Duration)>,
}

impl OpenCycle {
    /// A cycle in its advertise round.
    pub fn new(server: Rounds, posted_at: u64) -> OpenCycle {
        let mut open = OpenCycle {
            server,
            events: 0,
            posted_at,
            round_since: posted_at,
            stuck: None,
            opened: vec![(Round::Advertise, posted_at)],
            unmasking: None,
            billing: None,
            progress: Progress {
                round: Round::Advertise,
                waiting: Vec::new(),
            },
            computed: None,
        };
        open.refresh();
        open
    }

    /// Recomputes where the cycle stands if events arrived since the last
    /// computation, at most every five times what the last one took (a
    /// pass over a large cycle's shares is not repeated on every tick).
    pub fn refresh(&mut self) {
        if let Some((events, at, took)) = self.computed {
            if events == self.events || at.elapsed() < took * 5 {
                return;
            }
        }
        let start = Instant::now();
        self.progress = match self.server.round() {
            // In the confirm and reveal rounds the exact list (survivors
            // whose answers would complete a short secret) is a pass over
            // every share: report the survivors that have not revealed.
            Round::Confirm | Round::Reveal => Progress {
                round: self.server.round(),
                waiting: if self.server.complete() {
                    Vec::new()
                } else {
                    self.server.not_revealed()
                },
            },
            _ => self.server.progress(),
        };
        self.computed = Some((self.events, Instant::now(), start.elapsed()));
    }

    /// Whether the last computation saw every event applied.
    fn fresh(&self) -> bool {
        self.computed
            .is_some_and(|(events, _, _)| events == self.events)
    }

    /// Applies one event (a step the rounds checked, or a stored one
    /// replayed); refused, nothing changed.
    pub fn apply(&mut self, event: RoundEvent) -> Result<(), Refusal> {
        let closed = |this: &mut OpenCycle, at: u64| {
            this.round_since = at;
            this.opened.push((this.server.round(), at));
        };
        match event {
            RoundEvent::Step(step) => {
                let first = self.server.round() == Round::Confirm;
                self.server.apply(step)?;
                if first && self.server.round() == Round::Reveal {
                    let now = service::now_secs();
                    self.opened.push((Round::Reveal, now));
                }
            }
            RoundEvent::CloseAdvertise { at } => {
                self.server.close_advertise()?;
                closed(self, at);
            }
            RoundEvent::CloseShare { at } => {
                self.server.close_share()?;
                closed(self, at);
            }
            RoundEvent::CloseMask { at } => {
                self.server.close_mask()?;
                closed(self, at);
            }
        }
        self.events += 1;
        Ok(())
    }

    /// Where the cycle stood at the last [`OpenCycle::refresh`] (the
    /// round is always the current one).
    pub fn progress(&self) -> Progress {
        let mut p = self.progress.clone();
        if p.round != self.server.round() {
            p.round = self.server.round();
        }
        p
    }

    /// Refuses, as not ready yet, a request for `round` before it opened.
    pub fn wait_for(&self, round: Round) -> Result<(), service::Refusal> {
        let now = self.server.round();
        if now < round {
            return Err(service::refuse(
                ErrorCode::NotReady,
                format!(
                    "the cycle is in its {} round; the {} round has not begun",
                    now.name(),
                    round.name()
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
        let all_in =
            self.fresh() && self.progress.round == round && self.progress.waiting.is_empty();
        if now < limit && !all_in {
            return Ok(None);
        }
        Ok(Some(match round {
            Round::Advertise => RoundEvent::CloseAdvertise { at: now },
            Round::Share => RoundEvent::CloseShare { at: now },
            _ => RoundEvent::CloseMask { at: now },
        }))
    }

    /// Whether every secret the unmasking needs has its threshold of
    /// shares (the server keeps count as answers arrive).
    pub fn unmaskable(&self) -> bool {
        self.server.complete()
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
                    expected.name()
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
