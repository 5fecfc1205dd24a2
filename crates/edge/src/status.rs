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
        let roster = self.rosters.get(&rec.roster_version);
        let entries: Vec<MemberEntry> = roster
            .map(|r| {
                r.roster
                    .members
                    .iter()
                    .map(|e| MemberEntry {
                        member: e.member.clone(),
                        node: NodeId(e.identity),
                        przs: self
                            .members
                            .get(&e.member)
                            .map(|m| m.1)
                            .unwrap_or(pb_przs::IdentityPublic([0; 32])),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let enrolled: BTreeSet<&MemberId> = entries.iter().map(|m| &m.member).collect();
        let open = self.open.get(&cycle);
        // Who submitted masked data: the stored submissions while the cycle
        // is open (they are deleted with its billing), the bills once billed.
        let submitted: BTreeSet<MemberId> = match billed {
            Some(_) if with_nodes => {
                let mut s = BTreeSet::new();
                for m in &enrolled {
                    if self.store.bill(cycle, m).map_err(internal)?.is_some() {
                        s.insert((*m).clone());
                    }
                }
                s
            }
            Some(_) => BTreeSet::new(),
            None => self
                .store
                .submitted(cycle)
                .map_err(internal)?
                .into_iter()
                .collect(),
        };
        let submitted_count = billed.map_or(submitted.len(), |b| b.bills);
        // Whom the current round waits for.
        let missing: BTreeSet<MemberId> = open
            .map(|o| o.progress().waiting.into_iter().collect())
            .unwrap_or_default();
        // Out of the cycle: not among the survivors once the mask round
        // closed (every member without a bill once billed).
        let survivors = open.and_then(|o| o.server.survivor_set());
        let dropped: BTreeSet<MemberId> = match (billed, survivors) {
            (Some(_), _) if with_nodes => enrolled
                .iter()
                .filter(|m| !submitted.contains(**m))
                .map(|m| (*m).clone())
                .collect(),
            (None, Some(set)) => enrolled
                .iter()
                .filter(|m| !set.contains(m))
                .map(|m| (*m).clone())
                .collect(),
            _ => BTreeSet::new(),
        };
        let dropped_count = match billed {
            Some(b) => enrolled.len().saturating_sub(b.bills),
            None => dropped.len(),
        };
        let phase = match (billed, open) {
            (Some(_), _) => "billed".to_string(),
            (None, Some(o)) if o.stuck.is_some() => "stuck".to_string(),
            (None, Some(o)) if o.billing.is_some() => {
                // "billing n of m": bills stored so far, of the survivors.
                match self.store.billing_progress(cycle).map_err(internal)? {
                    Some(p) => format!("billing {} of {}", p.bills, p.submissions),
                    None => "billing".to_string(),
                }
            }
            (None, Some(o)) => o.server.round().name().to_string(),
            (None, None) => "billing".to_string(),
        };
        let deadline = rec.posted_at.saturating_add(self.config.deadline.as_secs());
        let mut rounds = Vec::new();
        if let Some(o) = open {
            for (i, (r, at)) in o.opened.iter().enumerate() {
                let end = o.opened.get(i + 1).map_or(now, |(_, t)| *t);
                rounds.push(round(r.name(), ms(end.saturating_sub(*at))));
            }
        } else if let Some(b) = billed {
            let start = ms(b.at).saturating_sub(b.millis);
            rounds.push(round("rounds", start.saturating_sub(ms(rec.posted_at))));
            rounds.push(round("billing", b.millis));
        }
        let nodes = with_nodes.then(|| CycleNodes {
            submitted: nodes_of(&entries, &submitted),
            missing: nodes_of(&entries, &missing),
            dropped: nodes_of(&entries, &dropped),
        });
        Ok(CycleProgress {
            cycle,
            phase,
            posted_at: rec.posted_at,
            deadline,
            billed_at: billed.map(|b| b.at),
            enrolled: enrolled.len(),
            submitted: submitted_count,
            missing: missing.len(),
            dropped: dropped_count,
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
        self.backend.name()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
