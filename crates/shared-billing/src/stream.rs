//! Streaming billing: a cycle billed batch by batch, with nothing per
//! household held between batches.
//!
//! [`SharedBilling`](crate::SharedBilling) keeps every submission of a cycle
//! and every member's public key in memory until the cycle is billed. A
//! billing authority of 100,000 members cannot: it stores each submission as
//! it arrives and, once the cycle's aggregates are unmasked (by secure
//! aggregation, `pb_secagg::server::Server::unmask`), builds one
//! [`CycleBiller`] for the cycle and feeds it the households in batches of
//! [`ComputeBackend::preferred_batch`] read from its store, each submission
//! with its member's one stored public key.
//!
//! A `CycleBiller` computes the cycle's weights and checks their budget once.
//! The re-randomisation seed of each household depends only on the cycle's
//! seed and the household's position among the billed members (in member-id
//! order), never on the batching, so the bills are bit-identical to
//! [`SharedBilling::compute_bills_with`](crate::SharedBilling::compute_bills_with)
//! on the same inputs whatever the batch size, and a billing authority that
//! is restarted mid-cycle with the same seed recomputes a lost batch into
//! exactly the bills it would have stored.

use std::collections::BTreeSet;

use pb_glwe::ntt::CrtNtt;
use pb_glwe::params::POLYNOMIAL_SIZE;
use pb_glwe::{CompactPublicKey, PreparedWeights};
use pb_hiding::{HiddenBill, HiddenData};
use pb_model::{Aggregates, CycleContext};
use pb_units::{CycleId, MemberId};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::{BillingError, ComputeBackend, EvalJob};

/// ChaCha words drawn per household seed (32 bytes).
const WORDS_PER_SEED: u128 = 8;

/// The cycle's weights, derived from the aggregates and checked against the
/// encrypted budget (shared with [`crate::SharedBilling`]).
pub(crate) fn prepare_weights(
    ntt: &CrtNtt,
    ctx: &CycleContext,
    aggregates: &Aggregates,
) -> Result<PreparedWeights, BillingError> {
    let weights = ctx.model().weights(ctx, aggregates)?;
    crate::budget::check(&weights)?;
    Ok(PreparedWeights::new(ntt, &weights.bill, &weights.reward)?)
}

/// One cycle's billing, ready to evaluate any batch of its households.
///
/// Built once per cycle; holds the prepared weights (a few MB whatever the
/// number of members) and the sorted ids of the billed members (the small
/// index that fixes each household's re-randomisation seed).
pub struct CycleBiller {
    ctx: CycleContext,
    weights: PreparedWeights,
    members: Vec<MemberId>,
    seed: [u8; 32],
}

impl std::fmt::Debug for CycleBiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleBiller")
            .field("cycle", &self.ctx.cycle())
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl CycleBiller {
    /// Prepares the billing of `ctx`'s cycle for `members`, exactly the
    /// members whose data the aggregates sum (any order; no id twice):
    /// derives the weights from `aggregates` and checks them against the
    /// budget, once.
    ///
    /// `seed` keys every household's re-randomisation: fresh OS randomness
    /// per cycle, kept with the cycle if a restarted billing authority must
    /// recompute identical bills. A
    /// [`SharedBilling::with_seed`](crate::SharedBilling::with_seed) on
    /// the same seed bills its first cycle identically.
    ///
    /// Refuses fewer than `pb_units::limits::min_members(min_members)`
    /// members, a member listed twice, and aggregates whose rates the model
    /// cannot derive or the budget cannot hold.
    pub fn new(
        ctx: &CycleContext,
        aggregates: &Aggregates,
        members: impl IntoIterator<Item = MemberId>,
        min_members: usize,
        seed: [u8; 32],
    ) -> Result<CycleBiller, BillingError> {
        let cycle = ctx.cycle();
        let mut list: Vec<MemberId> = members.into_iter().collect();
        let given = list.len();
        list.sort();
        list.dedup();
        if list.len() != given {
            return Err(BillingError::Malformed("a member is listed twice"));
        }
        let need = pb_units::limits::min_members(min_members);
        if list.len() < need {
            return Err(BillingError::TooFewMembers {
                cycle,
                have: list.len(),
                need,
            });
        }
        let weights = prepare_weights(&CrtNtt::new(POLYNOMIAL_SIZE), ctx, aggregates)?;
        Ok(CycleBiller {
            ctx: ctx.clone(),
            weights,
            members: list,
            seed,
        })
    }

    /// The cycle.
    pub fn cycle(&self) -> CycleId {
        self.ctx.cycle()
    }

    /// The billed members, sorted by id.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// The re-randomisation seed of the household at `index` among the
    /// billed members.
    fn rerandomizer(&self, index: usize) -> [u8; 32] {
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        rng.set_word_pos(WORDS_PER_SEED * index as u128);
        let mut out = [0u8; 32];
        rng.fill_bytes(&mut out);
        out
    }

    /// Evaluates one batch of the cycle's households, each submission with
    /// its member's compact public key, into their hidden bills (in the
    /// batch's order).
    ///
    /// Every submission is checked as
    /// [`SharedBilling::record_data`](crate::SharedBilling::record_data) checks it (cycle, membership,
    /// model, slots, shape) and every key as `register_member` does; a
    /// member twice in one batch is refused. Nothing is kept between
    /// batches: billing the same household again gives the same bill.
    pub fn bill_batch(
        &self,
        backend: &dyn ComputeBackend,
        batch: &[(HiddenData, CompactPublicKey)],
    ) -> Result<Vec<HiddenBill>, BillingError> {
        let cycle = self.ctx.cycle();
        let mut seen = BTreeSet::new();
        let mut jobs = Vec::with_capacity(batch.len());
        for (d, key) in batch {
            let member = &d.member;
            if d.cycle != cycle {
                return Err(BillingError::ContextMismatch {
                    cycle,
                    what: "cycle",
                });
            }
            let index =
                self.members
                    .binary_search(member)
                    .map_err(|_| BillingError::NotInCycle {
                        member: member.clone(),
                        cycle,
                    })?;
            if !seen.insert(index) {
                return Err(BillingError::AlreadySubmitted {
                    member: member.clone(),
                    cycle,
                });
            }
            if d.model != self.ctx.model() {
                return Err(BillingError::ContextMismatch {
                    cycle,
                    what: "billing model",
                });
            }
            if d.slots.get() != self.ctx.slots() {
                return Err(BillingError::ContextMismatch {
                    cycle,
                    what: "number of slots",
                });
            }
            d.check_shape().map_err(BillingError::Malformed)?;
            if !key.0.is_well_formed() {
                return Err(BillingError::BadPublicKey(member.clone()));
            }
            jobs.push(EvalJob {
                ciphertexts: &d.ciphertexts,
                public_key: key,
                rerandomizer: self.rerandomizer(index),
            });
        }
        let totals = backend.evaluate(&self.weights, &jobs)?;
        Ok(batch
            .iter()
            .zip(totals)
            .map(|((d, _), totals)| HiddenBill {
                member: d.member.clone(),
                cycle,
                totals,
            })
            .collect())
    }
}
