//! The edge's state of one cycle's rounds, without what grows with `n k`:
//! it checks each member message against the cycle (roster, graph,
//! round, what the member sent before) and records a small [`Step`] of
//! it, never the encrypted shares, the masked vectors or the revealed
//! answers themselves. Those are the caller's to keep (the edge writes
//! them to its store, keyed so that each later request reads only its
//! part: the shares by holder, the answers by owner); [`crate::Server`]
//! keeps them in memory for a community run in one process.
//!
//! Per member it holds the signed key bundle, a 16-byte digest of each
//! later message (so that the same message again is accepted once and a
//! different one refused), its confirmation's signature and, from the
//! confirm round on, the count of answers about its one needed secret:
//! a few hundred bytes, whatever `k`.
//!
//! A [`Step`] is what the caller stores as the round's event; applying the
//! stored steps again in order ([`Rounds::apply`]) rebuilds the state after
//! a restart.

use std::collections::BTreeSet;
use std::sync::Arc;

use pb_units::MemberId;
use serde::{Deserialize, Serialize};

use crate::client::MaskedInput;
use crate::keys::SignedBundle;
use crate::params::GraphParams;
use crate::roster::{Roster, SignedRoster};
use crate::shares::{EncryptedShare, Reveal, SEALED_LEN, Secret};
use crate::unmask::{Answerers, Needed, Survivor, UnmaskJob};
use crate::{Confirmation, Graph, Refusal, Round, Session, SurvivorBits, SurvivorSet, hash};

/// A digest of a member's message (the first 16 bytes of a domain-tagged
/// SHA-256): the same message again is recognised, a different one
/// refused. A member that found two of its own messages with one digest
/// would only have its second taken for its first.
pub type Digest = [u8; 16];

fn digest(label: &str, parts: &[&[u8]]) -> Digest {
    let h = hash(label, parts);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[..16]);
    d
}

/// The digest of a member's encrypted shares.
pub fn shares_digest(shares: &[EncryptedShare]) -> Digest {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(3 * shares.len());
    for s in shares {
        parts.push(s.from.as_str().as_bytes());
        parts.push(s.to.as_str().as_bytes());
        parts.push(&s.ciphertext);
    }
    digest("pbill/secagg/shares-digest/v1", &parts)
}

/// The digest of a member's masked input.
pub fn input_digest(input: &MaskedInput) -> Digest {
    let mut bytes = Vec::new();
    for v in &input.vectors {
        bytes.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut parts: Vec<&[u8]> = vec![input.member.as_str().as_bytes(), &bytes];
    parts.extend(input.partners.iter().map(|p| p.as_str().as_bytes()));
    digest("pbill/secagg/input-digest/v1", &parts)
}

/// The digest of a member's answers.
pub fn reveal_digest(r: &Reveal) -> Digest {
    let mut parts: Vec<&[u8]> = vec![r.member.as_str().as_bytes(), &r.set];
    let kinds: Vec<[u8; 1]> = r
        .answers
        .iter()
        .map(|a| [u8::from(a.secret == Secret::MaskKey)])
        .collect();
    for (a, kind) in r.answers.iter().zip(&kinds) {
        parts.push(a.about.as_str().as_bytes());
        parts.push(kind);
        parts.push(&a.share.x);
        parts.push(&a.share.y);
    }
    digest("pbill/secagg/reveal-digest/v1", &parts)
}

/// A checked member message, as recorded: what the caller stores as the
/// round's event (small: digests, not shares, vectors or answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// A member's signed key bundle.
    Advertise(Box<SignedBundle>),
    /// A member's encrypted shares, one to each of its holders.
    Share {
        /// The sender.
        from: MemberId,
        /// Their digest.
        digest: Digest,
    },
    /// A member's masked input (masked with its partners).
    Submit {
        /// The member.
        member: MemberId,
        /// Its digest.
        digest: Digest,
    },
    /// A survivor's signature over the survivor set.
    Confirm(Confirmation),
    /// A survivor's answers.
    Reveal {
        /// The survivor.
        member: MemberId,
        /// Their digest.
        digest: Digest,
        /// Whom the answers are about, in order (the kind of each follows
        /// from the survivor set).
        about: Vec<MemberId>,
    },
}

impl Step {
    /// The member the step is of.
    pub fn member(&self) -> &MemberId {
        match self {
            Step::Advertise(b) => &b.bundle.member,
            Step::Share { from, .. } => from,
            Step::Submit { member, .. } | Step::Reveal { member, .. } => member,
            Step::Confirm(c) => &c.member,
        }
    }
}

/// The needed secret of a member (from the confirm round on): which, its
/// threshold and the answers about it so far.
#[derive(Debug, Clone, Copy)]
struct Need {
    secret: Secret,
    threshold: u32,
    have: u32,
}

/// What the cycle holds of one roster member.
#[derive(Debug, Default)]
struct Slot {
    bundle: Option<Box<SignedBundle>>,
    shared: Option<Digest>,
    submitted: Option<Digest>,
    confirmation: Option<Box<[u8]>>,
    revealed: Option<Digest>,
    need: Option<Need>,
}

/// How many members took each step.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    advertised: usize,
    shared: usize,
    submitted: usize,
    revealed: usize,
}

/// Where a cycle stands, and who the edge waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The current round.
    pub round: Round,
    /// Members whose message for this round has not arrived (for the
    /// reveal round: survivors whose answers would complete a recovery).
    pub waiting: Vec<MemberId>,
}

/// A cycle's graph over roster indices: `ring[p]` is the member at ring
/// position `p`, `pos[i]` the position of roster member `i`; each member
/// neighbours the `half` members on either side (every other member when
/// `complete`). 8 bytes per member.
#[derive(Debug)]
pub(crate) struct Ring {
    ring: Vec<u32>,
    pos: Vec<u32>,
    half: usize,
    complete: bool,
}

impl Ring {
    /// The neighbours of roster member `i`, as sorted roster indices
    /// (roster order is member order).
    pub(crate) fn neighbours(&self, i: usize) -> Vec<usize> {
        let n = self.ring.len();
        let mut out: Vec<usize> = if self.complete {
            (0..n).filter(|&j| j != i).collect()
        } else {
            let p = self.pos[i] as usize;
            (1..=self.half)
                .flat_map(|d| {
                    [
                        self.ring[(p + d) % n] as usize,
                        self.ring[(p + n - d) % n] as usize,
                    ]
                })
                .collect()
        };
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The edge's state of one cycle's rounds (see the module's doc).
#[derive(Debug)]
pub struct Rounds {
    session: Session,
    roster: Roster,
    params: GraphParams,
    /// The graph as roster indices.
    ring: Arc<Ring>,
    min_survivors: usize,
    shape: (usize, usize),
    round: Round,
    slots: Vec<Slot>,
    counts: Counts,
    set: Option<(SurvivorSet, [u8; 32], SurvivorBits)>,
    /// Needed secrets still short of their threshold.
    short: usize,
}

impl Rounds {
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
    ) -> Result<Rounds, Refusal> {
        let r = roster.verify(pinned_operator, min_survivors)?;
        let session = Session {
            community: r.community.clone(),
            cycle,
            roster: r.fingerprint(),
        };
        let params = r.params()?;
        let graph = Graph::new(&session, &r.ids(), &params);
        let n = r.members.len();
        let index = |m: &MemberId| r.members.binary_search_by(|e| e.member.cmp(m)).ok();
        let ring: Vec<u32> = graph
            .ring()
            .iter()
            .map(|m| index(m).map(|i| i as u32))
            .collect::<Option<_>>()
            .ok_or_else(|| Refusal::RosterMalformed("the graph lists a non-member".into()))?;
        let mut pos = vec![0u32; n];
        for (p, &i) in ring.iter().enumerate() {
            pos[i as usize] = p as u32;
        }
        let ring = Arc::new(Ring {
            ring,
            pos,
            half: graph.half(),
            complete: graph.is_complete(),
        });
        let slots_of = (0..n).map(|_| Slot::default()).collect();
        Ok(Rounds {
            session,
            roster: r.clone(),
            params,
            ring,
            min_survivors,
            shape: (fields, slots),
            round: Round::Advertise,
            slots: slots_of,
            counts: Counts::default(),
            set: None,
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
    /// The member list the cycle runs on.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }
    /// The announced survivor set (from the confirm round on).
    pub fn survivor_set(&self) -> Option<&SurvivorSet> {
        self.set.as_ref().map(|(s, _, _)| s)
    }
    /// The announced survivor set as the members fetch it: one bit per
    /// roster member (from the confirm round on).
    pub fn survivor_bits(&self) -> Option<&SurvivorBits> {
        self.set.as_ref().map(|(_, _, b)| b)
    }

    fn index(&self, m: &MemberId) -> Option<usize> {
        self.roster
            .members
            .binary_search_by(|e| e.member.cmp(m))
            .ok()
    }

    fn slot(&self, m: &MemberId) -> Option<&Slot> {
        self.index(m).map(|i| &self.slots[i])
    }

    fn slot_mut(&mut self, m: &MemberId) -> Option<&mut Slot> {
        self.index(m).map(move |i| &mut self.slots[i])
    }

    fn id(&self, i: usize) -> &MemberId {
        &self.roster.members[i].member
    }

    fn advertised(&self, m: &MemberId) -> bool {
        self.slot(m).is_some_and(|s| s.bundle.is_some())
    }

    fn has_shared(&self, m: &MemberId) -> bool {
        self.slot(m).is_some_and(|s| s.shared.is_some())
    }

    fn require(&self, round: Round) -> Result<(), Refusal> {
        self.round.require(round)
    }

    /// The graph neighbours of roster member `i`, as sorted roster indices
    /// (roster order is member order).
    fn neighbours_ix(&self, i: usize) -> Vec<usize> {
        self.ring.neighbours(i)
    }

    fn neighbours_where(&self, m: &MemberId, pred: impl Fn(&Slot) -> bool) -> Vec<MemberId> {
        let Some(i) = self.index(m) else {
            return Vec::new();
        };
        self.neighbours_ix(i)
            .into_iter()
            .filter(|&j| pred(&self.slots[j]))
            .map(|j| self.id(j).clone())
            .collect()
    }

    /// Neighbours of `m` that advertised: the holders of its shares.
    pub fn holders_of(&self, m: &MemberId) -> Vec<MemberId> {
        self.neighbours_where(m, |s| s.bundle.is_some())
    }

    /// Neighbours of `m` whose shares reached the edge: its partners (the
    /// members whose shares addressed to `m` the edge holds).
    pub fn partners_of(&self, m: &MemberId) -> Vec<MemberId> {
        self.neighbours_where(m, |s| s.shared.is_some())
    }

    /// Whether `m`'s message of `round` was accepted (a core that resends
    /// it after a restart, once the round has closed, is told it is in).
    pub fn has_message(&self, round: Round, m: &MemberId) -> bool {
        let Some(s) = self.slot(m) else { return false };
        match round {
            Round::Advertise => s.bundle.is_some(),
            Round::Share => s.shared.is_some(),
            Round::Mask => s.submitted.is_some(),
            Round::Confirm => s.confirmation.is_some(),
            Round::Reveal => s.revealed.is_some(),
            Round::Done => false,
        }
    }

    /// Whether `m`'s masked input is in.
    pub fn has_input(&self, m: &MemberId) -> bool {
        self.has_message(Round::Mask, m)
    }

    // ---- checks: nothing changes --------------------------------------

    /// Advertise round: checks a member's signed key bundle. `None`: the
    /// same bundle is recorded already.
    pub fn check_advertise(&self, bundle: &SignedBundle) -> Result<Option<Step>, Refusal> {
        self.require(Round::Advertise)?;
        bundle.verify(&self.session, &self.roster)?;
        let m = &bundle.bundle.member;
        match self.slot(m).and_then(|s| s.bundle.as_deref()) {
            Some(b) if b == bundle => Ok(None),
            Some(_) => Err(Refusal::Duplicate(m.clone())),
            None => Ok(Some(Step::Advertise(Box::new(bundle.clone())))),
        }
    }

    /// Share round: checks a member's encrypted shares, exactly one to
    /// each of its holders.
    pub fn check_share(
        &self,
        from: &MemberId,
        shares: &[EncryptedShare],
    ) -> Result<Option<Step>, Refusal> {
        self.require(Round::Share)?;
        if !self.advertised(from) {
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
        let d = shares_digest(shares);
        match self.slot(from).and_then(|s| s.shared) {
            Some(x) if x == d => Ok(None),
            Some(_) => Err(Refusal::Duplicate(from.clone())),
            None => Ok(Some(Step::Share {
                from: from.clone(),
                digest: d,
            })),
        }
    }

    /// Mask round: checks a member's masked vectors, masked with exactly
    /// its partners.
    pub fn check_submit(&self, input: &MaskedInput) -> Result<Option<Step>, Refusal> {
        self.require(Round::Mask)?;
        let m = &input.member;
        if !self.has_shared(m) {
            return Err(Refusal::Absent(m.clone(), Round::Share));
        }
        if input.partners != self.partners_of(m) {
            return Err(Refusal::BadInput(
                m.clone(),
                "masked with other neighbours than shared",
            ));
        }
        let (fields, slots) = self.shape;
        if input.vectors.len() != fields || input.vectors.iter().any(|v| v.len() != slots) {
            return Err(Refusal::BadInput(
                m.clone(),
                "wrong number of fields or slots",
            ));
        }
        let d = input_digest(input);
        match self.slot(m).and_then(|s| s.submitted) {
            Some(x) if x == d => Ok(None),
            Some(_) => Err(Refusal::Duplicate(m.clone())),
            None => Ok(Some(Step::Submit {
                member: m.clone(),
                digest: d,
            })),
        }
    }

    fn announced(
        &self,
        expected: Round,
    ) -> Result<&(SurvivorSet, [u8; 32], SurvivorBits), Refusal> {
        if !matches!(self.round, Round::Confirm | Round::Reveal) {
            return Err(Refusal::WrongRound {
                expected,
                actual: self.round,
            });
        }
        self.set.as_ref().ok_or(Refusal::WrongRound {
            expected,
            actual: self.round,
        })
    }

    /// Confirm round: checks a survivor's signature over the set.
    pub fn check_confirm(&self, c: &Confirmation) -> Result<Option<Step>, Refusal> {
        let (set, hash, _) = self.announced(Round::Confirm)?;
        if !set.contains(&c.member) {
            return Err(Refusal::Absent(c.member.clone(), Round::Mask));
        }
        if c.set != *hash {
            return Err(Refusal::Equivocation);
        }
        self.roster
            .verify(&c.member, &Confirmation::message(&c.set), &c.signature)?;
        match self.slot(&c.member).and_then(|s| s.confirmation.as_deref()) {
            Some(sig) if sig == c.signature.as_slice() => Ok(None),
            Some(_) => Err(Refusal::Duplicate(c.member.clone())),
            None => Ok(Some(Step::Confirm(c.clone()))),
        }
    }

    /// Reveal round: checks a survivor's answers, one per neighbour whose
    /// shares it holds (at most), of the kind the survivor set calls for.
    pub fn check_reveal(&self, r: &Reveal) -> Result<Option<Step>, Refusal> {
        let (_, hash, _) = self.announced(Round::Reveal)?;
        let m = &r.member;
        if !self.has_message(Round::Confirm, m) {
            return Err(Refusal::Absent(m.clone(), Round::Confirm));
        }
        if r.set != *hash {
            return Err(Refusal::Equivocation);
        }
        let held = self.partners_of(m);
        let mut seen = BTreeSet::new();
        for a in &r.answers {
            let kind = if self.slot(&a.about).is_some_and(|s| s.submitted.is_some()) {
                Secret::SelfSeed
            } else {
                Secret::MaskKey
            };
            if held.binary_search(&a.about).is_err() || a.secret != kind || !seen.insert(&a.about) {
                return Err(Refusal::BadAnswer(m.clone(), a.about.clone()));
            }
        }
        let d = reveal_digest(r);
        match self.slot(m).and_then(|s| s.revealed) {
            Some(x) if x == d => Ok(None),
            Some(_) => Err(Refusal::Duplicate(m.clone())),
            None => Ok(Some(Step::Reveal {
                member: m.clone(),
                digest: d,
                about: r.answers.iter().map(|a| a.about.clone()).collect(),
            })),
        }
    }

    // ---- changes ------------------------------------------------------

    /// Records a checked step (one that a `check_*` returned, or a stored
    /// one replayed in order). Refuses, changing nothing, a step of
    /// another round, of a member off the roster, or of a member whose
    /// message of that round is recorded already.
    pub fn apply(&mut self, step: Step) -> Result<(), Refusal> {
        let m = step.member().clone();
        let i = self
            .index(&m)
            .ok_or_else(|| Refusal::NotInRoster(m.clone()))?;
        let dup = || Err(Refusal::Duplicate(m.clone()));
        match step {
            Step::Advertise(b) => {
                self.require(Round::Advertise)?;
                if self.slots[i].bundle.is_some() {
                    return dup();
                }
                self.slots[i].bundle = Some(b);
                self.counts.advertised += 1;
            }
            Step::Share { digest, .. } => {
                self.require(Round::Share)?;
                if self.slots[i].shared.is_some() {
                    return dup();
                }
                self.slots[i].shared = Some(digest);
                self.counts.shared += 1;
            }
            Step::Submit { digest, .. } => {
                self.require(Round::Mask)?;
                if self.slots[i].submitted.is_some() {
                    return dup();
                }
                self.slots[i].submitted = Some(digest);
                self.counts.submitted += 1;
            }
            Step::Confirm(c) => {
                self.announced(Round::Confirm)?;
                if self.slots[i].confirmation.is_some() {
                    return dup();
                }
                self.slots[i].confirmation = Some(c.signature.into_boxed_slice());
            }
            Step::Reveal { digest, about, .. } => {
                self.announced(Round::Reveal)?;
                if self.slots[i].revealed.is_some() {
                    return dup();
                }
                self.slots[i].revealed = Some(digest);
                self.counts.revealed += 1;
                for a in &about {
                    if let Some(need) = self.slot_mut(a).and_then(|s| s.need.as_mut()) {
                        need.have += 1;
                        if need.have == need.threshold {
                            self.short = self.short.saturating_sub(1);
                        }
                    }
                }
                self.round = Round::Reveal;
            }
        }
        Ok(())
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
        self.close(self.counts.advertised, Round::Share)
    }

    /// Ends the share round.
    pub fn close_share(&mut self) -> Result<(), Refusal> {
        self.require(Round::Share)?;
        self.close(self.counts.shared, Round::Mask)
    }

    /// Ends the mask round and announces the survivor set: the members
    /// whose masked vectors arrived. Counts, for each secret the unmasking
    /// needs, its threshold (an `O(n k)` pass, once).
    pub fn close_mask(&mut self) -> Result<SurvivorSet, Refusal> {
        self.require(Round::Mask)?;
        self.close(self.counts.submitted, Round::Confirm)?;
        let survivors: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].submitted.is_some())
            .collect();
        let set = SurvivorSet {
            session: self.session.clone(),
            members: survivors
                .iter()
                .map(|&i| self.roster.members[i].member.clone())
                .collect(),
        };
        // The secrets the unmasking needs: each survivor's self-mask seed,
        // and the mask key of each member that shared but did not survive
        // and neighbours a survivor (the graph is symmetric: it is then
        // that survivor's partner).
        let mut needed: Vec<(usize, Secret)> =
            survivors.iter().map(|&i| (i, Secret::SelfSeed)).collect();
        for (i, s) in self.slots.iter().enumerate() {
            if s.shared.is_some()
                && s.submitted.is_none()
                && self
                    .neighbours_ix(i)
                    .iter()
                    .any(|&u| self.slots[u].submitted.is_some())
            {
                needed.push((i, Secret::MaskKey));
            }
        }
        for &(i, secret) in &needed {
            let holders = self
                .neighbours_ix(i)
                .iter()
                .filter(|&&j| self.slots[j].bundle.is_some())
                .count();
            let t = self.params.threshold(holders);
            self.slots[i].need = Some(Need {
                secret,
                threshold: t as u32,
                have: 0,
            });
        }
        self.short = needed.len();
        // Every survivor is a roster member.
        let bits = set.to_bits(&self.roster)?;
        let hash = set.hash();
        self.set = Some((set.clone(), hash, bits));
        Ok(set)
    }

    /// The bundles a member needs: its neighbours that advertised.
    pub fn bundles_for(&self, m: &MemberId) -> Result<Vec<SignedBundle>, Refusal> {
        if !self.advertised(m) {
            return Err(Refusal::Absent(m.clone(), Round::Advertise));
        }
        Ok(self
            .holders_of(m)
            .iter()
            .filter_map(|v| self.slot(v)?.bundle.as_deref().cloned())
            .collect())
    }

    /// Refuses a member that did not share its own secrets the shares
    /// addressed to it (those of its partners, which the caller keeps).
    pub fn check_shares_for(&self, m: &MemberId) -> Result<(), Refusal> {
        if !self.has_shared(m) {
            return Err(Refusal::Absent(m.clone(), Round::Share));
        }
        Ok(())
    }

    /// The confirmations a member checks: those of its holders.
    pub fn confirmations_for(&self, m: &MemberId) -> Vec<Confirmation> {
        let Some((_, hash, _)) = &self.set else {
            return Vec::new();
        };
        self.holders_of(m)
            .into_iter()
            .filter_map(|v| {
                let sig = self.slot(&v)?.confirmation.as_deref()?.to_vec();
                Some(Confirmation {
                    member: v,
                    set: *hash,
                    signature: sig,
                })
            })
            .collect()
    }

    /// Whether every secret the unmasking needs has its threshold of
    /// answers (a running count: no pass over the cycle).
    pub fn complete(&self) -> bool {
        self.round == Round::Reveal && self.short == 0
    }

    /// Survivors that have not revealed yet (`O(n)`).
    pub fn not_revealed(&self) -> Vec<MemberId> {
        match &self.set {
            Some((set, _, _)) => set
                .members
                .iter()
                .filter(|m| !self.has_message(Round::Reveal, m))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    /// Where the cycle stands and whom the edge waits for.
    pub fn progress(&self) -> Progress {
        let ids = |pred: &dyn Fn(&Slot) -> bool| -> Vec<MemberId> {
            self.slots
                .iter()
                .zip(&self.roster.members)
                .filter(|(s, _)| pred(s))
                .map(|(_, e)| e.member.clone())
                .collect()
        };
        let waiting = match self.round {
            Round::Advertise => ids(&|s| s.bundle.is_none()),
            Round::Share => ids(&|s| s.bundle.is_some() && s.shared.is_none()),
            Round::Mask => ids(&|s| s.shared.is_some() && s.submitted.is_none()),
            Round::Confirm | Round::Reveal => self.waiting_for_reveals(),
            Round::Done => Vec::new(),
        };
        Progress {
            round: self.round,
            waiting,
        }
    }

    /// Survivors that have not answered yet and hold a share of a secret
    /// still short of its threshold (`O(short k)`).
    pub fn waiting_for_reveals(&self) -> Vec<MemberId> {
        let mut waiting = BTreeSet::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(need) = s.need else { continue };
            if need.have >= need.threshold {
                continue;
            }
            // A holder that survived (its input is in) and has not answered.
            for j in self.neighbours_ix(i) {
                let h = &self.slots[j];
                if h.bundle.is_some() && h.submitted.is_some() && h.revealed.is_none() {
                    waiting.insert(j);
                }
            }
        }
        waiting.into_iter().map(|j| self.id(j).clone()).collect()
    }

    /// The unmasking as an owned job ([`UnmaskJob::run`]: the caller
    /// brings the answers and the masked inputs it keeps), so that it can
    /// run off the edge's request path; [`Rounds::finish_unmask`] marks
    /// the cycle done once it succeeded. Refuses, before any recovery,
    /// with the members it waits for while a needed secret is short.
    /// `O(n)`, plus `O(k)` per member that dropped after sharing.
    pub fn unmask_job(&self) -> Result<UnmaskJob, Refusal> {
        let (set, _, _) = self.announced(Round::Reveal)?;
        if self.round != Round::Reveal || self.short > 0 {
            return Err(Refusal::NotEnoughShares {
                waiting: self.waiting_for_reveals(),
            });
        }
        let check = |i: usize, secret: Secret| -> Result<[u8; 32], Refusal> {
            let b = self.slots[i].bundle.as_ref().ok_or_else(|| {
                Refusal::Absent(self.roster.members[i].member.clone(), Round::Advertise)
            })?;
            Ok(match secret {
                Secret::SelfSeed => b.bundle.self_commitment,
                Secret::MaskKey => b.bundle.mask_pk,
            })
        };
        let mut needed = Vec::new();
        let mut dropped = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(need) = s.need {
                let about = self.id(i).clone();
                if need.secret == Secret::MaskKey {
                    dropped.push(about.clone());
                }
                needed.push(Needed {
                    check: check(i, need.secret)?,
                    about,
                    index: i,
                    secret: need.secret,
                    threshold: need.threshold as usize,
                    holders: Vec::new(),
                });
            }
        }
        // The survivors' partners that dropped: from the few that dropped.
        let mut removals: std::collections::BTreeMap<MemberId, Vec<MemberId>> =
            std::collections::BTreeMap::new();
        for v in &dropped {
            let Some(iv) = self.index(v) else { continue };
            for u in self.neighbours_ix(iv) {
                if self.slots[u].submitted.is_some() {
                    removals
                        .entry(self.id(u).clone())
                        .or_default()
                        .push(v.clone());
                }
            }
        }
        let mut survivors = Vec::with_capacity(set.members.len());
        for u in &set.members {
            let i = self
                .index(u)
                .ok_or_else(|| Refusal::NotInRoster(u.clone()))?;
            let mut dropped_partners = removals.remove(u).unwrap_or_default();
            dropped_partners.sort();
            survivors.push(Survivor {
                member: u.clone(),
                mask_pk: check(i, Secret::MaskKey)?,
                dropped_partners,
            });
        }
        let answerers = Answerers {
            ring: self.ring.clone(),
            ids: self
                .roster
                .members
                .iter()
                .map(|e| e.member.clone())
                .collect(),
            revealed: self.slots.iter().map(|s| s.revealed.is_some()).collect(),
        };
        Ok(UnmaskJob::new(
            self.session.clone(),
            self.shape,
            needed,
            survivors,
            answerers,
        ))
    }

    /// Marks the cycle unmasked (after its [`UnmaskJob`] succeeded).
    pub fn finish_unmask(&mut self) {
        self.round = Round::Done;
    }
}
