//! The masking graph of a cycle: a ring over a pseudo-random permutation of
//! the roster, each member joined to the `k / 2` members on either side
//! (the Harary graph `H(k, n)` of Bell et al., relabelled at random). The
//! permutation comes from a hash of the roster's fingerprint, the
//! community and the cycle: the operator signs the roster, the cycle id is
//! the operator's, so the edge cannot steer who neighbours whom, and a
//! member cannot either. From any one member's view its `k` neighbours are
//! a uniformly random `k`-subset of the others. With `n <= k + 1` every
//! member neighbours every other (the complete graph).

use std::collections::BTreeMap;

use pb_units::MemberId;

use crate::params::GraphParams;
use crate::{Session, hash};

/// Who masks with whom in one cycle.
#[derive(Debug, Clone)]
pub struct Graph {
    session: Session,
    params: GraphParams,
    ring: Vec<MemberId>,
    position: BTreeMap<MemberId, usize>,
    half: usize,
    complete: bool,
}

fn seed(session: &Session) -> [u8; 32] {
    hash("pbill/secagg/graph/v1", &[&session.bytes()])
}

fn position(seed: &[u8; 32], m: &MemberId) -> [u8; 32] {
    hash("pbill/secagg/position/v1", &[seed, m.as_str().as_bytes()])
}

/// `a - b` modulo `2^256`, big-endian: the distance from `b` to `a` going
/// round the ring.
fn ring_distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

/// The neighbours of `me` alone, without drawing the whole graph: `O(n)`
/// hashes and two selections instead of a sort and an index (what a core
/// needs each cycle). Equal to `Graph::new(..).neighbours(me)`.
pub fn neighbours_of(
    session: &Session,
    members: &[MemberId],
    params: &GraphParams,
    me: &MemberId,
) -> Vec<MemberId> {
    if !members.contains(me) {
        return Vec::new();
    }
    let complete = params.complete() || members.len() <= params.degree + 1;
    let mut out: Vec<MemberId> = if complete {
        members.iter().filter(|m| *m != me).cloned().collect()
    } else {
        let seed = seed(session);
        let mine = position(&seed, me);
        // Distance going forward round the ring from me to each other member.
        let mut ahead: Vec<([u8; 32], usize)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| *m != me)
            .map(|(i, m)| (ring_distance(&position(&seed, m), &mine), i))
            .collect();
        let half = params.degree / 2;
        let last = ahead.len() - 1;
        let mut picked = Vec::with_capacity(2 * half);
        ahead.select_nth_unstable(half - 1);
        picked.extend(ahead[..half].iter().map(|(_, i)| *i));
        ahead.select_nth_unstable(last + 1 - half);
        picked.extend(ahead[last + 1 - half..].iter().map(|(_, i)| *i));
        picked.into_iter().map(|i| members[i].clone()).collect()
    };
    out.sort();
    out.dedup();
    out
}

impl Graph {
    /// The graph of `session` over `members` (the roster's ids).
    pub fn new(session: &Session, members: &[MemberId], params: &GraphParams) -> Graph {
        let seed = seed(session);
        let mut keyed: Vec<([u8; 32], &MemberId)> =
            members.iter().map(|m| (position(&seed, m), m)).collect();
        keyed.sort();
        let ring: Vec<MemberId> = keyed.into_iter().map(|(_, m)| m.clone()).collect();
        let position = ring
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i))
            .collect();
        Graph {
            session: session.clone(),
            params: *params,
            half: params.degree / 2,
            complete: params.complete() || members.len() <= params.degree + 1,
            ring,
            position,
        }
    }

    /// The session the graph is drawn for.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The parameters it was drawn with.
    pub fn params(&self) -> &GraphParams {
        &self.params
    }

    /// The members in ring order: each neighbours the `half()` members on
    /// either side (unless the graph is complete).
    pub fn ring(&self) -> &[MemberId] {
        &self.ring
    }

    /// Neighbours on each side of a member in [`Graph::ring`].
    pub fn half(&self) -> usize {
        self.half
    }

    /// Whether every member neighbours every other.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The neighbours of `m`, sorted; empty for a non-member.
    pub fn neighbours(&self, m: &MemberId) -> Vec<MemberId> {
        let Some(&p) = self.position.get(m) else {
            return Vec::new();
        };
        let n = self.ring.len();
        let mut out: Vec<MemberId> = if self.complete {
            self.ring.iter().filter(|x| *x != m).cloned().collect()
        } else {
            (1..=self.half)
                .flat_map(|d| {
                    [
                        self.ring[(p + d) % n].clone(),
                        self.ring[(p + n - d) % n].clone(),
                    ]
                })
                .collect()
        };
        out.sort();
        out.dedup();
        out
    }

    /// Whether `a` and `b` neighbour each other.
    pub fn adjacent(&self, a: &MemberId, b: &MemberId) -> bool {
        if a == b {
            return false;
        }
        match (self.position.get(a), self.position.get(b)) {
            (Some(&pa), Some(&pb)) => {
                if self.complete {
                    return true;
                }
                let n = self.ring.len();
                let d = (pa + n - pb) % n;
                d.min(n - d) <= self.half
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Tolerance;

    fn ids(n: usize) -> Vec<MemberId> {
        (0..n)
            .map(|i| MemberId::new(format!("m{i:05}")).unwrap())
            .collect()
    }

    fn session(cycle: u64) -> Session {
        Session {
            community: "c".into(),
            cycle,
            roster: [1; 32],
        }
    }

    #[test]
    fn neighbourhoods_are_symmetric_of_degree_k() {
        let members = ids(2_000);
        let p = GraphParams::choose(members.len(), Tolerance::default()).unwrap();
        let g = Graph::new(&session(1), &members, &p);
        for m in members.iter().step_by(97) {
            let nb = g.neighbours(m);
            assert_eq!(nb.len(), p.degree);
            for v in &nb {
                assert!(g.adjacent(m, v) && g.adjacent(v, m));
                assert!(g.neighbours(v).contains(m));
            }
        }
    }

    #[test]
    fn one_members_neighbours_equal_the_whole_graphs() {
        for n in [5usize, 40, 700, 3_000] {
            let members = ids(n);
            let p = GraphParams::choose(n, Tolerance::default()).unwrap();
            let g = Graph::new(&session(3), &members, &p);
            for m in members.iter().step_by(n / 5) {
                assert_eq!(
                    neighbours_of(&session(3), &members, &p, m),
                    g.neighbours(m),
                    "{n}"
                );
            }
        }
        assert_eq!(ring_distance(&[0; 32], &[0; 32]), [0; 32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(ring_distance(&[0; 32], &one), [255; 32]);
    }

    #[test]
    fn each_cycle_draws_other_neighbours_and_small_communities_are_complete() {
        let members = ids(2_000);
        let p = GraphParams::choose(members.len(), Tolerance::default()).unwrap();
        let a = Graph::new(&session(1), &members, &p).neighbours(&members[0]);
        let b = Graph::new(&session(2), &members, &p).neighbours(&members[0]);
        let common = a.iter().filter(|m| b.contains(m)).count();
        assert!(common < a.len() / 2, "{common} of {}", a.len());
        let small = ids(6);
        let p = GraphParams::choose(6, Tolerance::default()).unwrap();
        let g = Graph::new(&session(1), &small, &p);
        assert_eq!(g.neighbours(&small[0]).len(), 5);
        assert!(g.neighbours(&MemberId::new("nobody").unwrap()).is_empty());
    }
}
