//! The edge's side of one cycle: it carries the members' messages, checks
//! them, moves the rounds on and finally unmasks the sum of the
//! survivors' vectors. It holds nothing it could read a household's data
//! from: shares are encrypted to their holders, and for any member it can
//! recover either the self-mask seed (survivor) or the mask key (dropped),
//! never both (see [`crate::params`]).
//!
//! Every call either advances the cycle or returns a [`Refusal`] and
//! changes nothing; a message received twice is accepted once (the same
//! message again is not an error, a different one is).

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::scalar::Scalar;
use pb_units::MemberId;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;

use crate::client::MaskedInput;
use crate::keys::{SignedBundle, mask_public, seed_commitment};
use crate::mask::{apply, pair_key, pair_sign, self_key};
use crate::params::GraphParams;
use crate::roster::{Roster, SignedRoster};
use crate::shares::{
    EncryptedShare, Reveal, SEALED_LEN, Secret, SecretShare, combine, combine_with,
    lagrange_at_zero,
};
use crate::{Confirmation, Graph, Refusal, Round, Session, SurvivorSet};

/// Where a cycle stands, and who the edge waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The current round.
    pub round: Round,
    /// Members whose message for this round has not arrived (for the
    /// reveal round: survivors whose answers would complete a recovery).
    pub waiting: Vec<MemberId>,
}

/// The edge's state of one cycle.
#[derive(Debug)]
pub struct Server {
    session: Session,
    roster: Roster,
    params: GraphParams,
    graph: Graph,
    min_survivors: usize,
    shape: (usize, usize),
    round: Round,
    bundles: BTreeMap<MemberId, SignedBundle>,
    shares: BTreeMap<MemberId, Vec<EncryptedShare>>,
    inputs: BTreeMap<MemberId, MaskedInput>,
    set: Option<SurvivorSet>,
    confirmations: BTreeMap<MemberId, Confirmation>,
    reveals: BTreeMap<MemberId, Reveal>,
    /// From the confirm round on: each secret the unmasking needs, with
    /// its threshold and the answers about it so far, and how many are
    /// still short (kept up to date by each reveal, so that whether the
    /// unmasking can run costs nothing).
    tally: BTreeMap<(MemberId, Secret), (usize, usize)>,
    short: usize,
}

impl Server {
    /// A cycle over `roster` (signed by the pinned operator key), for
    /// vectors of `fields` fields of `slots` values; at least
    /// `min_survivors` members must survive every round.
    pub fn new(
        roster: &SignedRoster,
        pinned_operator: &[u8; 32],
        cycle: u64,
        min_survivors: usize,
        fields: usize,
        slots: usize,
    ) -> Result<Server, Refusal> {
        let r = roster.verify(pinned_operator, min_survivors)?;
        let session = Session {
            community: r.community.clone(),
            cycle,
            roster: r.fingerprint(),
        };
        let params = r.params()?;
        let graph = Graph::new(&session, &r.ids(), &params);
        Ok(Server {
            session,
            roster: r.clone(),
            params,
            graph,
            min_survivors,
            shape: (fields, slots),
            round: Round::Advertise,
            bundles: BTreeMap::new(),
            shares: BTreeMap::new(),
            inputs: BTreeMap::new(),
            set: None,
            confirmations: BTreeMap::new(),
            reveals: BTreeMap::new(),
            tally: BTreeMap::new(),
            short: 0,
        })
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }
    /// The graph parameters.
    pub fn params(&self) -> &GraphParams {
        &self.params
    }
    /// The current round.
    pub fn round(&self) -> Round {
        self.round
    }
    /// The announced survivor set (from the confirm round on).
    pub fn survivor_set(&self) -> Option<&SurvivorSet> {
        self.set.as_ref()
    }

    fn require(&self, round: Round) -> Result<(), Refusal> {
        self.round.require(round)
    }

    /// Neighbours of `m` that advertised: the holders of its shares.
    fn holders_of(&self, m: &MemberId) -> Vec<MemberId> {
        self.graph
            .neighbours(m)
            .into_iter()
            .filter(|v| self.bundles.contains_key(v))
            .collect()
    }

    /// Neighbours of `m` whose shares reached the edge: its partners.
    fn partners_of(&self, m: &MemberId) -> Vec<MemberId> {
        self.graph
            .neighbours(m)
            .into_iter()
            .filter(|v| self.shares.contains_key(v))
            .collect()
    }

    fn threshold_of(&self, m: &MemberId) -> usize {
        self.params.threshold(self.holders_of(m).len())
    }

    /// Advertise round: a member's signed key bundle.
    pub fn advertise(&mut self, bundle: SignedBundle) -> Result<(), Refusal> {
        self.require(Round::Advertise)?;
        bundle.verify(&self.session, &self.roster)?;
        let m = bundle.bundle.member.clone();
        match self.bundles.get(&m) {
            Some(b) if *b == bundle => Ok(()),
            Some(_) => Err(Refusal::Duplicate(m)),
            None => {
                self.bundles.insert(m, bundle);
                Ok(())
            }
        }
    }

    fn close(&mut self, have: usize, next: Round) -> Result<(), Refusal> {
        if have < self.min_survivors {
            return Err(Refusal::TooFewMembers {
                have,
                need: self.min_survivors,
            });
        }
        self.round = next;
        Ok(())
    }

    /// Ends the advertise round (everyone advertised, or its deadline).
    pub fn close_advertise(&mut self) -> Result<(), Refusal> {
        self.require(Round::Advertise)?;
        self.close(self.bundles.len(), Round::Share)
    }

    /// The bundles a member needs: its neighbours that advertised.
    pub fn bundles_for(&self, m: &MemberId) -> Result<Vec<SignedBundle>, Refusal> {
        if !self.bundles.contains_key(m) {
            return Err(Refusal::Absent(m.clone(), Round::Advertise));
        }
        Ok(self
            .holders_of(m)
            .iter()
            .filter_map(|v| self.bundles.get(v).cloned())
            .collect())
    }

    /// Share round: a member's encrypted shares, exactly one to each of its
    /// holders.
    pub fn share(&mut self, from: &MemberId, shares: Vec<EncryptedShare>) -> Result<(), Refusal> {
        self.require(Round::Share)?;
        if !self.bundles.contains_key(from) {
            return Err(Refusal::Absent(from.clone(), Round::Advertise));
        }
        let holders = self.holders_of(from);
        let mut to: Vec<&MemberId> = shares.iter().map(|s| &s.to).collect();
        to.sort();
        if to.len() != holders.len() || to.iter().zip(&holders).any(|(a, b)| *a != b) {
            return Err(Refusal::BadShare(from.clone()));
        }
        if shares
            .iter()
            .any(|s| &s.from != from || s.ciphertext.len() != SEALED_LEN)
        {
            return Err(Refusal::BadShare(from.clone()));
        }
        match self.shares.get(from) {
            Some(s) if *s == shares => Ok(()),
            Some(_) => Err(Refusal::Duplicate(from.clone())),
            None => {
                self.shares.insert(from.clone(), shares);
                Ok(())
            }
        }
    }

    /// Ends the share round.
    pub fn close_share(&mut self) -> Result<(), Refusal> {
        self.require(Round::Share)?;
        self.close(self.shares.len(), Round::Mask)
    }

    /// The shares addressed to `m` by neighbours that shared.
    pub fn shares_for(&self, m: &MemberId) -> Result<Vec<EncryptedShare>, Refusal> {
        if !self.shares.contains_key(m) {
            return Err(Refusal::Absent(m.clone(), Round::Share));
        }
        Ok(self
            .partners_of(m)
            .iter()
            .filter_map(|v| self.shares.get(v))
            .flat_map(|s| s.iter().filter(|s| &s.to == m).cloned())
            .collect())
    }

    /// Mask round: a member's masked vectors, masked with exactly its
    /// partners.
    pub fn submit(&mut self, input: MaskedInput) -> Result<(), Refusal> {
        self.check_submit(&input)?;
        if !self.inputs.contains_key(&input.member) {
            self.inputs.insert(input.member.clone(), input);
        }
        Ok(())
    }

    /// Whether [`Server::submit`] would accept `input` (so that a caller
    /// can check other conditions before anything changes).
    pub fn check_submit(&self, input: &MaskedInput) -> Result<(), Refusal> {
        self.require(Round::Mask)?;
        let m = input.member.clone();
        if !self.shares.contains_key(&m) {
            return Err(Refusal::Absent(m, Round::Share));
        }
        if input.partners != self.partners_of(&m) {
            return Err(Refusal::BadInput(
                m,
                "masked with other neighbours than shared",
            ));
        }
        let (fields, slots) = self.shape;
        if input.vectors.len() != fields || input.vectors.iter().any(|v| v.len() != slots) {
            return Err(Refusal::BadInput(m, "wrong number of fields or slots"));
        }
        match self.inputs.get(&m) {
            Some(i) if i != input => Err(Refusal::Duplicate(m)),
            _ => Ok(()),
        }
    }

    /// Whether `m`'s message of `round` was accepted (a core that resends
    /// it after a restart, once the round has closed, is told it is in).
    pub fn has_message(&self, round: Round, m: &MemberId) -> bool {
        match round {
            Round::Advertise => self.bundles.contains_key(m),
            Round::Share => self.shares.contains_key(m),
            Round::Mask => self.inputs.contains_key(m),
            Round::Confirm => self.confirmations.contains_key(m),
            Round::Reveal => self.reveals.contains_key(m),
            Round::Done => false,
        }
    }

    /// Whether `m`'s masked input is in.
    pub fn has_input(&self, m: &MemberId) -> bool {
        self.inputs.contains_key(m)
    }

    /// The member list the cycle runs on.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Ends the mask round and announces the survivor set: the members
    /// whose masked vectors arrived.
    pub fn close_mask(&mut self) -> Result<SurvivorSet, Refusal> {
        self.require(Round::Mask)?;
        self.close(self.inputs.len(), Round::Confirm)?;
        let set = SurvivorSet {
            session: self.session.clone(),
            members: self.inputs.keys().cloned().collect(),
        };
        self.tally = self
            .needed(&set)
            .into_iter()
            .map(|(about, secret)| {
                let t = self.threshold_of(&about);
                ((about, secret), (t, 0))
            })
            .collect();
        self.short = self.tally.len();
        self.set = Some(set.clone());
        Ok(set)
    }

    /// Whether every secret the unmasking needs has its threshold of
    /// answers (kept up to date by [`Server::reveal`]: no pass over the
    /// cycle).
    pub fn complete(&self) -> bool {
        self.round == Round::Reveal && self.short == 0
    }

    /// Survivors that have not revealed yet (cheap: `O(n)`).
    pub fn not_revealed(&self) -> Vec<MemberId> {
        match &self.set {
            Some(set) => set
                .members
                .iter()
                .filter(|m| !self.reveals.contains_key(*m))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    fn set(&self) -> Result<&SurvivorSet, Refusal> {
        self.set.as_ref().ok_or(Refusal::WrongRound {
            expected: Round::Confirm,
            actual: self.round,
        })
    }

    /// Confirm round: a survivor's signature over the set.
    pub fn confirm(&mut self, c: Confirmation) -> Result<(), Refusal> {
        if !matches!(self.round, Round::Confirm | Round::Reveal) {
            return Err(Refusal::WrongRound {
                expected: Round::Confirm,
                actual: self.round,
            });
        }
        let set = self.set()?;
        if !set.contains(&c.member) {
            return Err(Refusal::Absent(c.member.clone(), Round::Mask));
        }
        if c.set != set.hash() {
            return Err(Refusal::Equivocation);
        }
        self.roster
            .verify(&c.member, &Confirmation::message(&c.set), &c.signature)?;
        match self.confirmations.get(&c.member) {
            Some(x) if *x == c => Ok(()),
            Some(_) => Err(Refusal::Duplicate(c.member)),
            None => {
                self.confirmations.insert(c.member.clone(), c);
                Ok(())
            }
        }
    }

    /// The confirmations a member checks: those of its holders.
    pub fn confirmations_for(&self, m: &MemberId) -> Vec<Confirmation> {
        self.holders_of(m)
            .iter()
            .filter_map(|v| self.confirmations.get(v).cloned())
            .collect()
    }

    /// Reveal round: a survivor's answers, one per neighbour whose shares
    /// it holds, of the kind the survivor set calls for.
    pub fn reveal(&mut self, r: Reveal) -> Result<(), Refusal> {
        if !matches!(self.round, Round::Confirm | Round::Reveal) {
            return Err(Refusal::WrongRound {
                expected: Round::Reveal,
                actual: self.round,
            });
        }
        let set = self.set()?.clone();
        let m = r.member.clone();
        if !self.confirmations.contains_key(&m) {
            return Err(Refusal::Absent(m, Round::Confirm));
        }
        if r.set != set.hash() {
            return Err(Refusal::Equivocation);
        }
        let held = self.partners_of(&m);
        let mut seen = BTreeSet::new();
        for a in &r.answers {
            let kind = if set.contains(&a.about) {
                Secret::SelfSeed
            } else {
                Secret::MaskKey
            };
            if held.binary_search(&a.about).is_err() || a.secret != kind || !seen.insert(&a.about) {
                return Err(Refusal::BadAnswer(m, a.about.clone()));
            }
        }
        match self.reveals.get(&m) {
            Some(x) if *x == r => Ok(()),
            Some(_) => Err(Refusal::Duplicate(m)),
            None => {
                for a in &r.answers {
                    if let Some((t, have)) = self.tally.get_mut(&(a.about.clone(), a.secret)) {
                        *have += 1;
                        if *have == *t {
                            self.short = self.short.saturating_sub(1);
                        }
                    }
                }
                self.reveals.insert(m, r);
                self.round = Round::Reveal;
                Ok(())
            }
        }
    }

    /// The secrets the unmasking needs: each survivor's self-mask seed,
    /// and the mask key of each member that shared but did not survive
    /// and masked with a survivor.
    fn needed(&self, set: &SurvivorSet) -> Vec<(MemberId, Secret)> {
        let mut out: Vec<(MemberId, Secret)> = set
            .members
            .iter()
            .map(|u| (u.clone(), Secret::SelfSeed))
            .collect();
        let mut dropped = BTreeSet::new();
        for input in self.inputs.values() {
            for v in &input.partners {
                if !set.contains(v) {
                    dropped.insert(v.clone());
                }
            }
        }
        out.extend(dropped.into_iter().map(|v| (v, Secret::MaskKey)));
        out
    }

    fn collected(&self) -> BTreeMap<(MemberId, Secret), Vec<(&MemberId, &SecretShare)>> {
        let mut by: BTreeMap<(MemberId, Secret), Vec<(&MemberId, &SecretShare)>> = BTreeMap::new();
        for r in self.reveals.values() {
            for a in &r.answers {
                by.entry((a.about.clone(), a.secret))
                    .or_default()
                    .push((&r.member, &a.share));
            }
        }
        by
    }

    /// Where the cycle stands and whom the edge waits for.
    pub fn progress(&self) -> Progress {
        let not_in = |pool: Vec<MemberId>, have: &dyn Fn(&MemberId) -> bool| -> Vec<MemberId> {
            pool.into_iter().filter(|m| !have(m)).collect()
        };
        let waiting = match self.round {
            Round::Advertise => not_in(self.roster.ids(), &|m| self.bundles.contains_key(m)),
            Round::Share => not_in(self.bundles.keys().cloned().collect(), &|m| {
                self.shares.contains_key(m)
            }),
            Round::Mask => not_in(self.shares.keys().cloned().collect(), &|m| {
                self.inputs.contains_key(m)
            }),
            Round::Confirm | Round::Reveal => match &self.set {
                Some(set) => self.waiting_for_reveals(set),
                None => Vec::new(),
            },
            Round::Done => Vec::new(),
        };
        Progress {
            round: self.round,
            waiting,
        }
    }

    /// Survivors that have not answered yet and hold a share of a secret
    /// still short of its threshold.
    fn waiting_for_reveals(&self, set: &SurvivorSet) -> Vec<MemberId> {
        let got = self.collected();
        let mut waiting = BTreeSet::new();
        for (about, secret) in self.needed(set) {
            let have = got.get(&(about.clone(), secret)).map_or(0, Vec::len);
            if have >= self.threshold_of(&about) {
                continue;
            }
            for h in self.holders_of(&about) {
                if set.contains(&h) && !self.reveals.contains_key(&h) {
                    waiting.insert(h);
                }
            }
        }
        waiting.into_iter().collect()
    }

    /// Recovers every needed secret and returns the sum of the survivors'
    /// vectors. Refuses with the members it still waits for, or names a
    /// member whose recovered secret does not match its commitment.
    pub fn unmask(&mut self) -> Result<Vec<Vec<u64>>, Refusal> {
        let sums = match self.unmask_job()?.run() {
            Err(Refusal::NotEnoughShares { .. }) => {
                let set = self.set()?.clone();
                return Err(Refusal::NotEnoughShares {
                    waiting: self.waiting_for_reveals(&set),
                });
            }
            other => other?,
        };
        self.finish_unmask();
        Ok(sums)
    }

    /// The unmasking as an owned job ([`UnmaskJob::run`]), so that it can
    /// run off the edge's request path; [`Server::finish_unmask`] marks the
    /// cycle done once it succeeded. Refuses as [`Server::unmask`] does
    /// before any recovery.
    pub fn unmask_job(&self) -> Result<UnmaskJob, Refusal> {
        let set = self.set()?.clone();
        if self.round == Round::Done {
            return Err(Refusal::WrongRound {
                expected: Round::Reveal,
                actual: Round::Done,
            });
        }
        if self.round != Round::Reveal {
            return Err(Refusal::NotEnoughShares {
                waiting: self.waiting_for_reveals(&set),
            });
        }
        let got = self.collected();
        let needed = self
            .needed(&set)
            .into_iter()
            .map(|(about, secret)| {
                let t = self.threshold_of(&about);
                let mut shares: Vec<SecretShare> = got
                    .get(&(about.clone(), secret))
                    .map(|v| v.iter().map(|(_, s)| (*s).clone()).collect())
                    .unwrap_or_default();
                shares.sort_by(|a, b| a.x.cmp(&b.x));
                let bundle = &self.bundles[&about].bundle;
                let check = match secret {
                    Secret::SelfSeed => bundle.self_commitment,
                    Secret::MaskKey => bundle.mask_pk,
                };
                ((about, secret), shares, t, check)
            })
            .collect();
        let survivors = set
            .members
            .iter()
            .map(|u| (self.inputs[u].clone(), self.bundles[u].bundle.mask_pk))
            .collect();
        Ok(UnmaskJob {
            session: self.session.clone(),
            shape: self.shape,
            needed,
            survivors,
        })
    }

    /// Marks the cycle unmasked (after its [`UnmaskJob`] succeeded).
    pub fn finish_unmask(&mut self) {
        self.round = Round::Done;
    }
}

/// What unmasking a cycle needs, owned (see [`Server::unmask_job`]); its
/// [`UnmaskJob::run`] refuses a secret short of its threshold with
/// `NotEnoughShares` naming the members whose secrets are short.
pub struct UnmaskJob {
    session: Session,
    shape: (usize, usize),
    /// Each needed secret, its shares sorted by abscissa, its threshold
    /// and its public check (seed commitment or mask public key).
    needed: Vec<((MemberId, Secret), Vec<SecretShare>, usize, [u8; 32])>,
    /// Each survivor's masked input and mask public key.
    survivors: Vec<(MaskedInput, [u8; 32])>,
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
    /// Recovers every needed secret and sums the survivors' unmasked
    /// vectors; names a member whose recovered secret does not match its
    /// commitment.
    pub fn run(self) -> Result<Vec<Vec<u64>>, Refusal> {
        let session = &self.session;
        // Which t shares each needed secret is recovered from: the first t
        // by abscissa. Recoveries from the same abscissae share their
        // Lagrange coefficients (with every holder answering, that is all
        // of them), computed once: each recovery is then O(t).
        let mut windows: BTreeMap<Vec<[u8; 32]>, Option<Vec<Scalar>>> = BTreeMap::new();
        for (_, shares, t, _) in &self.needed {
            if shares.len() >= *t {
                windows
                    .entry(shares[..*t].iter().map(|s| s.x).collect())
                    .or_insert(None);
            }
        }
        let keys: Vec<Vec<[u8; 32]>> = windows.keys().cloned().collect();
        let coefficients: Vec<Option<Vec<Scalar>>> =
            keys.par_iter().map(|xs| lagrange_at_zero(xs)).collect();
        for (k, c) in keys.into_iter().zip(coefficients) {
            windows.insert(k, c);
        }
        let outcomes: Vec<Result<Option<((MemberId, Secret), [u8; 32])>, Refusal>> = self
            .needed
            .par_iter()
            .map(|((about, secret), shares, t, expected)| {
                let t = *t;
                if shares.len() < t {
                    return Ok(None);
                }
                let check = |s: &Scalar| match secret {
                    Secret::SelfSeed => seed_commitment(session, about, &s.to_bytes()) == *expected,
                    Secret::MaskKey => mask_public(&s.to_bytes()) == *expected,
                };
                let refs: Vec<&SecretShare> = shares.iter().collect();
                let xs: Vec<[u8; 32]> = refs[..t].iter().map(|s| s.x).collect();
                let first = windows
                    .get(&xs)
                    .and_then(Option::as_ref)
                    .and_then(|l| combine_with(l, &refs[..t]))
                    .filter(check);
                // A member sent a wrong share: slide the window (one bad share
                // among more than t is then always left out).
                let found = first
                    .or_else(|| {
                        (1..=refs.len() - t)
                            .find_map(|start| combine(&refs[start..start + t]).filter(check))
                    })
                    .ok_or_else(|| Refusal::BadRecovery(about.clone()))?;
                Ok(Some(((about.clone(), *secret), found.to_bytes())))
            })
            .collect();
        let mut recovered: BTreeMap<(MemberId, Secret), [u8; 32]> = BTreeMap::new();
        let mut short = Vec::new();
        for (o, ((about, _), _, _, _)) in outcomes.into_iter().zip(&self.needed) {
            match o? {
                Some((k, v)) => {
                    recovered.insert(k, v);
                }
                None => short.push(about.clone()),
            }
        }
        if !short.is_empty() {
            return Err(Refusal::NotEnoughShares { waiting: short });
        }
        let (fields, slots) = self.shape;
        let zero = || vec![vec![0u64; slots]; fields];
        let add = |mut acc: Vec<Vec<u64>>, v: Vec<Vec<u64>>| {
            for (a, x) in acc.iter_mut().zip(v) {
                for (a, x) in a.iter_mut().zip(x) {
                    *a = a.wrapping_add(x);
                }
            }
            acc
        };
        let survived: BTreeSet<&MemberId> = self.survivors.iter().map(|(i, _)| &i.member).collect();
        self.survivors
            .par_iter()
            .map(|(input, u_pk)| -> Result<Vec<Vec<u64>>, Refusal> {
                let u = &input.member;
                let seed = &recovered[&(u.clone(), Secret::SelfSeed)];
                let self_mask = self_key(seed, session, u);
                let mut removals = Vec::new();
                for v in input.partners.iter().filter(|v| !survived.contains(v)) {
                    let secret = StaticSecret::from(recovered[&(v.clone(), Secret::MaskKey)]);
                    let key = pair_key(&secret, u_pk, session, u, v)
                        .ok_or_else(|| Refusal::WeakKey(u.clone()))?;
                    removals.push((-pair_sign(u, v), key));
                }
                let mut out = input.vectors.clone();
                for (f, v) in out.iter_mut().enumerate() {
                    apply(&self_mask, f as u32, -1, v);
                    for (sign, key) in &removals {
                        apply(key, f as u32, *sign, v);
                    }
                }
                Ok(out)
            })
            .try_reduce(zero, |a, b| Ok(add(a, b)))
    }
}
