//! The community file of `pbill simulate`, checked field by field.

use std::collections::BTreeSet;

use pb_model::{BillingModel, CycleContext, Data};
use pb_units::{CycleId, MemberId};
use serde::{Deserialize, Serialize};

/// The file as written by people (decimal kWh and currency per kWh).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityFile {
    /// Billing cycle.
    pub cycle_id: u64,
    /// Prices per slot.
    pub prices: PricesFile,
    /// Households.
    pub households: Vec<HouseholdFile>,
}

/// Prices per slot, currency per kWh.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesFile {
    /// Trading price `p`.
    pub trading: Vec<f64>,
    /// Retail price `r`.
    pub retail: Vec<f64>,
    /// Feed-in price `f`.
    pub feed_in: Vec<f64>,
}

/// One household, kWh per slot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HouseholdFile {
    /// Household id.
    pub id: String,
    /// Promised energy per slot.
    pub promises_kwh: Vec<f64>,
    /// Metered energy per slot.
    pub actual_kwh: Vec<f64>,
}

/// A checked community.
pub struct Community {
    pub context: CycleContext,
    pub households: Vec<Data>,
}

use pb_model::parse::{energy_kwh as energy, prices_per_kwh as prices};

/// Parses and checks a community file; every error names its field.
pub fn parse(text: &str, model: BillingModel, min_members: usize) -> Result<Community, String> {
    let file: CommunityFile =
        serde_json::from_str(text).map_err(|e| format!("invalid community file: {e}"))?;
    let slots = file.prices.trading.len();
    if slots == 0 {
        return Err("prices.trading is empty: a cycle needs at least one slot".into());
    }
    let context = CycleContext::new(
        CycleId(file.cycle_id),
        model,
        prices("prices.trading", &file.prices.trading, slots)?,
        prices("prices.retail", &file.prices.retail, slots)?,
        prices("prices.feed_in", &file.prices.feed_in, slots)?,
    )
    .map_err(|e| format!("prices: {e}"))?;
    if file.households.len() < min_members {
        return Err(format!(
            "households: {} given, at least {min_members} are required (fewer would expose members to each other)",
            file.households.len()
        ));
    }
    let mut seen = BTreeSet::new();
    let mut households = Vec::with_capacity(file.households.len());
    for (i, h) in file.households.iter().enumerate() {
        let id = MemberId::new(h.id.clone()).map_err(|e| format!("households[{i}].id: {e}"))?;
        if !seen.insert(id.clone()) {
            return Err(format!("households[{i}].id: {id} appears twice"));
        }
        let promises = energy(
            &format!("households[{i}].promises_kwh"),
            &h.promises_kwh,
            slots,
        )?;
        let actual = energy(&format!("households[{i}].actual_kwh"), &h.actual_kwh, slots)?;
        households.push(
            Data::new(id, CycleId(file.cycle_id), promises, actual)
                .map_err(|e| format!("households[{i}]: {e}"))?,
        );
    }
    Ok(Community {
        context,
        households,
    })
}
