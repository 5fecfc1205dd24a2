//! The operator's view of the cycles: the answer to
//! [`crate::Request::Status`].
//!
//! Phases and rounds are named by strings, not an enum, so that the edge
//! can add protocol rounds (e.g. SecAgg+ `advertise`, `share`, `mask`,
//! `confirm`, `reveal`, `billing`, `billed`) without a wire change; an
//! operator's tool prints what it gets.

use pb_units::CycleId;
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Most cycles in one answer without a cycle number (the latest ones).
pub const STATUS_RECENT_CYCLES: usize = 20;

/// Most node ids in each list of [`CycleNodes`], so that the answer stays
/// within a frame however large the community (3 lists of 8,192 ids of 32
/// bytes are 768 KiB); the counts in [`CycleProgress`] are always exact.
pub const STATUS_MAX_NODES: usize = 8192;

/// The edge's state as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The edge's clock when it answered, Unix seconds.
    pub now: u64,
    /// Members that have joined the community.
    pub members: usize,
    /// Cycles known to the edge in this answer, oldest first: one when a
    /// cycle was asked for, else the latest [`STATUS_RECENT_CYCLES`].
    pub cycles: Vec<CycleProgress>,
}

/// Where one cycle stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleProgress {
    /// The cycle.
    pub cycle: CycleId,
    /// Its phase: the SecAgg+ round (`advertise`, `share`, `mask`,
    /// `confirm`, `reveal`), then `billing n of m`, `billed`, or `stuck`
    /// (cannot go on; see the edge's log).
    pub phase: String,
    /// When the context was recorded, Unix seconds.
    pub posted_at: u64,
    /// When the advertise round closes (members whose core has not
    /// advertised by then take no part), Unix seconds.
    pub deadline: u64,
    /// When the bills were stored, Unix seconds (once billed).
    pub billed_at: Option<u64>,
    /// Members of the cycle (its member list's version).
    pub enrolled: usize,
    /// Members whose data the edge holds.
    pub submitted: usize,
    /// Members the current round still waits for (in the confirm and
    /// reveal rounds: survivors that have not revealed).
    pub missing: usize,
    /// Members out of the cycle (not among the survivors once the mask
    /// round closed; without a bill once billed).
    pub dropped: usize,
    /// Bills computed (once billed).
    pub bills: usize,
    /// Time taken by each phase so far, in order (the current one up to
    /// `now`).
    pub rounds: Vec<RoundTime>,
    /// Who, by node id: only when one cycle was asked for.
    pub nodes: Option<CycleNodes>,
}

/// Time spent in one phase or round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundTime {
    /// Its name (as in [`CycleProgress::phase`]).
    pub round: String,
    /// Milliseconds (phases measured by the edge's clock in seconds are
    /// whole seconds).
    pub millis: u64,
}

/// The members of a cycle by node id (the operator enrolled them, so these
/// are no news to it), each list sorted and cut at [`STATUS_MAX_NODES`]
/// (a list shorter than its count in [`CycleProgress`] was cut).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleNodes {
    /// Members whose data the edge holds.
    pub submitted: Vec<NodeId>,
    /// Members the current phase waits for (see [`CycleProgress::missing`]).
    pub missing: Vec<NodeId>,
    /// Members out of the cycle (not among the survivors once the mask
    /// round closed; without a bill once billed).
    pub dropped: Vec<NodeId>,
}
