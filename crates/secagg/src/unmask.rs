//! Unmasking a cycle's aggregate: recover every needed secret from its
//! holders' answers, check it against the owner's bundle, and sum the
//! survivors' masked inputs less their self masks and the pairwise masks
//! with partners that dropped. The job owns only the plan (`O(n)`: which
//! secrets, their thresholds and public checks, each survivor's mask key
//! and dropped partners); the answers and the inputs are brought by the
//! caller in batches ([`UnmaskJob::run`]), so an edge streams them from its
//! store and holds one batch at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use curve25519_dalek::scalar::Scalar;
use pb_units::MemberId;
use rayon::prelude::*;
use x25519_dalek::StaticSecret;

use crate::keys::{mask_public, seed_commitment};
use crate::mask::{apply, pair_key, pair_sign, self_key};
use crate::rounds::Ring;
use crate::shares::{Secret, SecretShare, combine, combine_with, lagrange_at_zero};
use crate::{Refusal, Session};

/// How many secrets (or inputs) are asked for at once.
pub const UNMASK_BATCH: usize = 1024;

/// A secret the unmasking needs.
#[derive(Debug, Clone)]
pub struct Needed {
    /// Whose.
    pub about: MemberId,
    /// Its owner's position in the roster.
    pub index: usize,
    /// Which.
    pub secret: Secret,
    /// Shares it takes.
    pub threshold: usize,
    /// Its public check: the seed commitment or the mask public key.
    pub check: [u8; 32],
    /// The neighbours of its owner that revealed (the answers there may
    /// be about it), sorted: filled for the batch [`UnmaskJob::run`] asks
    /// for, empty otherwise.
    pub holders: Vec<MemberId>,
}

/// Who answered about whom: the graph and which members revealed
/// (`O(n)`), so that the answers about a secret are looked up where they
/// are, not searched for.
#[derive(Debug)]
pub(crate) struct Answerers {
    pub(crate) ring: Arc<Ring>,
    pub(crate) ids: Vec<MemberId>,
    pub(crate) revealed: Vec<bool>,
}

impl Answerers {
    fn of(&self, i: usize) -> Vec<MemberId> {
        self.ring
            .neighbours(i)
            .into_iter()
            .filter(|&j| self.revealed[j])
            .map(|j| self.ids[j].clone())
            .collect()
    }
}

/// A survivor, as the sum needs it.
#[derive(Debug, Clone)]
pub struct Survivor {
    /// The member.
    pub member: MemberId,
    /// Its mask public key.
    pub mask_pk: [u8; 32],
    /// Its partners that dropped after sharing (sorted): their pairwise
    /// masks are left in its input and removed with their mask keys.
    pub dropped_partners: Vec<MemberId>,
}

/// What unmasking a cycle needs, owned (see [`crate::Rounds::unmask_job`]).
pub struct UnmaskJob {
    session: Session,
    shape: (usize, usize),
    needed: Vec<Needed>,
    survivors: Vec<Survivor>,
    answerers: Answerers,
}

impl std::fmt::Debug for UnmaskJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnmaskJob")
            .field("secrets", &self.needed.len())
            .field("survivors", &self.survivors.len())
            .finish()
    }
}

impl UnmaskJob {
    pub(crate) fn new(
        session: Session,
        shape: (usize, usize),
        needed: Vec<Needed>,
        survivors: Vec<Survivor>,
        answerers: Answerers,
    ) -> UnmaskJob {
        UnmaskJob {
            session,
            shape,
            needed,
            survivors,
            answerers,
        }
    }

    /// The secrets to recover, in order.
    pub fn needed(&self) -> &[Needed] {
        &self.needed
    }

    /// The survivors whose inputs are summed, in member order.
    pub fn survivors(&self) -> &[Survivor] {
        &self.survivors
    }

    /// Recovers every needed secret and sums the survivors' unmasked
    /// vectors. `answers` is asked for the answers about a batch of needed
    /// secrets (one list of shares per secret, in the order asked), then
    /// `inputs` for the masked vectors of a batch of survivors (one per
    /// survivor, in the order asked); each batch is at most
    /// [`UNMASK_BATCH`] long and worked on in parallel. Refuses a secret
    /// short of its threshold with `NotEnoughShares` naming the members
    /// whose secrets are short, and names a member whose recovered secret
    /// does not match its commitment.
    pub fn run<E>(
        self,
        mut answers: impl FnMut(&[Needed]) -> Result<Vec<Vec<SecretShare>>, E>,
        mut inputs: impl FnMut(&[Survivor]) -> Result<Vec<Vec<Vec<u64>>>, E>,
    ) -> Result<Vec<Vec<u64>>, E>
    where
        E: From<Refusal> + Send,
    {
        let session = &self.session;
        // Recoveries from the same abscissae share their Lagrange
        // coefficients (with every holder answering, that is all of them),
        // computed once per set of abscissae: each recovery is then O(t).
        let mut windows: BTreeMap<Vec<[u8; 32]>, Option<Vec<Scalar>>> = BTreeMap::new();
        let mut recovered: BTreeMap<(MemberId, Secret), [u8; 32]> = BTreeMap::new();
        let mut short = Vec::new();
        for batch in self.needed.chunks(UNMASK_BATCH) {
            let batch: Vec<Needed> = batch
                .iter()
                .map(|n| Needed {
                    holders: self.answerers.of(n.index),
                    ..n.clone()
                })
                .collect();
            let batch = batch.as_slice();
            let mut shares = answers(batch)?;
            if shares.len() != batch.len() {
                return Err(Refusal::BadRecovery(batch[0].about.clone()).into());
            }
            for s in &mut shares {
                s.sort_by(|a, b| a.x.cmp(&b.x));
            }
            let fresh: Vec<Vec<[u8; 32]>> = batch
                .iter()
                .zip(&shares)
                .filter(|(n, s)| s.len() >= n.threshold)
                .map(|(n, s)| s[..n.threshold].iter().map(|s| s.x).collect())
                .filter(|xs| !windows.contains_key(xs))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let coefficients: Vec<Option<Vec<Scalar>>> =
                fresh.par_iter().map(|xs| lagrange_at_zero(xs)).collect();
            windows.extend(fresh.into_iter().zip(coefficients));
            let outcomes: Vec<Result<Option<[u8; 32]>, Refusal>> = batch
                .par_iter()
                .zip(&shares)
                .map(|(n, shares)| {
                    let t = n.threshold;
                    if shares.len() < t {
                        return Ok(None);
                    }
                    let check = |s: &Scalar| match n.secret {
                        Secret::SelfSeed => {
                            seed_commitment(session, &n.about, &s.to_bytes()) == n.check
                        }
                        Secret::MaskKey => mask_public(&s.to_bytes()) == n.check,
                    };
                    let refs: Vec<&SecretShare> = shares.iter().collect();
                    let xs: Vec<[u8; 32]> = refs[..t].iter().map(|s| s.x).collect();
                    let first = windows
                        .get(&xs)
                        .and_then(Option::as_ref)
                        .and_then(|l| combine_with(l, &refs[..t]))
                        .filter(check);
                    // A member sent a wrong share: slide the window (one
                    // bad share among more than t is then always left out).
                    let found = first
                        .or_else(|| {
                            (1..=refs.len() - t)
                                .find_map(|start| combine(&refs[start..start + t]).filter(check))
                        })
                        .ok_or_else(|| Refusal::BadRecovery(n.about.clone()))?;
                    Ok(Some(found.to_bytes()))
                })
                .collect();
            for (o, n) in outcomes.into_iter().zip(batch) {
                match o? {
                    Some(v) => {
                        recovered.insert((n.about.clone(), n.secret), v);
                    }
                    None => short.push(n.about.clone()),
                }
            }
        }
        if !short.is_empty() {
            return Err(Refusal::NotEnoughShares { waiting: short }.into());
        }
        let (fields, slots) = self.shape;
        let add = |mut acc: Vec<Vec<u64>>, v: Vec<Vec<u64>>| {
            for (a, x) in acc.iter_mut().zip(v) {
                for (a, x) in a.iter_mut().zip(x) {
                    *a = a.wrapping_add(x);
                }
            }
            acc
        };
        let mut total = vec![vec![0u64; slots]; fields];
        for batch in self.survivors.chunks(UNMASK_BATCH) {
            let vectors = inputs(batch)?;
            if vectors.len() != batch.len() {
                return Err(Refusal::BadInput(batch[0].member.clone(), "input missing").into());
            }
            let part = batch
                .par_iter()
                .zip(vectors)
                .map(|(s, vectors)| -> Result<Vec<Vec<u64>>, Refusal> {
                    let u = &s.member;
                    if vectors.len() != fields || vectors.iter().any(|v| v.len() != slots) {
                        return Err(Refusal::BadInput(
                            u.clone(),
                            "wrong number of fields or slots",
                        ));
                    }
                    let seed = recovered
                        .get(&(u.clone(), Secret::SelfSeed))
                        .ok_or_else(|| Refusal::BadRecovery(u.clone()))?;
                    let self_mask = self_key(seed, session, u);
                    let mut removals = Vec::with_capacity(s.dropped_partners.len());
                    for v in &s.dropped_partners {
                        let key = recovered
                            .get(&(v.clone(), Secret::MaskKey))
                            .ok_or_else(|| Refusal::BadRecovery(v.clone()))?;
                        let secret = StaticSecret::from(*key);
                        let key = pair_key(&secret, &s.mask_pk, session, u, v)
                            .ok_or_else(|| Refusal::WeakKey(u.clone()))?;
                        removals.push((-pair_sign(u, v), key));
                    }
                    let mut out = vectors;
                    for (f, v) in out.iter_mut().enumerate() {
                        apply(&self_mask, f as u32, -1, v);
                        for (sign, key) in &removals {
                            apply(key, f as u32, *sign, v);
                        }
                    }
                    Ok(out)
                })
                .try_reduce(|| vec![vec![0u64; slots]; fields], |a, b| Ok(add(a, b)))?;
            total = add(total, part);
        }
        Ok(total)
    }
}
