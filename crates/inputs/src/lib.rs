//! Files written by people, parsed into checked model types. Every parser
//! takes the file's text (so that it can be fuzzed and tested without a
//! file system) and an `origin` (usually the path) that starts every error
//! message; every error names the field, row or index at fault.
//!
//! * [`community`]: the community file of `pbill simulate` and `pbill
//!   demo` (JSON: prices and every household's data).
//! * [`context_csv`] / [`context_json`]: an operator's prices for a cycle.
//! * [`data_csv`] / [`data_json`]: one household's promises and meter
//!   values for a cycle.

#![warn(missing_docs)]

use std::collections::BTreeSet;

use pb_model::parse::{energy_kwh, prices_per_kwh};
use pb_model::{BillingModel, CycleContext, Data};
use pb_units::{CycleId, MemberId};
use serde::{Deserialize, Serialize};

/// Largest input file accepted (64 MiB): far above a year of 15-minute
/// slots for thousands of households, far below what would exhaust memory.
pub const MAX_INPUT: usize = 64 << 20;

fn too_large(origin: &str, len: usize) -> Result<(), String> {
    if len > MAX_INPUT {
        return Err(format!(
            "{origin}: {len} bytes, more than the {MAX_INPUT} bytes an input file may have"
        ));
    }
    Ok(())
}

/// The community file as written by people (decimal kWh and currency per
/// kWh).
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

/// A checked community: the cycle's context and every household's data.
#[derive(Debug)]
pub struct Community {
    /// The cycle context (prices and model).
    pub context: CycleContext,
    /// The households, in file order.
    pub households: Vec<Data>,
}

fn context_from(
    cycle: u64,
    model: BillingModel,
    prices: &PricesFile,
    prefix: &str,
) -> Result<CycleContext, String> {
    let slots = prices.trading.len();
    if slots == 0 {
        return Err(format!(
            "{prefix}trading is empty: a cycle needs at least one slot"
        ));
    }
    CycleContext::new(
        CycleId(cycle),
        model,
        prices_per_kwh(&format!("{prefix}trading"), &prices.trading, slots)?,
        prices_per_kwh(&format!("{prefix}retail"), &prices.retail, slots)?,
        prices_per_kwh(&format!("{prefix}feed_in"), &prices.feed_in, slots)?,
    )
    .map_err(|e| format!("prices: {e}"))
}

/// Parses and checks a community file; every error names its field.
pub fn community(text: &str, model: BillingModel, min_members: usize) -> Result<Community, String> {
    too_large("community file", text.len())?;
    let file: CommunityFile =
        serde_json::from_str(text).map_err(|e| format!("invalid community file: {e}"))?;
    let context = context_from(file.cycle_id, model, &file.prices, "prices.")?;
    let slots = context.slots();
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
        let promises = energy_kwh(
            &format!("households[{i}].promises_kwh"),
            &h.promises_kwh,
            slots,
        )?;
        let actual = energy_kwh(&format!("households[{i}].actual_kwh"), &h.actual_kwh, slots)?;
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

/// Reads CSV columns by header name, every value a number.
fn csv_columns(origin: &str, text: &str, names: &[&str]) -> Result<Vec<Vec<f64>>, String> {
    too_large(origin, text.len())?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("{origin}: {e}"))?
        .clone();
    let index: Vec<usize> = names
        .iter()
        .map(|n| {
            headers.iter().position(|h| h == *n).ok_or_else(|| {
                format!(
                    "{origin}: missing column {n:?} (header must name {})",
                    names.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut columns = vec![Vec::new(); names.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{origin}: {e}"))?;
        for (c, &i) in index.iter().enumerate() {
            let cell = record.get(i).unwrap_or("");
            let v: f64 = cell.parse().map_err(|_| {
                format!(
                    "{origin}: row {}, column {}: {cell:?} is not a number",
                    row + 2,
                    names[c]
                )
            })?;
            columns[c].push(v);
        }
    }
    Ok(columns)
}

fn three(columns: Vec<Vec<f64>>) -> [Vec<f64>; 3] {
    let mut it = columns.into_iter();
    [
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    ]
}

/// Where a cycle's number and model come from: the command line wins over
/// the file; without either the cycle is an error and the model is UCS.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextOverrides {
    /// Cycle id given on the command line.
    pub cycle: Option<u64>,
    /// Model given on the command line.
    pub model: Option<BillingModel>,
}

fn checked_context(
    file_cycle: Option<u64>,
    file_model: Option<&str>,
    prices: &PricesFile,
    over: ContextOverrides,
) -> Result<CycleContext, String> {
    let cycle = over
        .cycle
        .or(file_cycle)
        .ok_or("no cycle: give --cycle or cycle_id in the file")?;
    let model = match (over.model, file_model) {
        (Some(m), _) => m,
        (None, Some(m)) => m.parse().map_err(|e| format!("model: {e}"))?,
        (None, None) => BillingModel::Ucs,
    };
    context_from(cycle, model, prices, "")
}

/// A cycle context from CSV: a header naming `trading,retail,feed_in`, then
/// one row per slot (currency per kWh).
pub fn context_csv(
    origin: &str,
    text: &str,
    over: ContextOverrides,
) -> Result<CycleContext, String> {
    let [trading, retail, feed_in] = three(csv_columns(
        origin,
        text,
        &["trading", "retail", "feed_in"],
    )?);
    let prices = PricesFile {
        trading,
        retail,
        feed_in,
    };
    checked_context(None, None, &prices, over)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextJson {
    #[serde(default)]
    cycle_id: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    prices: PricesFile,
}

/// A cycle context from JSON: `{"cycle_id", "model", "prices": {"trading",
/// "retail", "feed_in"}}` (`cycle_id` and `model` optional).
pub fn context_json(
    origin: &str,
    text: &str,
    over: ContextOverrides,
) -> Result<CycleContext, String> {
    too_large(origin, text.len())?;
    let j: ContextJson = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    checked_context(j.cycle_id, j.model.as_deref(), &j.prices, over)
}

/// One household's data for a cycle, in kWh per slot, checked to have one
/// value per promise and finite values in range. The core checks the slot
/// count against the cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdData {
    /// Promised energy per slot (kWh).
    pub promises_kwh: Vec<f64>,
    /// Metered energy per slot (kWh).
    pub actual_kwh: Vec<f64>,
}

fn checked_data(promises_kwh: Vec<f64>, actual_kwh: Vec<f64>) -> Result<HouseholdData, String> {
    energy_kwh("promises_kwh", &promises_kwh, promises_kwh.len())?;
    energy_kwh("actual_kwh", &actual_kwh, promises_kwh.len())?;
    Ok(HouseholdData {
        promises_kwh,
        actual_kwh,
    })
}

/// A household's data from CSV: a header naming `promise_kwh,actual_kwh`,
/// then one row per slot.
pub fn data_csv(origin: &str, text: &str) -> Result<HouseholdData, String> {
    let mut c = csv_columns(origin, text, &["promise_kwh", "actual_kwh"])?.into_iter();
    checked_data(c.next().unwrap_or_default(), c.next().unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataJson {
    promises_kwh: Vec<f64>,
    actual_kwh: Vec<f64>,
}

/// A household's data from JSON: `{"promises_kwh": [...], "actual_kwh":
/// [...]}`.
pub fn data_json(origin: &str, text: &str) -> Result<HouseholdData, String> {
    too_large(origin, text.len())?;
    let j: DataJson = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    checked_data(j.promises_kwh, j.actual_kwh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_give_the_same_context() {
        let over = ContextOverrides {
            cycle: Some(4),
            model: None,
        };
        let a = context_csv(
            "p.csv",
            "trading,retail,feed_in\n0.2,0.3,0.05\n0.25,0.31,0.04\n",
            over,
        )
        .unwrap();
        let b = context_json(
            "p.json",
            r#"{"prices":{"trading":[0.2,0.25],"retail":[0.3,0.31],"feed_in":[0.05,0.04]}}"#,
            over,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.slots(), 2);
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let none = ContextOverrides::default();
        let e = context_csv(
            "p.csv",
            "trading,retail\n1,2\n",
            ContextOverrides {
                cycle: Some(1),
                model: None,
            },
        )
        .unwrap_err();
        assert!(e.contains("missing column \"feed_in\""), "{e}");
        let e = context_json(
            "p.json",
            r#"{"prices":{"trading":[1],"retail":[1],"feed_in":[1]}}"#,
            none,
        )
        .unwrap_err();
        assert!(e.contains("no cycle"), "{e}");
        let e = data_csv("d.csv", "promise_kwh,actual_kwh\n1,x\n").unwrap_err();
        assert!(e.contains("row 2, column actual_kwh"), "{e}");
        let e = data_json("d.json", r#"{"promises_kwh":[1,2],"actual_kwh":[1]}"#).unwrap_err();
        assert!(e.contains("actual_kwh has 1 values"), "{e}");
        let e = community("{}", BillingModel::Ucs, 3).unwrap_err();
        assert!(e.starts_with("invalid community file"), "{e}");
        let big = " ".repeat(MAX_INPUT + 1);
        assert!(data_json("d.json", &big).unwrap_err().contains("more than"));
    }
}
