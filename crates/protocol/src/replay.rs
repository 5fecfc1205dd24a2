use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::NodeId;

/// How far a request's counter (nanoseconds since the Unix epoch at the
/// sender) may lie from the receiver's clock. Requests outside the window
/// are refused, so a captured frame can be replayed to a restarted edge
/// (which remembers only the counters it persisted) at most within this
/// window of its sealing.
pub const FRESHNESS_WINDOW: Duration = Duration::from_secs(300);

/// A request whose counter is not fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Replay {
    /// Not above the last counter recorded for the sender.
    #[error("replayed or reordered request: counter {counter} <= last recorded {last}")]
    Seen {
        /// The request's counter.
        counter: u64,
        /// The last counter recorded from the sender.
        last: u64,
    },
    /// Outside the freshness window around the receiver's clock.
    #[error(
        "request counter {counter} is {seconds} s away from this edge's clock (window {} s): a stale replay, or a clock to set right",
        FRESHNESS_WINDOW.as_secs()
    )]
    Stale {
        /// The request's counter.
        counter: u64,
        /// How far from the receiver's clock, in seconds.
        seconds: u64,
    },
}

/// The receiver's clock as a counter (nanoseconds since the Unix epoch).
pub fn clock_counter() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Per-sender counters: a request is fresh when its counter exceeds the
/// last recorded one and lies within [`FRESHNESS_WINDOW`] of the
/// receiver's clock. [`ReplayGuard::check`] does not change anything;
/// [`ReplayGuard::accept`] records a counter once the request was handled,
/// whether it succeeded or was refused, so that no handled frame is ever
/// handled twice.
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

    /// Whether `counter` is fresh for `sender` at the receiver's time `now`
    /// (a counter, see [`clock_counter`]).
    pub fn check(&self, sender: &NodeId, counter: u64, now: u64) -> Result<(), Replay> {
        if let Some(&last) = self.last.get(sender) {
            if counter <= last {
                return Err(Replay::Seen { counter, last });
            }
        }
        let window = FRESHNESS_WINDOW.as_nanos() as u64;
        let distance = counter.abs_diff(now);
        if distance > window {
            return Err(Replay::Stale {
                counter,
                seconds: distance / 1_000_000_000,
            });
        }
        Ok(())
    }

    /// Records a handled request's counter.
    pub fn accept(&mut self, sender: NodeId, counter: u64) {
        let last = self.last.entry(sender).or_insert(0);
        *last = (*last).max(counter);
    }

    /// The last recorded counter of a sender.
    pub fn last(&self, sender: &NodeId) -> Option<u64> {
        self.last.get(sender).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counters_must_grow_and_checks_change_nothing() {
        let now = 1_000_000 * S;
        let a = NodeId([1; 32]);
        let mut g = ReplayGuard::default();
        assert!(g.check(&a, now + 5, now).is_ok());
        assert!(g.check(&a, now + 5, now).is_ok()); // check alone records nothing
        g.accept(a, now + 5);
        assert_eq!(
            g.check(&a, now + 5, now),
            Err(Replay::Seen {
                counter: now + 5,
                last: now + 5
            })
        );
        assert!(g.check(&a, now + 4, now).is_err());
        assert!(g.check(&a, now + 6, now).is_ok());
        assert!(g.check(&NodeId([2; 32]), now, now).is_ok());
        let restored = ReplayGuard::from_counters([(a, now + 9)]);
        assert!(restored.check(&a, now + 9, now).is_err());
    }

    /// Attacker: a frame captured long ago is replayed to an edge that has
    /// forgotten the sender's counter (restarted, read-only request): it is
    /// refused as stale; so is a counter far in the future.
    #[test]
    fn counters_outside_the_window_are_refused() {
        let now = 1_000_000 * S;
        let w = FRESHNESS_WINDOW.as_secs() * S;
        let g = ReplayGuard::default();
        let a = NodeId([1; 32]);
        assert!(g.check(&a, now - w, now).is_ok());
        assert!(matches!(
            g.check(&a, now - w - S, now),
            Err(Replay::Stale { seconds: 301, .. })
        ));
        assert!(matches!(
            g.check(&a, now + w + S, now),
            Err(Replay::Stale { .. })
        ));
        assert!(matches!(g.check(&a, 1, now), Err(Replay::Stale { .. })));
    }
}
