use pb_glwe::layout::{chunk_count, pack};
use pb_glwe::params::POLYNOMIAL_SIZE;
use pb_glwe::seeding::Seeder;
use pb_glwe::{CompactPublicKey, DecryptError, HiddenTotals, SecretKey, SeededGlwe};
use pb_model::{Bill, BillingModel, CycleContext, Data};
use pb_przs::{PairwiseKeys, PrzsError, encode};
use pb_units::{CommunityId, CycleId, MemberId, Money, SlotCount};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why hiding or decryption failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HidingError {
    /// The data or bill belongs to another member.
    #[error("this is {found}'s, not {expected}'s")]
    WrongMember {
        /// This context's member.
        expected: MemberId,
        /// The member named by the input.
        found: MemberId,
    },
    /// The data is for another cycle than the context.
    #[error("data for {found} under the context of {expected}")]
    WrongCycle {
        /// The context's cycle.
        expected: CycleId,
        /// The data's cycle.
        found: CycleId,
    },
    /// The data has another number of slots than the context.
    #[error("data has {found} slots, the cycle has {expected}")]
    Slots {
        /// The context's slots.
        expected: usize,
        /// The data's slots.
        found: usize,
    },
    /// PRZS failure.
    #[error(transparent)]
    Przs(#[from] PrzsError),
    /// Decryption failure.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
}

/// A household's data as the billing authority receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenData {
    /// The community the household hid it for (its keys'), so that a
    /// billing authority refuses data of another community whose member
    /// ids happen to coincide with its own.
    pub community: CommunityId,
    /// The household.
    pub member: MemberId,
    /// The cycle.
    pub cycle: CycleId,
    /// The model the data was prepared for.
    pub model: BillingModel,
    /// Slots of the cycle.
    pub slots: SlotCount,
    /// Masked contributions to the model's aggregates, in the order of
    /// [`BillingModel::aggregates`], one value per slot.
    pub masked: Vec<Vec<u64>>,
    /// Seeded GLWE ciphertexts of the packed bill and reward sides.
    pub ciphertexts: Vec<SeededGlwe>,
}

/// A household's encrypted bill and reward totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenBill {
    /// The household.
    pub member: MemberId,
    /// The cycle.
    pub cycle: CycleId,
    /// The evaluated ciphertext.
    pub totals: HiddenTotals,
}

/// A surviving member's pairwise masks with the members that dropped out of
/// a cycle, one vector per aggregate of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropoutCorrection {
    /// The surviving member.
    pub member: MemberId,
    /// The cycle.
    pub cycle: CycleId,
    /// The members it corrects for, sorted.
    pub missing: Vec<MemberId>,
    /// Masks, in the order of [`BillingModel::aggregates`].
    pub vectors: Vec<Vec<u64>>,
}

impl HiddenData {
    /// Checks internal consistency: a community named, slot count, three
    /// masked vectors of the cycle's length, the number of ciphertexts of
    /// the layout, body sizes.
    pub fn check_shape(&self) -> Result<(), &'static str> {
        if self.community.0.is_empty() {
            return Err("no community named");
        }
        let t = self.slots.get();
        if self.masked.len() != 3 || self.masked.iter().any(|v| v.len() != t) {
            return Err("masked aggregates do not match the slot count");
        }
        if self.ciphertexts.len() != chunk_count(3 * t) {
            return Err("number of ciphertexts does not match the slot count");
        }
        if !self.ciphertexts.iter().all(SeededGlwe::is_well_formed) {
            return Err("ciphertext body of the wrong size");
        }
        Ok(())
    }
}

impl HiddenBill {
    /// Checks the mask size.
    pub fn check_shape(&self) -> Result<(), &'static str> {
        if self.totals.mask.len() != POLYNOMIAL_SIZE {
            return Err("bill ciphertext of the wrong size");
        }
        Ok(())
    }
}

/// A household's keys: its PRZS pairwise keys and its GLWE secret key.
#[derive(Clone)]
pub struct HidingContext {
    keys: PairwiseKeys,
    secret: std::sync::Arc<SecretKey>,
}

impl std::fmt::Debug for HidingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidingContext")
            .field("member", self.keys.member())
            .finish_non_exhaustive()
    }
}

impl HidingContext {
    /// Combines a member's pairwise keys and GLWE secret key (owned, or
    /// shared behind an `Arc`: the key itself is not `Clone`).
    pub fn new(keys: PairwiseKeys, secret: impl Into<std::sync::Arc<SecretKey>>) -> HidingContext {
        HidingContext {
            keys,
            secret: secret.into(),
        }
    }

    /// A household's context whose aggregate contributions are left for
    /// SecAgg+ to mask (PRZS keys with no peer, [`PairwiseKeys::alone`]).
    pub fn for_secagg(
        community: &CommunityId,
        member: &MemberId,
        secret: impl Into<std::sync::Arc<SecretKey>>,
    ) -> HidingContext {
        HidingContext::new(PairwiseKeys::alone(community, member), secret)
    }

    /// The member.
    pub fn member(&self) -> &MemberId {
        self.keys.member()
    }

    /// The community (that of the pairwise keys); [`HidingContext::hide`]
    /// names it in every [`HiddenData`].
    pub fn community(&self) -> &CommunityId {
        self.keys.community()
    }

    /// The compact public key to register with the billing authority.
    pub fn public_key(&self, seeder: &mut dyn Seeder) -> CompactPublicKey {
        self.secret.public_key(seeder)
    }

    /// Masks the household's aggregate contributions and encrypts its billed
    /// vectors for the cycle of `ctx`.
    pub fn hide(
        &self,
        data: &Data,
        ctx: &CycleContext,
        seeder: &mut dyn Seeder,
    ) -> Result<HiddenData, HidingError> {
        self.check_member(data.member())?;
        if data.cycle() != ctx.cycle() {
            return Err(HidingError::WrongCycle {
                expected: ctx.cycle(),
                found: data.cycle(),
            });
        }
        if data.slots() != ctx.slots() {
            return Err(HidingError::Slots {
                expected: ctx.slots(),
                found: data.slots(),
            });
        }
        let model = ctx.model();
        let v = data.vectors();
        let masked = model
            .aggregates()
            .iter()
            .map(|&a| {
                let mut m: Vec<u64> = a.contribution(&v).iter().map(|&x| encode(x)).collect();
                self.keys.add_mask(ctx.cycle(), a.field(), &mut m);
                m
            })
            .collect();
        let ciphertexts = pack(&v.side(&model.bill_side()), &v.side(&model.reward_side()))
            .iter()
            .map(|m| self.secret.encrypt(m, seeder))
            .collect();
        Ok(HiddenData {
            community: self.community().clone(),
            member: data.member().clone(),
            cycle: ctx.cycle(),
            model,
            slots: SlotCount::new(ctx.slots()).map_err(|_| HidingError::Slots {
                expected: 0,
                found: ctx.slots(),
            })?,
            masked,
            ciphertexts,
        })
    }

    /// This member's masks with `missing` members for the cycle of `ctx`.
    pub fn dropout_correction(
        &self,
        ctx: &CycleContext,
        missing: &[MemberId],
    ) -> Result<DropoutCorrection, HidingError> {
        let mut missing = missing.to_vec();
        missing.sort();
        missing.dedup();
        let vectors = ctx
            .model()
            .aggregates()
            .iter()
            .map(|a| {
                self.keys
                    .dropout_correction(ctx.cycle(), a.field(), &missing, ctx.slots())
            })
            .collect::<Result<_, _>>()?;
        Ok(DropoutCorrection {
            member: self.member().clone(),
            cycle: ctx.cycle(),
            missing,
            vectors,
        })
    }

    /// Decrypts the household's bill.
    pub fn decrypt(&self, bill: &HiddenBill) -> Result<Bill, HidingError> {
        self.check_member(&bill.member)?;
        let (b, r) = self.secret.decrypt_totals(&bill.totals)?;
        Ok(Bill {
            bill: Money(b),
            reward: Money(r),
        })
    }

    fn check_member(&self, found: &MemberId) -> Result<(), HidingError> {
        if found != self.member() {
            return Err(HidingError::WrongMember {
                expected: self.member().clone(),
                found: found.clone(),
            });
        }
        Ok(())
    }
}
