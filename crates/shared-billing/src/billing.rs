use std::collections::{BTreeMap, BTreeSet};

use pb_glwe::eval::EvalError;
use pb_glwe::ntt::CrtNtt;
use pb_glwe::params::POLYNOMIAL_SIZE;
use pb_glwe::{BudgetError, CompactPublicKey};
use pb_hiding::{DropoutCorrection, HiddenBill, HiddenData};
use pb_model::{Aggregates, CycleContext, ModelError};
use pb_przs::{decode, sub_assign};
use pb_units::limits::{DEFAULT_MIN_MEMBERS, MAX_MEMBERS};
use pb_units::{CommunityId, CycleId, MemberId};
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use thiserror::Error;

use crate::{ComputeBackend, CpuBackend, EvalJob};

/// Why the billing authority refused a call. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BillingError {
    /// The data was hidden for another community than this billing
    /// authority's (its member id may coincide with one of ours).
    #[error("data of community {found:?}, this billing authority bills community {expected:?}")]
    OtherCommunity {
        /// This billing authority's community.
        expected: String,
        /// The community the data names.
        found: String,
    },
    /// The member is not registered.
    #[error("unknown member {0}")]
    UnknownMember(MemberId),
    /// The member is registered already.
    #[error("member {0} is registered already")]
    MemberExists(MemberId),
    /// Too many members.
    #[error("a community has at most {MAX_MEMBERS} members")]
    TooManyMembers,
    /// The public key is malformed.
    #[error("malformed public key of member {0}")]
    BadPublicKey(MemberId),
    /// No context was recorded for the cycle.
    #[error("no context recorded for {0}")]
    NoContext(CycleId),
    /// A different context was recorded for the cycle.
    #[error("a different context is recorded for {0}")]
    ContextExists(CycleId),
    /// The member was not a member when the cycle's context was recorded.
    #[error("{member} is not a member of {cycle}")]
    NotInCycle {
        /// The member.
        member: MemberId,
        /// The cycle.
        cycle: CycleId,
    },
    /// The member submitted already for this cycle.
    #[error("{member} already submitted data for {cycle}")]
    AlreadySubmitted {
        /// The member.
        member: MemberId,
        /// The cycle.
        cycle: CycleId,
    },
    /// The member was declared dropped out of the cycle: a late submission
    /// would expose it, so it is refused.
    #[error("{member} dropped out of {cycle}: late data refused")]
    DroppedOut {
        /// The member.
        member: MemberId,
        /// The cycle.
        cycle: CycleId,
    },
    /// The data was prepared for another model or number of slots.
    #[error("data does not match the context of {cycle}: {what}")]
    ContextMismatch {
        /// The cycle.
        cycle: CycleId,
        /// What differs.
        what: &'static str,
    },
    /// The data is internally inconsistent.
    #[error("malformed data: {0}")]
    Malformed(&'static str),
    /// A dropout correction is not expected from this member or is for a
    /// different set of missing members.
    #[error("unexpected dropout correction from {0}")]
    UnexpectedCorrection(MemberId),
    /// The cycle cannot be billed yet.
    #[error("{cycle} is not ready: waiting for {waiting} member(s)")]
    NotReady {
        /// The cycle.
        cycle: CycleId,
        /// Members whose data or correction is missing.
        waiting: usize,
    },
    /// Too few members would be billed together.
    #[error("{cycle} has {have} billed members, at least {need} are required")]
    TooFewMembers {
        /// The cycle.
        cycle: CycleId,
        /// Members that would be billed.
        have: usize,
        /// The minimum.
        need: usize,
    },
    /// The cycle was billed already; it is never billed twice.
    #[error("{0} is billed already")]
    AlreadyBilled(CycleId),
    /// The cycle's rates cannot be derived.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The cycle's weights exceed the noise or range budget.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// The cycle's aggregates give rates beyond the encrypted budget.
    #[error(transparent)]
    OverBudget(#[from] crate::budget::OverBudget),
    /// The backend failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// Where a cycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleStatus {
    /// Waiting for data (or dropout corrections).
    Collecting {
        /// Members whose data or correction is still missing.
        waiting: usize,
    },
    /// Everything is in: [`SharedBilling::compute_bills`] can run.
    Ready,
    /// Bills were computed.
    Billed,
}

#[derive(Debug)]
struct Cycle {
    ctx: CycleContext,
    members: BTreeSet<MemberId>,
    data: BTreeMap<MemberId, HiddenData>,
    dropped: BTreeSet<MemberId>,
    corrections: BTreeMap<MemberId, DropoutCorrection>,
    billed: bool,
}

impl Cycle {
    fn waiting(&self) -> usize {
        let survivors = self.members.len() - self.dropped.len();
        let missing_data = survivors - self.data.len();
        let missing_corrections = if self.dropped.is_empty() {
            0
        } else {
            survivors - self.corrections.len()
        };
        missing_data + missing_corrections
    }
}

/// The billing authority's state and computation.
pub struct SharedBilling {
    backend: Box<dyn ComputeBackend>,
    ntt: CrtNtt,
    min_members: usize,
    community: Option<CommunityId>,
    members: BTreeMap<MemberId, CompactPublicKey>,
    cycles: BTreeMap<CycleId, Cycle>,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for SharedBilling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBilling")
            .field("backend", &self.backend.name())
            .field("community", &self.community)
            .field("members", &self.members.len())
            .field("cycles", &self.cycles.len())
            .finish()
    }
}

impl Default for SharedBilling {
    fn default() -> Self {
        SharedBilling::new(Box::new(CpuBackend::new()))
    }
}

impl SharedBilling {
    /// A billing authority on `backend`, with fresh OS randomness and the
    /// default minimum of members.
    pub fn new(backend: Box<dyn ComputeBackend>) -> SharedBilling {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        SharedBilling::with_seed(backend, seed)
    }

    /// Like [`SharedBilling::new`] with reproducible re-randomisation (tests
    /// and backend comparisons only).
    pub fn with_seed(backend: Box<dyn ComputeBackend>, seed: [u8; 32]) -> SharedBilling {
        SharedBilling {
            backend,
            ntt: CrtNtt::new(POLYNOMIAL_SIZE),
            min_members: DEFAULT_MIN_MEMBERS,
            community: None,
            members: BTreeMap::new(),
            cycles: BTreeMap::new(),
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// A billing authority of `community` on `backend` (fresh OS
    /// randomness): [`SharedBilling::record_data`] refuses data hidden for
    /// any other community.
    pub fn for_community(
        backend: Box<dyn ComputeBackend>,
        community: CommunityId,
    ) -> SharedBilling {
        SharedBilling::new(backend).with_community(community)
    }

    /// This billing authority, bound to `community` (see
    /// [`SharedBilling::for_community`]). Without it (`new`, `with_seed`),
    /// the community data names is not checked.
    pub fn with_community(mut self, community: CommunityId) -> SharedBilling {
        self.community = Some(community);
        self
    }

    /// The community this billing authority bills, if bound to one.
    pub fn community(&self) -> Option<&CommunityId> {
        self.community.as_ref()
    }

    /// Sets the minimum number of members billed together (never below
    /// `pb_units::limits::MIN_BILLABLE_MEMBERS`, 3).
    pub fn set_min_members(&mut self, min: usize) {
        self.min_members = pb_units::limits::min_members(min);
    }

    /// Gives the backend back (to rebuild the state around it).
    pub fn into_backend(self) -> Box<dyn ComputeBackend> {
        self.backend
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Registers a member with its compact public key.
    pub fn register_member(
        &mut self,
        member: MemberId,
        key: CompactPublicKey,
    ) -> Result<(), BillingError> {
        if self.members.contains_key(&member) {
            return Err(BillingError::MemberExists(member));
        }
        if self.members.len() >= MAX_MEMBERS {
            return Err(BillingError::TooManyMembers);
        }
        if !key.0.is_well_formed() {
            return Err(BillingError::BadPublicKey(member));
        }
        self.members.insert(member, key);
        Ok(())
    }

    /// Records a cycle's context; the cycle's members are those registered
    /// now. Recording the same context again is a no-op.
    pub fn record_context(&mut self, ctx: CycleContext) -> Result<(), BillingError> {
        let members: Vec<MemberId> = self.members.keys().cloned().collect();
        self.record_context_with(ctx, members)
    }

    /// Records a cycle's context with an explicit member set (all of them
    /// registered): how a restarted billing authority restores a cycle
    /// whose membership was frozen before later members joined.
    pub fn record_context_with(
        &mut self,
        ctx: CycleContext,
        members: impl IntoIterator<Item = MemberId>,
    ) -> Result<(), BillingError> {
        if let Some(c) = self.cycles.get(&ctx.cycle()) {
            return if c.ctx == ctx {
                Ok(())
            } else {
                Err(BillingError::ContextExists(ctx.cycle()))
            };
        }
        let members: BTreeSet<MemberId> = members.into_iter().collect();
        if let Some(unknown) = members.iter().find(|m| !self.members.contains_key(*m)) {
            return Err(BillingError::UnknownMember(unknown.clone()));
        }
        self.cycles.insert(
            ctx.cycle(),
            Cycle {
                ctx,
                members,
                data: BTreeMap::new(),
                dropped: BTreeSet::new(),
                corrections: BTreeMap::new(),
                billed: false,
            },
        );
        Ok(())
    }

    /// The context of a cycle.
    pub fn context(&self, cycle: CycleId) -> Option<&CycleContext> {
        self.cycles.get(&cycle).map(|c| &c.ctx)
    }

    fn cycle(&self, id: CycleId) -> Result<&Cycle, BillingError> {
        self.cycles.get(&id).ok_or(BillingError::NoContext(id))
    }

    /// Records a household's hidden data after checking it against the
    /// community (when bound to one), the cycle's context and membership.
    pub fn record_data(&mut self, data: HiddenData) -> Result<(), BillingError> {
        if let Some(ours) = &self.community
            && *ours != data.community
        {
            return Err(BillingError::OtherCommunity {
                expected: ours.0.clone(),
                found: data.community.0.clone(),
            });
        }
        let c = self.cycle(data.cycle)?;
        let (member, cycle) = (data.member.clone(), data.cycle);
        if c.billed {
            return Err(BillingError::AlreadyBilled(cycle));
        }
        if !c.members.contains(&member) {
            return Err(BillingError::NotInCycle { member, cycle });
        }
        if c.dropped.contains(&member) {
            return Err(BillingError::DroppedOut { member, cycle });
        }
        if c.data.contains_key(&member) {
            return Err(BillingError::AlreadySubmitted { member, cycle });
        }
        if data.model != c.ctx.model() {
            return Err(BillingError::ContextMismatch {
                cycle,
                what: "billing model",
            });
        }
        if data.slots.get() != c.ctx.slots() {
            return Err(BillingError::ContextMismatch {
                cycle,
                what: "number of slots",
            });
        }
        data.check_shape().map_err(BillingError::Malformed)?;
        if let Some(c) = self.cycles.get_mut(&cycle) {
            c.data.insert(member, data);
        }
        Ok(())
    }

    /// After the deadline: declares every member of the cycle that has not
    /// submitted as dropped out, and returns them. Survivors must then send
    /// their [`DropoutCorrection`]s for exactly these members.
    pub fn declare_dropouts(&mut self, cycle: CycleId) -> Result<Vec<MemberId>, BillingError> {
        let c = self.cycle(cycle)?;
        if c.billed {
            return Err(BillingError::AlreadyBilled(cycle));
        }
        let missing: Vec<MemberId> = c
            .members
            .iter()
            .filter(|m| !c.data.contains_key(*m))
            .cloned()
            .collect();
        let survivors = c.members.len() - missing.len();
        if survivors < self.min_members {
            return Err(BillingError::TooFewMembers {
                cycle,
                have: survivors,
                need: self.min_members,
            });
        }
        if let Some(c) = self.cycles.get_mut(&cycle) {
            c.dropped.extend(missing.iter().cloned());
        }
        Ok(missing)
    }

    /// Members declared dropped out of a cycle.
    pub fn dropped(&self, cycle: CycleId) -> Result<Vec<MemberId>, BillingError> {
        Ok(self.cycle(cycle)?.dropped.iter().cloned().collect())
    }

    /// Records a survivor's dropout correction.
    pub fn record_correction(&mut self, correction: DropoutCorrection) -> Result<(), BillingError> {
        let c = self.cycle(correction.cycle)?;
        let member = correction.member.clone();
        let expected: Vec<MemberId> = c.dropped.iter().cloned().collect();
        let valid = !c.billed
            && c.data.contains_key(&member)
            && !c.corrections.contains_key(&member)
            && correction.missing == expected
            && correction.vectors.len() == 3
            && correction.vectors.iter().all(|v| v.len() == c.ctx.slots());
        if !valid {
            return Err(BillingError::UnexpectedCorrection(member));
        }
        if let Some(c) = self.cycles.get_mut(&correction.cycle) {
            c.corrections.insert(member, correction);
        }
        Ok(())
    }

    /// Forgets a cycle (its data, corrections and state), typically once
    /// its bills are stored elsewhere; returns whether it was known.
    pub fn retire(&mut self, cycle: CycleId) -> bool {
        self.cycles.remove(&cycle).is_some()
    }

    /// Where a cycle stands.
    pub fn status(&self, cycle: CycleId) -> Result<CycleStatus, BillingError> {
        let c = self.cycle(cycle)?;
        Ok(if c.billed {
            CycleStatus::Billed
        } else if c.waiting() == 0 {
            CycleStatus::Ready
        } else {
            CycleStatus::Collecting {
                waiting: c.waiting(),
            }
        })
    }

    /// Whether [`SharedBilling::compute_bills`] can run for the cycle.
    pub fn is_ready(&self, cycle: CycleId) -> bool {
        matches!(self.status(cycle), Ok(CycleStatus::Ready))
    }

    /// The community aggregates of a ready cycle (all the billing authority
    /// ever learns about the households' data).
    pub fn aggregates(&self, cycle: CycleId) -> Result<Aggregates, BillingError> {
        let c = self.cycle(cycle)?;
        if c.waiting() > 0 {
            return Err(BillingError::NotReady {
                cycle,
                waiting: c.waiting(),
            });
        }
        let slots = c.ctx.slots();
        let mut out = Aggregates::default();
        for (i, &agg) in c.ctx.model().aggregates().iter().enumerate() {
            let vectors: Vec<&[u64]> = c.data.values().map(|d| d.masked[i].as_slice()).collect();
            let mut sum = self.backend.sum_masked(slots, &vectors);
            for corr in c.corrections.values() {
                sub_assign(&mut sum, &corr.vectors[i])
                    .map_err(|_| BillingError::Malformed("correction length"))?;
            }
            out.insert(agg, sum.into_iter().map(decode).collect());
        }
        Ok(out)
    }

    /// Bills a ready cycle: unmasks the aggregates, derives and checks the
    /// weights, evaluates every household. A cycle is billed once only.
    pub fn compute_bills(&mut self, cycle: CycleId) -> Result<Vec<HiddenBill>, BillingError> {
        self.bill(cycle, None)
    }

    /// Bills a cycle whose aggregates were unmasked elsewhere (by secure
    /// aggregation, `pb-secagg`, over exactly the members whose data is
    /// recorded); the recorded data's masked vectors are not summed.
    pub fn compute_bills_with(
        &mut self,
        cycle: CycleId,
        aggregates: Aggregates,
    ) -> Result<Vec<HiddenBill>, BillingError> {
        self.bill(cycle, Some(aggregates))
    }

    fn bill(
        &mut self,
        cycle: CycleId,
        given: Option<Aggregates>,
    ) -> Result<Vec<HiddenBill>, BillingError> {
        let c = self.cycle(cycle)?;
        if c.billed {
            return Err(BillingError::AlreadyBilled(cycle));
        }
        if c.data.len() < self.min_members {
            if c.waiting() > 0 {
                return Err(BillingError::NotReady {
                    cycle,
                    waiting: c.waiting(),
                });
            }
            return Err(BillingError::TooFewMembers {
                cycle,
                have: c.data.len(),
                need: self.min_members,
            });
        }
        let aggregates = match given {
            Some(a) => a,
            None => self.aggregates(cycle)?,
        };
        let prepared = crate::stream::prepare_weights(&self.ntt, &c.ctx, &aggregates)?;
        let mut seeds = vec![[0u8; 32]; c.data.len()];
        let mut rng = self.rng.clone();
        for s in &mut seeds {
            rng.fill_bytes(s);
        }
        let mut jobs = Vec::with_capacity(c.data.len());
        for (d, seed) in c.data.values().zip(&seeds) {
            let key = self
                .members
                .get(&d.member)
                .ok_or_else(|| BillingError::UnknownMember(d.member.clone()))?;
            jobs.push(EvalJob {
                ciphertexts: &d.ciphertexts,
                public_key: key,
                rerandomizer: *seed,
            });
        }
        let totals = self.backend.evaluate(&prepared, &jobs)?;
        let bills = c
            .data
            .keys()
            .zip(totals)
            .map(|(member, totals)| HiddenBill {
                member: member.clone(),
                cycle,
                totals,
            })
            .collect();
        self.rng = rng;
        if let Some(c) = self.cycles.get_mut(&cycle) {
            c.billed = true;
        }
        Ok(bills)
    }
}
