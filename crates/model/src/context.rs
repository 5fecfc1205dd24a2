use pb_units::limits::MAX_PRICE_UNITS;
use pb_units::{CycleId, PriceUnits, SlotCount};
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

impl CycleContext {
    /// Checks that the three price vectors have one valid length and that
    /// every price is within `MAX_PRICE_UNITS`.
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
}
