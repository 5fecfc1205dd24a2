use pb_units::limits::{CONTEXT_ENERGY_BUDGET, MAX_PRICE_UNITS, MAX_SLOT_WH};
use pb_units::{CycleId, Money, PriceUnits, SlotCount};
use serde::{Deserialize, Serialize};

use crate::data::check_range;
use crate::{BillingModel, ModelError};

/// The public context of a cycle: its prices per slot and billing model.
///
/// Deserialisation goes through [`CycleContext::new`], so a context from
/// outside is checked like one built here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Fields")]
pub struct CycleContext {
    cycle: CycleId,
    model: BillingModel,
    trading: Vec<PriceUnits>,
    retail: Vec<PriceUnits>,
    feed_in: Vec<PriceUnits>,
}

/// The serialised form, checked on the way in.
#[derive(Deserialize)]
struct Fields {
    cycle: CycleId,
    model: BillingModel,
    trading: Vec<PriceUnits>,
    retail: Vec<PriceUnits>,
    feed_in: Vec<PriceUnits>,
}

impl TryFrom<Fields> for CycleContext {
    type Error = ModelError;
    fn try_from(f: Fields) -> Result<Self, ModelError> {
        CycleContext::new(f.cycle, f.model, f.trading, f.retail, f.feed_in)
    }
}

fn check_prices(
    field: &'static str,
    values: &[PriceUnits],
    expected: usize,
) -> Result<(), ModelError> {
    if values.len() != expected {
        return Err(ModelError::Length {
            field,
            expected,
            found: values.len(),
        });
    }
    check_range(field, values.iter().map(|p| p.0), MAX_PRICE_UNITS)
}

/// Checks the largest energy cost a household could reach with these
/// prices, `sum_t max(|trading_t|, |other_t|) * MAX_SLOT_WH`, against
/// [`CONTEXT_ENERGY_BUDGET`], naming the slot of the largest price.
fn check_energy_budget(
    side: &'static str,
    trading: &[PriceUnits],
    other: &[PriceUnits],
) -> Result<(), ModelError> {
    let mut bound: u128 = 0;
    let mut top = (0usize, 0u64);
    for (slot, (p, o)) in trading.iter().zip(other).enumerate() {
        let price = p.0.unsigned_abs().max(o.0.unsigned_abs());
        if price > top.1 {
            top = (slot, price);
        }
        bound += price as u128 * MAX_SLOT_WH as u128;
    }
    if bound > CONTEXT_ENERGY_BUDGET {
        return Err(ModelError::PriceBudget {
            side,
            slots: trading.len(),
            slot: top.0,
            price: PriceUnits(top.1 as i64).per_kwh().to_string(),
            reach: Money(bound as i128).to_decimal_string(),
            limit: Money(CONTEXT_ENERGY_BUDGET as i128).to_decimal_string(),
        });
    }
    Ok(())
}

impl CycleContext {
    /// Checks that the three price vectors have one valid length, that
    /// every price is within `MAX_PRICE_UNITS`, and that the energy cost a
    /// household could reach with them fits [`CONTEXT_ENERGY_BUDGET`]
    /// (design section 2).
    pub fn new(
        cycle: CycleId,
        model: BillingModel,
        trading: Vec<PriceUnits>,
        retail: Vec<PriceUnits>,
        feed_in: Vec<PriceUnits>,
    ) -> Result<CycleContext, ModelError> {
        SlotCount::new(trading.len())?;
        check_prices("trading", &trading, trading.len())?;
        check_prices("retail", &retail, trading.len())?;
        check_prices("feed_in", &feed_in, trading.len())?;
        check_energy_budget("retail", &trading, &retail)?;
        check_energy_budget("feed_in", &trading, &feed_in)?;
        Ok(CycleContext {
            cycle,
            model,
            trading,
            retail,
            feed_in,
        })
    }

    /// The cycle.
    pub fn cycle(&self) -> CycleId {
        self.cycle
    }
    /// The billing model.
    pub fn model(&self) -> BillingModel {
        self.model
    }
    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.trading.len()
    }
    /// Trading price `p` per slot.
    pub fn trading(&self) -> &[PriceUnits] {
        &self.trading
    }
    /// Retail price `r` per slot.
    pub fn retail(&self) -> &[PriceUnits] {
        &self.retail
    }
    /// Feed-in price `f` per slot.
    pub fn feed_in(&self) -> &[PriceUnits] {
        &self.feed_in
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialisation_checks_like_the_constructor() {
        let good = CycleContext::new(
            CycleId(1),
            BillingModel::Ucs,
            vec![PriceUnits(1)],
            vec![PriceUnits(2)],
            vec![PriceUnits(3)],
        )
        .unwrap();
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<CycleContext>(&json).unwrap(), good);
        let short = json.replace("\"retail\":[2]", "\"retail\":[]");
        assert!(serde_json::from_str::<CycleContext>(&short).is_err());
        let big = json.replace("\"retail\":[2]", "\"retail\":[999999999999]");
        assert!(serde_json::from_str::<CycleContext>(&big).is_err());
    }

    #[test]
    fn bad_contexts_are_refused() {
        let p = |n: usize| vec![PriceUnits(1); n];
        assert!(CycleContext::new(CycleId(1), BillingModel::Ucs, p(3), p(3), p(3)).is_ok());
        assert!(matches!(
            CycleContext::new(CycleId(1), BillingModel::Ucs, p(3), p(2), p(3)),
            Err(ModelError::Length {
                field: "retail",
                ..
            })
        ));
        assert!(CycleContext::new(CycleId(1), BillingModel::Ucs, p(0), p(0), p(0)).is_err());
        let mut big = p(3);
        big[2] = PriceUnits(MAX_PRICE_UNITS + 1);
        assert!(matches!(
            CycleContext::new(CycleId(1), BillingModel::Ucs, p(3), p(3), big),
            Err(ModelError::Range {
                field: "feed_in",
                slot: 2,
                ..
            })
        ));
    }

    #[test]
    fn prices_that_could_overflow_an_encrypted_bill_are_refused() {
        // 96 slots at 100 currency/kWh and 100 kWh: 960,000 currency.
        let top = vec![PriceUnits(MAX_PRICE_UNITS); 96];
        let e = CycleContext::new(CycleId(1), BillingModel::Ucs, top.clone(), top.clone(), top)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("960000.00000000 currency") && e.contains("slot 0"),
            "{e}"
        );
        assert!(e.contains("175921.86044415 currency"), "{e}");
        // The same bound from the feed-in side alone.
        let low = vec![PriceUnits(1); 96];
        let mut feed = low.clone();
        for f in &mut feed[..18] {
            *f = PriceUnits(-MAX_PRICE_UNITS);
        }
        assert!(
            CycleContext::new(
                CycleId(1),
                BillingModel::Ucs,
                low.clone(),
                low.clone(),
                feed
            )
            .is_err()
        );
        // Just within: the budget divided evenly over the slots.
        let per_slot = (CONTEXT_ENERGY_BUDGET / 96 / MAX_SLOT_WH as u128) as i64;
        let even = vec![PriceUnits(per_slot); 96];
        assert!(
            CycleContext::new(
                CycleId(1),
                BillingModel::Ucs,
                even.clone(),
                even.clone(),
                even
            )
            .is_ok()
        );
        let over = vec![PriceUnits(per_slot + 1); 96];
        assert!(
            CycleContext::new(
                CycleId(1),
                BillingModel::Ucs,
                over.clone(),
                over.clone(),
                over
            )
            .is_err()
        );
    }
}
