use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use pb_units::Money;
use pb_units::limits::MAX_SLOT_WH;
use serde::{Deserialize, Serialize};

use crate::{CycleContext, ModelError, SlotVectors, Vector};

/// A community-wide per-slot aggregate, summed by PRZS (design section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Aggregate {
    /// Total deviation `sum dev`.
    TD,
    /// Number of accepted consumers.
    NC,
    /// Number of accepted producers.
    NP,
    /// Number of over-consumers.
    NFC,
    /// Number of over-suppliers.
    NFP,
    /// Sum of over-consumed amounts.
    SOC,
    /// Sum of over-supplied amounts.
    SOP,
}

impl Aggregate {
    /// The household's own contribution to this aggregate, per slot.
    pub fn contribution(self, v: &SlotVectors) -> &[i64] {
        match self {
            Aggregate::TD => &v.dev,
            Aggregate::NC => &v.ac,
            Aggregate::NP => &v.ap,
            Aggregate::NFC => &v.fc,
            Aggregate::NFP => &v.fp,
            Aggregate::SOC => &v.oc,
            Aggregate::SOP => &v.op,
        }
    }

    /// Field tag of the aggregate in PRZS masks.
    pub fn field(self) -> u32 {
        self as u32
    }
}

/// Per-slot community aggregates of one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Aggregates(BTreeMap<Aggregate, Vec<i64>>);

impl Aggregates {
    /// Sets one aggregate.
    pub fn insert(&mut self, which: Aggregate, values: Vec<i64>) {
        self.0.insert(which, values);
    }

    /// One aggregate, checked for length.
    pub fn get(&self, which: Aggregate, slots: usize) -> Result<&[i64], ModelError> {
        match self.0.get(&which) {
            Some(v) if v.len() == slots => Ok(v),
            _ => Err(ModelError::Aggregate(which)),
        }
    }

    /// Sums the contributions of households in clear (tests and the
    /// `--plaintext` path only: the billing authority never sees them).
    pub fn in_clear<'a>(
        model: BillingModel,
        slots: usize,
        households: impl IntoIterator<Item = &'a SlotVectors>,
    ) -> Aggregates {
        let mut sums: BTreeMap<Aggregate, Vec<i64>> = model
            .aggregates()
            .iter()
            .map(|&a| (a, vec![0i64; slots]))
            .collect();
        for v in households {
            for (a, sum) in sums.iter_mut() {
                for (s, x) in sum.iter_mut().zip(a.contribution(v)) {
                    *s += x;
                }
            }
        }
        Aggregates(sums)
    }
}

/// How the imbalance cost of a slot is shared (design section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BillingModel {
    /// Universal Cost Split, cost-neutral: over-consumers share
    /// `(r - p) * (-TD)` equally when `TD < 0`, over-suppliers share
    /// `(p - f) * TD` when `TD > 0`.
    #[default]
    Ucs,
    /// The reference code's variant: same, divided by `max(NC, 1)` and
    /// `max(NP, 1)` instead of the numbers of over-consumers/-suppliers.
    UcsReference,
    /// The same imbalance cost split in proportion to each contributor's
    /// over-amount.
    Proportional,
}

impl BillingModel {
    /// All models.
    pub const ALL: [BillingModel; 3] = [
        BillingModel::Ucs,
        BillingModel::UcsReference,
        BillingModel::Proportional,
    ];

    /// Vectors of the bill side, in layout order.
    pub fn bill_side(self) -> [Vector; 3] {
        match self {
            BillingModel::Proportional => [Vector::CA, Vector::CR, Vector::OC],
            _ => [Vector::CA, Vector::CR, Vector::FC],
        }
    }

    /// Vectors of the reward side, in layout order.
    pub fn reward_side(self) -> [Vector; 3] {
        match self {
            BillingModel::Proportional => [Vector::SA, Vector::SR, Vector::OP],
            _ => [Vector::SA, Vector::SR, Vector::FP],
        }
    }

    /// Aggregates the model needs, `TD` first.
    pub fn aggregates(self) -> [Aggregate; 3] {
        match self {
            BillingModel::Ucs => [Aggregate::TD, Aggregate::NFC, Aggregate::NFP],
            BillingModel::UcsReference => [Aggregate::TD, Aggregate::NC, Aggregate::NP],
            BillingModel::Proportional => [Aggregate::TD, Aggregate::SOC, Aggregate::SOP],
        }
    }

    /// The per-slot imbalance rates `(charge, loss)`: what multiplies the
    /// bill side's third vector and what is subtracted per unit of the
    /// reward side's third vector.
    fn rates(self, t: usize, ctx: &CycleContext, agg: [&[i64]; 3]) -> (i128, i128) {
        let p = ctx.trading()[t].0 as i128;
        let r = ctx.retail()[t].0 as i128;
        let f = ctx.feed_in()[t].0 as i128;
        let td = agg[0][t] as i128;
        let (nc, np) = (agg[1][t] as i128, agg[2][t] as i128);
        let (nc, np) = match self {
            BillingModel::UcsReference => (nc.max(1), np.max(1)),
            _ => (nc, np),
        };
        let charge = if td < 0 && nc > 0 {
            div_round_half_away((r - p) * -td, nc)
        } else {
            0
        };
        let loss = if td > 0 && np > 0 {
            div_round_half_away((p - f) * td, np)
        } else {
            0
        };
        (charge, loss)
    }

    /// The cycle's public weights from its context and aggregates.
    pub fn weights(
        self,
        ctx: &CycleContext,
        aggregates: &Aggregates,
    ) -> Result<Weights, ModelError> {
        let t_count = ctx.slots();
        let needs = self.aggregates();
        let agg = [
            aggregates.get(needs[0], t_count)?,
            aggregates.get(needs[1], t_count)?,
            aggregates.get(needs[2], t_count)?,
        ];
        let mut bill = vec![0i64; 3 * t_count];
        let mut reward = vec![0i64; 3 * t_count];
        for t in 0..t_count {
            let (charge, loss) = self.rates(t, ctx, agg);
            let fit = |value: i128| {
                i64::try_from(value).map_err(|_| ModelError::Weight { slot: t, value })
            };
            bill[t] = ctx.trading()[t].0;
            bill[t_count + t] = ctx.retail()[t].0;
            bill[2 * t_count + t] = fit(charge)?;
            reward[t] = ctx.trading()[t].0;
            reward[t_count + t] = ctx.feed_in()[t].0;
            reward[2 * t_count + t] = fit(-loss)?;
        }
        Ok(Weights {
            model: self,
            slots: t_count,
            bill,
            reward,
        })
    }
}

impl fmt::Display for BillingModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BillingModel::Ucs => "ucs",
            BillingModel::UcsReference => "ucs-reference",
            BillingModel::Proportional => "proportional",
        })
    }
}

impl FromStr for BillingModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BillingModel::ALL
            .into_iter()
            .find(|m| m.to_string() == s)
            .ok_or_else(|| {
                format!("unknown billing model {s:?} (expected ucs, ucs-reference or proportional)")
            })
    }
}

/// `num / den` rounded to the nearest integer, halves away from zero.
///
/// ```
/// use pb_model::div_round_half_away;
/// assert_eq!(div_round_half_away(5, 2), 3);
/// assert_eq!(div_round_half_away(-5, 2), -3);
/// assert_eq!(div_round_half_away(7, -3), -2);
/// ```
pub fn div_round_half_away(num: i128, den: i128) -> i128 {
    assert!(den != 0, "division by zero");
    let q = num / den;
    let r = num % den;
    if 2 * r.unsigned_abs() >= den.unsigned_abs() {
        q + if (num < 0) == (den < 0) { 1 } else { -1 }
    } else {
        q
    }
}

/// The public weights of a cycle, in the layout of the model's sides
/// (vector-major: all slots of the first vector, then the second...). The
/// reward weight of the third vector is negative (a loss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    /// The model.
    pub model: BillingModel,
    /// Slots per vector.
    pub slots: usize,
    /// Weights of the bill side.
    pub bill: Vec<i64>,
    /// Weights of the reward side.
    pub reward: Vec<i64>,
}

impl Weights {
    /// Bill of a household in clear: the dot products of its sides with the
    /// weights.
    pub fn apply(&self, v: &SlotVectors) -> Bill {
        let dot = |side: &[Vector], w: &[i64]| -> i128 {
            v.side(side)
                .iter()
                .zip(w)
                .map(|(&x, &y)| x as i128 * y as i128)
                .sum()
        };
        Bill {
            bill: Money(dot(&self.model.bill_side(), &self.bill)),
            reward: Money(dot(&self.model.reward_side(), &self.reward)),
        }
    }

    /// Largest absolute bill and reward any household with values within
    /// the input limits could get with these weights. The first two vectors
    /// of a side exclude each other in every slot, and an over-amount never
    /// exceeds the slot's energy.
    pub fn worst_case_totals(&self) -> (u128, u128) {
        let side = |w: &[i64], third: Vector| -> u128 {
            let t = self.slots;
            (0..t)
                .map(|i| {
                    let energy = w[i].unsigned_abs().max(w[t + i].unsigned_abs()) as u128
                        * MAX_SLOT_WH as u128;
                    energy + w[2 * t + i].unsigned_abs() as u128 * third.max_value() as u128
                })
                .sum()
        };
        (
            side(&self.bill, self.model.bill_side()[2]),
            side(&self.reward, self.model.reward_side()[2]),
        )
    }
}

/// A household's bill for one cycle: two exact totals. There are no
/// per-slot shares: they would reveal the community's per-slot rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// What the household pays.
    pub bill: Money,
    /// What the household is paid.
    pub reward: Money,
}

impl Bill {
    /// `bill - reward`: positive means the household owes money.
    pub fn total(&self) -> Money {
        self.bill - self.reward
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(div_round_half_away(1, 2), 1);
        assert_eq!(div_round_half_away(-1, 2), -1);
        assert_eq!(div_round_half_away(1, 3), 0);
        assert_eq!(div_round_half_away(2, 3), 1);
        assert_eq!(div_round_half_away(-2, 3), -1);
        assert_eq!(div_round_half_away(10, 5), 2);
    }

    #[test]
    fn models_parse_and_print() {
        for m in BillingModel::ALL {
            assert_eq!(m.to_string().parse::<BillingModel>().unwrap(), m);
        }
        assert!("ucs2".parse::<BillingModel>().is_err());
        assert_eq!(
            serde_json::to_string(&BillingModel::UcsReference).unwrap(),
            "\"ucs-reference\""
        );
    }
}
