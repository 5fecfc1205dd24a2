//! Read-only views of the service's state: the operator's
//! [`Request::Status`](pb_protocol::Request::Status) answer and the figures
//! the metrics exporter reads after each request. Nothing here changes
//! state or the store.

use std::collections::BTreeSet;

use pb_protocol::{
    CycleNodes, CycleProgress, ErrorCode, MemberEntry, NodeId, RoundTime, STATUS_MAX_NODES,
    STATUS_RECENT_CYCLES, StatusReport,
};
use pb_units::{CycleId, MemberId};

use super::{Refusal, Service, now_secs, refuse};
use crate::EdgeError;
use crate::store::{BilledRecord, CycleRecord};

/// What the metrics exporter reads from the service (counts only: no
/// member or node appears here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsView {
    /// Members that have joined.
    pub members: usize,
    /// Cycles with a context that are not billed.
    pub open_cycles: usize,
    /// Cycles billed (by this process or before it).
    pub billed_cycles: usize,
}

fn internal(e: EdgeError) -> Refusal {
    refuse(ErrorCode::Internal, e.to_string())
}

fn ms(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}

fn round(name: &str, millis: u64) -> RoundTime {
    RoundTime {
        round: name.into(),
        millis,
    }
}

impl Service {
    /// The operator's view: one cycle with its members by node id, or the
    /// latest [`STATUS_RECENT_CYCLES`] cycles in counts.
    pub(crate) fn status(&self, cycle: Option<CycleId>) -> Result<StatusReport, Refusal> {
        let now = now_secs();
        let cycles = match cycle {
            Some(c) => {
                let rec = self.cycles.get(&c).ok_or_else(|| {
                    refuse(ErrorCode::UnknownCycle, format!("{c} has no context yet"))
                })?;
                vec![self.progress(rec, now, true)?]
            }
            None => {
                let latest: Vec<&CycleRecord> = self
                    .cycles
                    .values()
                    .rev()
                    .take(STATUS_RECENT_CYCLES)
                    .collect();
                latest
                    .into_iter()
                    .rev()
                    .map(|rec| self.progress(rec, now, false))
                    .collect::<Result<_, _>>()?
            }
        };
        Ok(StatusReport {
            now,
            members: self.members.len(),
            cycles,
        })
    }

    fn progress(
        &self,
        rec: &CycleRecord,
        now: u64,
        with_nodes: bool,
    ) -> Result<CycleProgress, Refusal> {
        let cycle = rec.context.cycle();
        let billed = self.billed.get(&cycle).copied();
        let enrolled: BTreeSet<&MemberId> = rec.members.iter().map(|m| &m.member).collect();
        // Declared dropouts: in memory for open cycles, in the store for
        // billed ones (billed cycles are not restored into memory).
        let dropped: Option<Vec<MemberId>> = match (self.dropped.get(&cycle), billed) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(_)) => self.store.dropped(cycle).map_err(internal)?,
            (None, None) => None,
        };
        let declared = dropped.is_some();
        let dropped: BTreeSet<MemberId> = dropped.unwrap_or_default().into_iter().collect();
        // A billed cycle's submissions are deleted with its billing: every
        // member not dropped had submitted.
        let submitted: BTreeSet<MemberId> = if billed.is_some() {
            enrolled
                .iter()
                .filter(|m| !dropped.contains(**m))
                .map(|m| (*m).clone())
                .collect()
        } else {
            self.store
                .submitted(cycle)
                .map_err(internal)?
                .into_iter()
                .collect()
        };
        let missing: BTreeSet<MemberId> = if billed.is_some() {
            BTreeSet::new()
        } else if declared {
            let corrected: BTreeSet<MemberId> = self
                .store
                .corrected(cycle)
                .map_err(internal)?
                .into_iter()
                .collect();
            submitted.difference(&corrected).cloned().collect()
        } else {
            enrolled
                .iter()
                .filter(|m| !submitted.contains(**m))
                .map(|m| (*m).clone())
                .collect()
        };
        let phase = if billed.is_some() {
            "billed"
        } else if self.stuck.contains(&cycle) {
            "stuck"
        } else if self.billing.is_ready(cycle) {
            "billing"
        } else if declared {
            "correcting"
        } else {
            "collecting"
        };
        let deadline = rec.posted_at.saturating_add(self.config.deadline.as_secs());
        let rounds = rounds(rec.posted_at, deadline, declared, billed, now);
        let nodes = with_nodes.then(|| CycleNodes {
            submitted: nodes_of(&rec.members, &submitted),
            missing: nodes_of(&rec.members, &missing),
            dropped: nodes_of(&rec.members, &dropped),
        });
        Ok(CycleProgress {
            cycle,
            phase: phase.into(),
            posted_at: rec.posted_at,
            deadline,
            billed_at: billed.map(|b| b.at),
            enrolled: enrolled.len(),
            submitted: submitted.len(),
            missing: missing.len(),
            dropped: dropped.len(),
            bills: billed.map_or(0, |b| b.bills),
            rounds,
            nodes,
        })
    }

    /// Counts for the metrics exporter.
    pub fn metrics_view(&self) -> MetricsView {
        MetricsView {
            members: self.members.len(),
            open_cycles: self.cycles.len().saturating_sub(self.billed.len()),
            billed_cycles: self.billed.len(),
        }
    }

    /// Every billed cycle's billing record.
    pub fn billed_cycles(&self) -> impl Iterator<Item = (CycleId, BilledRecord)> + '_ {
        self.billed.iter().map(|(c, b)| (*c, *b))
    }

    /// The compute backend's name (`cpu`, `cuda`).
    pub fn backend_name(&self) -> &'static str {
        self.billing.backend_name()
    }
}

/// The node ids of the members in `set`, sorted, at most
/// [`STATUS_MAX_NODES`] of them.
fn nodes_of(members: &[MemberEntry], set: &BTreeSet<MemberId>) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = members
        .iter()
        .filter(|m| set.contains(&m.member))
        .map(|m| m.node)
        .collect();
    v.sort();
    v.truncate(STATUS_MAX_NODES);
    v
}

/// Time per phase: collecting until the deadline (when dropouts were
/// declared) or until billing started, correcting from the deadline, then
/// billing; the current phase runs up to `now`.
fn rounds(
    posted_at: u64,
    deadline: u64,
    declared: bool,
    billed: Option<BilledRecord>,
    now: u64,
) -> Vec<RoundTime> {
    let posted = ms(posted_at);
    let deadline = ms(deadline);
    let end = match billed {
        Some(b) => ms(b.at).saturating_sub(b.millis),
        None => ms(now),
    };
    let mut out = Vec::new();
    if declared {
        out.push(round("collecting", deadline.saturating_sub(posted)));
        out.push(round("correcting", end.saturating_sub(deadline)));
    } else {
        out.push(round("collecting", end.saturating_sub(posted)));
    }
    if let Some(b) = billed {
        out.push(round("billing", b.millis));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &[RoundTime]) -> Vec<(&str, u64)> {
        r.iter().map(|r| (r.round.as_str(), r.millis)).collect()
    }

    #[test]
    fn node_lists_are_sorted_and_cut_to_fit_a_frame() {
        let members: Vec<MemberEntry> = (0..STATUS_MAX_NODES + 5)
            .map(|i| {
                let mut node = [0u8; 32];
                node[..8].copy_from_slice(&(u64::MAX - i as u64).to_be_bytes());
                MemberEntry {
                    member: MemberId::new(format!("m{i}")).unwrap(),
                    node: NodeId(node),
                    przs: pb_przs::IdentityKey::from_bytes([1; 32]).public(),
                }
            })
            .collect();
        let all: BTreeSet<MemberId> = members.iter().map(|m| m.member.clone()).collect();
        let listed = nodes_of(&members, &all);
        assert_eq!(listed.len(), STATUS_MAX_NODES);
        assert!(listed.windows(2).all(|w| w[0] < w[1]));
        // The smallest ids are kept.
        assert_eq!(listed[0], members[STATUS_MAX_NODES + 4].node);
        let two: BTreeSet<MemberId> = [members[3].member.clone(), members[1].member.clone()].into();
        assert_eq!(
            nodes_of(&members, &two),
            vec![members[3].node, members[1].node]
        );
        assert!(nodes_of(&members, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn rounds_split_the_cycle_at_the_deadline_and_the_billing() {
        // Open, collecting: up to now.
        assert_eq!(
            names(&rounds(100, 1000, false, None, 160)),
            [("collecting", 60_000)]
        );
        // Open past the deadline, correcting.
        assert_eq!(
            names(&rounds(100, 1000, true, None, 1030)),
            [("collecting", 900_000), ("correcting", 30_000)]
        );
        // Billed without dropouts: billing started at 200 s - 1.5 s.
        let b = BilledRecord {
            at: 200,
            millis: 1500,
            bills: 3,
        };
        assert_eq!(
            names(&rounds(100, 1000, false, Some(b), 5000)),
            [("collecting", 98_500), ("billing", 1500)]
        );
        let b = BilledRecord {
            at: 1100,
            millis: 2000,
            bills: 2,
        };
        assert_eq!(
            names(&rounds(100, 1000, true, Some(b), 5000)),
            [
                ("collecting", 900_000),
                ("correcting", 98_000),
                ("billing", 2000)
            ]
        );
        // A clock that went backwards never underflows.
        assert_eq!(
            names(&rounds(100, 1000, false, None, 50)),
            [("collecting", 0)]
        );
    }
}
