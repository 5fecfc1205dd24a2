//! The per-cycle limit that only the aggregates decide (design section 2):
//! the weights a cycle derives must fit the homomorphic budget. The edge
//! checks it before evaluating, and the plaintext path
//! ([`crate::community::plaintext_bills`]) checks the very same thing, so
//! both accept and refuse the same communities. The refusal says, in
//! currency, which slot's imbalance rate breaks the budget and what the
//! limit is.

use pb_glwe::params::{BudgetError, MAX_TOTAL, check_total_bound, check_weights};
use pb_model::{Vector, Weights};
use pb_units::Money;
use thiserror::Error;

/// A cycle whose weights do not fit the encrypted budget.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "slot {slot}: the imbalance rate of {rate} currency ({side} side) lets a household's {side} \
     reach {reach} currency this cycle, and {why}; the community's deviation in that slot is \
     too large to bill (check the promises and meter values of that slot)"
)]
pub struct OverBudget {
    /// The slot whose imbalance rate is largest.
    pub slot: usize,
    /// `bill` or `reward`.
    pub side: &'static str,
    /// That slot's rate, currency per flagged slot (UCS) or per Wh
    /// (proportional), as a decimal.
    pub rate: String,
    /// The worst-case total of the side, currency.
    pub reach: String,
    /// What is exceeded, with the limit in currency.
    pub why: String,
    /// The underlying budget check.
    #[source]
    pub budget: BudgetError,
}

fn money(units: u128) -> String {
    Money(units.min(i128::MAX as u128) as i128).to_decimal_string()
}

/// Checks a cycle's weights against the noise and range budget of the
/// encrypted evaluation (exactly the checks `pb_glwe` applies).
pub fn check(weights: &Weights) -> Result<(), OverBudget> {
    let (bill_bound, reward_bound) = weights.worst_case_totals();
    let t = weights.slots;
    let sides = [
        (
            "bill",
            &weights.bill,
            bill_bound,
            weights.model.bill_side()[2],
        ),
        (
            "reward",
            &weights.reward,
            reward_bound,
            weights.model.reward_side()[2],
        ),
    ];
    for (side, w, bound, third) in sides {
        let failure = match check_weights(w.iter()) {
            Err(e) => Some(e),
            Ok(_) => check_total_bound(bound).err(),
        };
        let Some(budget) = failure else { continue };
        // The slot whose imbalance weight is largest is the one to name.
        let (slot, rate) = (0..t)
            .map(|i| (i, w[2 * t + i]))
            .max_by_key(|(_, r)| r.unsigned_abs())
            .unwrap_or((0, 0));
        let per = if third == Vector::FC || third == Vector::FP {
            1
        } else {
            // Proportional: the rate is per Wh; say it per kWh.
            1000
        };
        let why = match &budget {
            BudgetError::TotalRange { limit, .. } => {
                format!("an encrypted bill holds at most {} currency", money(*limit))
            }
            BudgetError::Noise { .. } | BudgetError::WeightTooLarge { .. } => format!(
                "a rate this large exceeds the encryption's noise budget (about {} currency \
                 per slot and household at most)",
                money(noise_limit_per_slot(third))
            ),
        };
        return Err(OverBudget {
            slot,
            side,
            rate: Money(rate as i128 * per).to_decimal_string()
                + if per == 1 { "" } else { " per kWh" },
            reach: money(bound),
            why,
            budget,
        });
    }
    Ok(())
}

/// The largest imbalance contribution of one slot that the noise budget
/// allows on its own (for the message only).
fn noise_limit_per_slot(third: Vector) -> u128 {
    let max_weight = (pb_glwe::params::MAX_NOISE - pb_glwe::params::RERANDOMISATION_NOISE)
        / pb_glwe::params::PRODUCT_NOISE_FACTOR;
    max_weight * third.max_value() as u128
}

// The input limits of `pb_units` speak of the decodable range of `pb_glwe`.
const _: () = assert!(pb_units::limits::MAX_BILL_UNITS == MAX_TOTAL as u128);
