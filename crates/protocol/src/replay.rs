use std::collections::HashMap;

use thiserror::Error;

use crate::NodeId;

/// A request whose counter is not above the last accepted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("replayed or reordered request: counter {counter} <= last accepted {last}")]
pub struct Replay {
    /// The request's counter.
    pub counter: u64,
    /// The last counter accepted from the sender.
    pub last: u64,
}

/// Per-sender counters: a request is fresh when its counter exceeds the
/// last accepted one. [`ReplayGuard::check`] does not change anything;
/// [`ReplayGuard::accept`] records a counter once the request was handled,
/// so that a refused request leaves no trace.
#[derive(Debug, Clone, Default)]
pub struct ReplayGuard {
    last: HashMap<NodeId, u64>,
}

impl ReplayGuard {
    /// Restores persisted counters.
    pub fn from_counters(counters: impl IntoIterator<Item = (NodeId, u64)>) -> ReplayGuard {
        ReplayGuard {
            last: counters.into_iter().collect(),
        }
    }

    /// Whether `counter` is fresh for `sender`.
    pub fn check(&self, sender: &NodeId, counter: u64) -> Result<(), Replay> {
        match self.last.get(sender) {
            Some(&last) if counter <= last => Err(Replay { counter, last }),
            _ => Ok(()),
        }
    }

    /// Records an accepted request's counter.
    pub fn accept(&mut self, sender: NodeId, counter: u64) {
        let last = self.last.entry(sender).or_insert(0);
        *last = (*last).max(counter);
    }

    /// The last accepted counter of a sender.
    pub fn last(&self, sender: &NodeId) -> Option<u64> {
        self.last.get(sender).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_must_grow_and_checks_change_nothing() {
        let a = NodeId([1; 32]);
        let mut g = ReplayGuard::default();
        assert!(g.check(&a, 5).is_ok());
        assert!(g.check(&a, 5).is_ok()); // check alone records nothing
        g.accept(a, 5);
        assert_eq!(
            g.check(&a, 5),
            Err(Replay {
                counter: 5,
                last: 5
            })
        );
        assert!(g.check(&a, 4).is_err());
        assert!(g.check(&a, 6).is_ok());
        assert!(g.check(&NodeId([2; 32]), 1).is_ok());
        let restored = ReplayGuard::from_counters([(a, 9)]);
        assert!(restored.check(&a, 9).is_err());
    }
}
