//! The degree `k` of the masking graph and the threshold `t` of the
//! secret shares, chosen from the community's size `n` and the fractions of
//! members that may drop out (`delta`) or collude with the edge (`gamma`)
//! (Bell et al., CCS 2020, section 4, adapted: design section 4).
//!
//! For a member `u` with `h` share holders (its neighbours that advertised
//! keys) the threshold is `t(h) = floor((h + c) / 2) + 1`, where `c` bounds
//! the colluding neighbours of any member. Then:
//!
//! * **never both secrets**: revealing `u`'s self-mask seed needs `t`
//!   holders acting on a survivor set where `u` survived, revealing its mask
//!   key needs `t` acting on one where it dropped; each honest holder acts
//!   on one set per cycle, so both would need `2 (t - c) <= h - c` honest
//!   holders, which `t > (h + c) / 2` rules out;
//! * **colluders alone learn nothing**: `t > c`;
//! * **recovery**: with at most `d` holders dropping after sharing and `c`
//!   refusing, `h - d - c >= t` holders answer.
//!
//! Each member's `k` neighbours are a uniformly random `k`-subset of the
//! others (the graph is a ring over a random permutation), so `c` and `d`
//! are binomial tails: `P[C > c] <= 2^-PRIVACY_BITS / n` and
//! `P[D > d] <= 2^-RECOVERY_BITS / n` (a union bound over the members). `k`
//! is the smallest even degree with `t(k) <= k - d - c`. When that is not
//! below `n - 1`, the graph is complete and `c = floor(gamma n)`,
//! `d = floor(delta n)` exactly.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Privacy failure probability per cycle: `2^-40`.
pub const PRIVACY_BITS: i32 = 40;
/// Recovery failure probability per cycle: `2^-20` (a failure only
/// delays billing; it reveals nothing).
pub const RECOVERY_BITS: i32 = 20;

/// What the parameters must tolerate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Fraction of members that may drop out after sharing their keys.
    pub dropout: f64,
    /// Fraction of members that may collude with the edge.
    pub collusion: f64,
}

impl Default for Tolerance {
    /// 10% dropouts, 5% colluding members.
    fn default() -> Tolerance {
        Tolerance {
            dropout: 0.10,
            collusion: 0.05,
        }
    }
}

/// Why no parameters fit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    /// Fewer than three members cannot hide anyone.
    #[error("a community of {0} members is too small for secure aggregation (at least 3)")]
    TooSmall(usize),
    /// The fractions are not in `[0, 0.5)`.
    #[error("tolerated fractions must be in [0, 0.5): dropout {dropout}, collusion {collusion}")]
    BadTolerance {
        /// Given dropout fraction.
        dropout: String,
        /// Given collusion fraction.
        collusion: String,
    },
    /// Even the complete graph cannot tolerate this much.
    #[error(
        "{members} members cannot tolerate {dropped} dropouts and {colluding} colluders: \
         lower the tolerated fractions"
    )]
    Infeasible {
        /// Community size.
        members: usize,
        /// Dropouts to tolerate.
        dropped: usize,
        /// Colluders to tolerate.
        colluding: usize,
    },
}

/// The masking graph's parameters for one community size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphParams {
    /// Members in the signed roster.
    pub members: usize,
    /// Neighbours per member (`k`).
    pub degree: usize,
    /// Colluding neighbours tolerated (`c`).
    pub colluding: usize,
    /// Holders that may drop after sharing (`d`).
    pub dropped: usize,
}

/// `P[Binomial(k, p) > x]`, summed from the top (f64 suffices for the
/// tails used here, down to about `2^-70`).
fn tail(k: usize, p: f64, x: usize) -> f64 {
    if x >= k {
        return 0.0;
    }
    // ln C(k, i) p^i (1-p)^(k-i), term by term from i = x + 1.
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut ln_comb = 0.0;
    for i in 0..=x {
        ln_comb += ((k - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let mut sum = 0.0;
    for i in (x + 1)..=k {
        sum += (ln_comb + i as f64 * lp + (k - i) as f64 * lq).exp();
        if i < k {
            ln_comb += ((k - i) as f64).ln() - ((i + 1) as f64).ln();
        }
    }
    sum
}

/// The smallest `x` with `P[Binomial(k, p) > x] <= eps`.
fn bound(k: usize, p: f64, eps: f64) -> usize {
    if p <= 0.0 {
        return 0;
    }
    (0..=k).find(|&x| tail(k, p, x) <= eps).unwrap_or(k)
}

impl GraphParams {
    /// The smallest graph that tolerates `tol` for `members` members.
    pub fn choose(members: usize, tol: Tolerance) -> Result<GraphParams, ParamError> {
        let fine = |f: f64| (0.0..0.5).contains(&f);
        if !fine(tol.dropout) || !fine(tol.collusion) {
            return Err(ParamError::BadTolerance {
                dropout: tol.dropout.to_string(),
                collusion: tol.collusion.to_string(),
            });
        }
        if members < 3 {
            return Err(ParamError::TooSmall(members));
        }
        let n = members as f64;
        let privacy = 2f64.powi(-PRIVACY_BITS) / n;
        let recovery = 2f64.powi(-RECOVERY_BITS) / n;
        let mut k = 2;
        while k < members - 1 {
            let c = bound(k, tol.collusion, privacy);
            let d = bound(k, tol.dropout, recovery);
            let p = GraphParams {
                members,
                degree: k,
                colluding: c,
                dropped: d,
            };
            if p.threshold(k) + d + c <= k {
                return Ok(p);
            }
            k += 2;
        }
        let p = GraphParams {
            members,
            degree: members - 1,
            colluding: (tol.collusion * n).floor() as usize,
            dropped: (tol.dropout * n).floor() as usize,
        };
        if p.threshold(p.degree) + p.dropped + p.colluding > p.degree {
            return Err(ParamError::Infeasible {
                members,
                dropped: p.dropped,
                colluding: p.colluding,
            });
        }
        Ok(p)
    }

    /// Whether every member is every other member's neighbour.
    pub fn complete(&self) -> bool {
        self.degree + 1 >= self.members
    }

    /// The threshold of a member with `holders` share holders:
    /// `floor((holders + c) / 2) + 1`.
    pub fn threshold(&self, holders: usize) -> usize {
        (holders + self.colluding) / 2 + 1
    }

    /// The fewest holders a member shares with: below this the threshold
    /// would exceed the holders, or colluders plus one honest holder could
    /// not be outnumbered.
    pub fn min_holders(&self) -> usize {
        (self.colluding + 2).max(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_match_exact_binomials() {
        // P[Bin(4, 1/2) > 2] = 5/16.
        assert!((tail(4, 0.5, 2) - 5.0 / 16.0).abs() < 1e-12);
        assert_eq!(tail(4, 0.5, 4), 0.0);
        assert_eq!(bound(100, 0.0, 1e-9), 0);
    }

    #[test]
    fn the_table_of_design_section_4() {
        let t = Tolerance::default();
        let row = |n: usize| {
            let p = GraphParams::choose(n, t).unwrap();
            (p.degree, p.threshold(p.degree), p.colluding, p.dropped)
        };
        assert_eq!(row(10), (9, 5, 0, 1));
        assert_eq!(row(100), (99, 53, 5, 10));
        // The rest of the table in docs/design.md section 4.2: O(log n), a
        // hundredfold more members adds about 25 neighbours.
        assert_eq!(row(1_000), (274, 163, 50, 61));
        assert_eq!(row(10_000), (298, 177, 54, 67));
        assert_eq!(row(100_000), (322, 191, 58, 73));
        assert_eq!(row(1_000_000), (350, 207, 63, 80));
        for n in [3usize, 4, 6, 10, 30, 100, 1_000, 10_000, 100_000, 1_000_000] {
            let p = GraphParams::choose(n, t).unwrap();
            let k = p.degree;
            assert!(p.threshold(k) > (k + p.colluding) / 2 && p.threshold(k) > p.colluding);
            assert!(p.threshold(k) + p.dropped + p.colluding <= k, "{n}: {p:?}");
            assert_eq!(p.complete(), k == n - 1);
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert_eq!(
            GraphParams::choose(2, Tolerance::default()),
            Err(ParamError::TooSmall(2))
        );
        let bad = Tolerance {
            dropout: 0.6,
            collusion: 0.0,
        };
        assert!(matches!(
            GraphParams::choose(10, bad),
            Err(ParamError::BadTolerance { .. })
        ));
        let hard = Tolerance {
            dropout: 0.4,
            collusion: 0.3,
        };
        assert!(matches!(
            GraphParams::choose(10, hard),
            Err(ParamError::Infeasible { .. })
        ));
    }
}
