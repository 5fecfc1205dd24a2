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
//! * [`household_from_meters`]: one household's promises and meter values
//!   from meter files as utilities export them, interval CSV
//!   ([`meter_csv`]) or Green Button XML ([`espi`]), put on the cycle's
//!   slots by time ([`meter`]).

#![warn(missing_docs)]

use std::collections::BTreeSet;

use pb_model::parse::{energy_kwh, prices_per_kwh};
use pb_model::{BillingModel, CycleContext, Data};
use pb_units::{CycleId, Decimal, MemberId, shorten};
use serde::{Deserialize, Serialize};

pub mod espi;
pub mod meter;
pub mod meter_csv;
pub mod private;
pub mod read;

pub use meter::{CycleClock, MeterFile, MeterFormat, household_from_meters, meter_series};
pub use pb_model::parse::{Rounding, Units};
pub use private::private_store_file;
pub use read::{Kind, ReadError, bounded, bounded_text};

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

/// A JSON error for people: `NaN` and infinities (which JSON does not
/// have) named as such, and any echoed input shortened.
pub fn json_error(origin: &str, text: &str, e: &serde_json::Error) -> String {
    if e.classify() == serde_json::error::Category::Syntax && e.line() > 0 {
        let line = text.lines().nth(e.line() - 1).unwrap_or("");
        let col = e.column().saturating_sub(1);
        let from = |i: usize| line.get(i..).unwrap_or("").to_ascii_lowercase();
        for start in [col, col.saturating_sub(1), col.saturating_sub(2)] {
            let rest = from(start);
            let rest = rest.trim_start_matches(['-', '+']);
            let named = if rest.starts_with("nan") {
                Some("NaN (not a number) is not a value")
            } else if rest.starts_with("inf") {
                Some("infinity is not a value")
            } else {
                None
            };
            if let Some(named) = named {
                return format!(
                    "{origin}: line {}, column {}: {named}; write a finite decimal number",
                    e.line(),
                    e.column()
                );
            }
        }
    }
    let message = e.to_string();
    if message.chars().count() > 200 {
        let head: String = message.chars().take(160).collect();
        return format!("{origin}: {head}... (message shortened)");
    }
    format!("{origin}: {message}")
}

fn from_json<'a, T: Deserialize<'a>>(origin: &str, text: &'a str) -> Result<T, String> {
    too_large(origin, text.len())?;
    serde_json::from_str(text).map_err(|e| json_error(origin, text, &e))
}

/// A household's id as the community file gives it: a string, or an
/// integer as the Python original uses. Written back as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HouseholdId {
    /// An integer id.
    Number(serde_json::Number),
    /// A text id.
    Text(String),
}

impl<'de> Deserialize<'de> for HouseholdId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HouseholdId, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(HouseholdId::Text(s)),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Ok(HouseholdId::Number(n)),
            other => Err(D::Error::custom(format!(
                "a household id is a string or an integer, not {}",
                shorten(&other.to_string())
            ))),
        }
    }
}

impl HouseholdId {
    /// The member id it names (an integer id becomes its decimal text).
    pub fn member(&self) -> Result<MemberId, String> {
        let text = match self {
            HouseholdId::Number(n) => n.to_string(),
            HouseholdId::Text(s) => s.clone(),
        };
        MemberId::new(text).map_err(|e| e.to_string())
    }
}

/// The community file as written by people (decimal kWh and currency per
/// kWh, kept as written).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityFile {
    /// Billing cycle.
    pub cycle_id: u64,
    /// Prices per slot.
    pub prices: PricesFile,
    /// Households.
    pub households: Vec<HouseholdFile>,
    /// Start of the cycle's first slot, ISO 8601 with an offset: needed
    /// when households give meter files (`--cycle-start` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_start: Option<String>,
}

/// Prices per slot, currency per kWh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesFile {
    /// Trading price `p`.
    pub trading: Vec<Decimal>,
    /// Retail price `r`.
    pub retail: Vec<Decimal>,
    /// Feed-in price `f`.
    pub feed_in: Vec<Decimal>,
}

/// One household, kWh per slot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HouseholdFile {
    /// Household id (a string or an integer).
    pub id: HouseholdId,
    /// Promised energy per slot (or `forecast_file`).
    #[serde(default)]
    pub promises_kwh: Vec<Decimal>,
    /// Metered energy per slot (or `actual_file`).
    #[serde(default)]
    pub actual_kwh: Vec<Decimal>,
    /// The promises as a forecast file (interval CSV or ESPI XML), a path
    /// relative to the community file; with `actual_file`, instead of the
    /// two arrays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_file: Option<String>,
    /// The metered values as a meter file (interval CSV or ESPI XML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_file: Option<String>,
}

/// Reads a file by the name a community file gives it.
pub type Loader<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// How the meter files a community file names are read.
#[derive(Clone, Copy, Default)]
pub struct MeterFiles<'a> {
    /// The cycle start (wins over the file's `cycle_start`).
    pub cycle_start: Option<&'a str>,
    /// The format of every meter file (else each file's extension says).
    pub format: Option<MeterFormat>,
    /// Reads a file by the name the community file gives; `None` refuses
    /// meter files.
    pub load: Option<&'a Loader<'a>>,
}

/// A checked community: the cycle's context and every household's data.
#[derive(Debug)]
pub struct Community {
    /// The cycle context (prices and model).
    pub context: CycleContext,
    /// The households, in file order.
    pub households: Vec<Data>,
    /// The households' ids as the file gives them, in file order.
    pub ids: Vec<HouseholdId>,
    /// What rounding to the unit changed.
    pub rounding: Rounding,
}

fn context_from(
    cycle: u64,
    model: BillingModel,
    prices: &PricesFile,
    prefix: &str,
    units: Units,
    rounding: &mut Rounding,
) -> Result<CycleContext, String> {
    let slots = prices.trading.len();
    if slots == 0 {
        return Err(format!(
            "{prefix}trading is empty: a cycle needs at least one slot"
        ));
    }
    let mut side = |name: &str, values: &[Decimal]| {
        prices_per_kwh(&format!("{prefix}{name}"), values, slots, units, rounding)
    };
    let trading = side("trading", &prices.trading)?;
    let retail = side("retail", &prices.retail)?;
    let feed_in = side("feed_in", &prices.feed_in)?;
    CycleContext::new(CycleId(cycle), model, trading, retail, feed_in).map_err(|e| e.to_string())
}

/// Parses and checks a community file; every error names its field. Fewer
/// than `pb_units::limits::min_members(min_members)` households are
/// refused, as the encrypted path refuses them.
pub fn community(
    text: &str,
    model: BillingModel,
    min_members: usize,
    units: Units,
) -> Result<Community, String> {
    community_with(text, model, min_members, units, MeterFiles::default())
}

/// [`community`], where households may also give their data as meter
/// files (`forecast_file` and `actual_file`), read through `meters`.
pub fn community_with(
    text: &str,
    model: BillingModel,
    min_members: usize,
    units: Units,
    meters: MeterFiles<'_>,
) -> Result<Community, String> {
    let file: CommunityFile = from_json("community file", text)?;
    let mut rounding = Rounding::default();
    let context = context_from(
        file.cycle_id,
        model,
        &file.prices,
        "prices.",
        units,
        &mut rounding,
    )?;
    let slots = context.slots();
    let need = pb_units::limits::min_members(min_members);
    if file.households.len() < need {
        return Err(format!(
            "households: {} given, at least {need} are required (fewer would expose members to each other)",
            file.households.len()
        ));
    }
    let mut seen = BTreeSet::new();
    let mut households = Vec::with_capacity(file.households.len());
    let mut ids = Vec::with_capacity(file.households.len());
    for (i, h) in file.households.into_iter().enumerate() {
        let id =
            h.id.member()
                .map_err(|e| format!("households[{i}].id: {e}"))?;
        if !seen.insert(id.clone()) {
            return Err(format!("households[{i}].id: {id} appears twice"));
        }
        let field = |name: &str| format!("households[{i}] ({id}).{name}");
        let (promises_kwh, actual_kwh) = match (&h.forecast_file, &h.actual_file) {
            (None, None) => {
                if h.promises_kwh.is_empty() && h.actual_kwh.is_empty() {
                    return Err(format!(
                        "households[{i}] ({id}): no data: give promises_kwh and actual_kwh, or \
                         forecast_file and actual_file"
                    ));
                }
                (h.promises_kwh, h.actual_kwh)
            }
            (Some(forecast), Some(actual)) => {
                if !h.promises_kwh.is_empty() || !h.actual_kwh.is_empty() {
                    return Err(format!(
                        "households[{i}] ({id}): give promises_kwh and actual_kwh, or \
                         forecast_file and actual_file, not both"
                    ));
                }
                let parsed = from_meter_files(
                    forecast,
                    actual,
                    file.cycle_start.as_deref(),
                    slots,
                    units,
                    meters,
                )
                .map_err(|e| format!("households[{i}] ({id}): {e}"))?;
                rounding.merge(parsed.rounding);
                (parsed.value.promises_kwh, parsed.value.actual_kwh)
            }
            (Some(_), None) => return Err(field("actual_file: missing (forecast_file is given)")),
            (None, Some(_)) => return Err(field("forecast_file: missing (actual_file is given)")),
        };
        let promises = energy_kwh(
            &field("promises_kwh"),
            &promises_kwh,
            slots,
            units,
            &mut rounding,
        )?;
        let actual = energy_kwh(
            &field("actual_kwh"),
            &actual_kwh,
            slots,
            units,
            &mut rounding,
        )?;
        households.push(
            Data::new(id.clone(), CycleId(file.cycle_id), promises, actual)
                .map_err(|e| format!("households[{i}] ({id}): {e}"))?,
        );
        ids.push(h.id);
    }
    Ok(Community {
        context,
        households,
        ids,
        rounding,
    })
}

/// One household's data from the meter files a community file names.
fn from_meter_files(
    forecast: &str,
    actual: &str,
    file_start: Option<&str>,
    slots: usize,
    units: Units,
    meters: MeterFiles<'_>,
) -> Result<Parsed<HouseholdData>, String> {
    let load = meters
        .load
        .ok_or("meter files (forecast_file, actual_file) are not read here: use pbill simulate")?;
    let start = meters.cycle_start.or(file_start).ok_or(
        "meter files need the cycle's start: give cycle_start in the file or --cycle-start",
    )?;
    let clock = CycleClock::parse(start, Some(slots))?;
    let format = |name: &str| {
        meters
            .format
            .or_else(|| MeterFormat::from_path(std::path::Path::new(name)))
            .ok_or_else(|| {
                format!(
                    "{}: cannot tell its format from its name (.csv or .xml): give --format",
                    shorten(name)
                )
            })
    };
    let (forecast_text, actual_text) = (load(forecast)?, load(actual)?);
    household_from_meters(
        &MeterFile {
            origin: forecast,
            text: &forecast_text,
            format: format(forecast)?,
        },
        &MeterFile {
            origin: actual,
            text: &actual_text,
            format: format(actual)?,
        },
        &clock,
        units,
    )
}

/// Reads CSV columns by header name, every value a decimal number.
fn csv_columns(origin: &str, text: &str, names: &[&str]) -> Result<Vec<Vec<Decimal>>, String> {
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
            let v: Decimal = cell
                .parse()
                .map_err(|e| format!("{origin}: row {}, column {}: {e}", row + 2, names[c]))?;
            columns[c].push(v);
        }
    }
    Ok(columns)
}

fn three(columns: Vec<Vec<Decimal>>) -> [Vec<Decimal>; 3] {
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
    /// What to do with prices finer than 0.00001 currency per kWh.
    pub units: Units,
}

/// A parsed input and what rounding changed in it.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The value.
    pub value: T,
    /// What rounding to the unit changed.
    pub rounding: Rounding,
}

fn checked_context(
    file_cycle: Option<u64>,
    file_model: Option<&str>,
    prices: &PricesFile,
    over: ContextOverrides,
) -> Result<Parsed<CycleContext>, String> {
    let cycle = over
        .cycle
        .or(file_cycle)
        .ok_or("no cycle: give --cycle or cycle_id in the file")?;
    let model = match (over.model, file_model) {
        (Some(m), _) => m,
        (None, Some(m)) => m
            .parse()
            .map_err(|e: String| format!("model: {}", shorten(&e)))?,
        (None, None) => BillingModel::Ucs,
    };
    let mut rounding = Rounding::default();
    let value = context_from(cycle, model, prices, "", over.units, &mut rounding)?;
    Ok(Parsed { value, rounding })
}

/// A cycle context from CSV: a header naming `trading,retail,feed_in`, then
/// one row per slot (currency per kWh).
pub fn context_csv(
    origin: &str,
    text: &str,
    over: ContextOverrides,
) -> Result<Parsed<CycleContext>, String> {
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
) -> Result<Parsed<CycleContext>, String> {
    let j: ContextJson = from_json(origin, text)?;
    checked_context(j.cycle_id, j.model.as_deref(), &j.prices, over)
}

/// One household's data for a cycle, in kWh per slot as written, checked
/// to have one value per promise and values within range. The core checks
/// the slot count against the cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdData {
    /// Promised energy per slot (kWh).
    pub promises_kwh: Vec<Decimal>,
    /// Metered energy per slot (kWh).
    pub actual_kwh: Vec<Decimal>,
}

fn checked_data(
    promises_kwh: Vec<Decimal>,
    actual_kwh: Vec<Decimal>,
    units: Units,
) -> Result<Parsed<HouseholdData>, String> {
    let mut rounding = Rounding::default();
    let n = promises_kwh.len();
    energy_kwh("promises_kwh", &promises_kwh, n, units, &mut rounding)?;
    energy_kwh("actual_kwh", &actual_kwh, n, units, &mut rounding)?;
    Ok(Parsed {
        value: HouseholdData {
            promises_kwh,
            actual_kwh,
        },
        rounding,
    })
}

/// A household's data from CSV: a header naming `promise_kwh,actual_kwh`,
/// then one row per slot.
pub fn data_csv(origin: &str, text: &str, units: Units) -> Result<Parsed<HouseholdData>, String> {
    let mut c = csv_columns(origin, text, &["promise_kwh", "actual_kwh"])?.into_iter();
    checked_data(
        c.next().unwrap_or_default(),
        c.next().unwrap_or_default(),
        units,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataJson {
    promises_kwh: Vec<Decimal>,
    actual_kwh: Vec<Decimal>,
}

/// A household's data from JSON: `{"promises_kwh": [...], "actual_kwh":
/// [...]}`.
pub fn data_json(origin: &str, text: &str, units: Units) -> Result<Parsed<HouseholdData>, String> {
    let j: DataJson = from_json(origin, text)?;
    checked_data(j.promises_kwh, j.actual_kwh, units)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Units = Units::Round;

    fn over(cycle: Option<u64>) -> ContextOverrides {
        ContextOverrides {
            cycle,
            ..ContextOverrides::default()
        }
    }

    #[test]
    fn csv_and_json_give_the_same_context() {
        let a = context_csv(
            "p.csv",
            "trading,retail,feed_in\n0.2,0.3,0.05\n0.25,0.31,0.04\n",
            over(Some(4)),
        )
        .unwrap();
        let b = context_json(
            "p.json",
            r#"{"prices":{"trading":[0.2,0.25],"retail":[0.3,0.31],"feed_in":[0.05,0.04]}}"#,
            over(Some(4)),
        )
        .unwrap();
        assert_eq!(a.value, b.value);
        assert_eq!(a.value.slots(), 2);
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let e = context_csv("p.csv", "trading,retail\n1,2\n", over(Some(1))).unwrap_err();
        assert!(e.contains("missing column \"feed_in\""), "{e}");
        let e = context_json(
            "p.json",
            r#"{"prices":{"trading":[1],"retail":[1],"feed_in":[1]}}"#,
            over(None),
        )
        .unwrap_err();
        assert!(e.contains("no cycle"), "{e}");
        let e = data_csv("d.csv", "promise_kwh,actual_kwh\n1,x\n", R).unwrap_err();
        assert!(
            e.contains("row 2, column actual_kwh: \"x\" is not a decimal number"),
            "{e}"
        );
        let e = data_csv("d.csv", "promise_kwh,actual_kwh\n1,NaN\n", R).unwrap_err();
        assert!(e.contains("NaN (not a number) is not a value"), "{e}");
        let e = data_json("d.json", r#"{"promises_kwh":[1,2],"actual_kwh":[1]}"#, R).unwrap_err();
        assert!(e.contains("actual_kwh has 1 values"), "{e}");
        let e = community("{}", BillingModel::Ucs, 3, R).unwrap_err();
        assert!(e.starts_with("community file: missing field"), "{e}");
        let big = " ".repeat(MAX_INPUT + 1);
        assert!(
            data_json("d.json", &big, R)
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn nan_and_infinity_are_named_in_json() {
        for (bad, named) in [
            (r#"{"promises_kwh":[1, NaN],"actual_kwh":[1,2]}"#, "NaN"),
            (
                r#"{"promises_kwh":[1,2],"actual_kwh":[-Infinity, 1]}"#,
                "infinity",
            ),
            (
                r#"{"promises_kwh":[Infinity],"actual_kwh":[1]}"#,
                "infinity",
            ),
            (r#"{"promises_kwh":["NaN"],"actual_kwh":[1]}"#, "NaN"),
        ] {
            let e = data_json("d.json", bad, R).unwrap_err();
            assert!(e.contains(named) && e.starts_with("d.json: "), "{bad}: {e}");
        }
    }

    #[test]
    fn long_values_and_ids_are_shortened_in_messages() {
        let huge = "9".repeat(309);
        let e = data_json(
            "d.json",
            &format!(r#"{{"promises_kwh":[{huge}],"actual_kwh":[1]}}"#),
            R,
        )
        .unwrap_err();
        assert!(e.len() < 200 && e.contains("309 characters"), "{e}");
        let long_id = "x".repeat(100_000);
        let text = format!(
            r#"{{"cycle_id":1,"prices":{{"trading":[1],"retail":[1],"feed_in":[1]}},
            "households":[{{"id":"{long_id}","promises_kwh":[1],"actual_kwh":[1]}},
            {{"id":"b","promises_kwh":[1],"actual_kwh":[1]}},{{"id":"c","promises_kwh":[1],"actual_kwh":[1]}}]}}"#
        );
        let e = community(&text, BillingModel::Ucs, 3, R).unwrap_err();
        assert!(e.len() < 300 && e.contains("100000 characters"), "{e}");
        let field = "f".repeat(10_000);
        let e = data_json("d.json", &format!(r#"{{"{field}":1}}"#), R).unwrap_err();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn integer_ids_are_accepted_and_kept_as_given() {
        let text = r#"{"cycle_id":1,"prices":{"trading":[0.2],"retail":[0.3],"feed_in":[0.05]},
          "households":[{"id":1,"promises_kwh":[0.5005],"actual_kwh":[1]},
          {"id":"two","promises_kwh":[1],"actual_kwh":[1]},{"id":3,"promises_kwh":[1],"actual_kwh":[1]}]}"#;
        let c = community(text, BillingModel::Ucs, 3, R).unwrap();
        assert_eq!(c.households[0].member().as_str(), "1");
        assert_eq!(c.households[0].promises()[0], pb_units::Wh(501));
        assert_eq!(serde_json::to_string(&c.ids).unwrap(), r#"[1,"two",3]"#);
        assert_eq!(c.rounding.count, 1);
        assert!(
            community(
                &text.replace("\"id\":3", "\"id\":1.5"),
                BillingModel::Ucs,
                3,
                R
            )
            .is_err()
        );
        assert!(
            community(
                &text.replace("\"id\":3", "\"id\":1"),
                BillingModel::Ucs,
                3,
                R
            )
            .unwrap_err()
            .contains("appears twice")
        );
        let e = community(text, BillingModel::Ucs, 3, Units::Strict).unwrap_err();
        assert!(
            e.starts_with("households[0] (1).promises_kwh[0]: 0.5005 kWh is finer"),
            "{e}"
        );
    }

    #[test]
    fn fewer_than_three_households_are_refused_whatever_the_minimum() {
        let one = r#"{"cycle_id":1,"prices":{"trading":[1],"retail":[1],"feed_in":[1]},
          "households":[{"id":"a","promises_kwh":[1],"actual_kwh":[1]}]}"#;
        for min in [0, 1, 2, 3] {
            let e = community(one, BillingModel::Ucs, min, R).unwrap_err();
            assert!(e.contains("at least 3 are required"), "{e}");
        }
    }

    fn examples() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
    }

    #[test]
    fn communities_may_name_meter_files() {
        let text = std::fs::read_to_string(examples().join("community-meters.json")).unwrap();
        let load = |name: &str| {
            std::fs::read_to_string(examples().join(name)).map_err(|e| format!("{name}: {e}"))
        };
        let meters = MeterFiles {
            load: Some(&load),
            ..MeterFiles::default()
        };
        let c = community_with(&text, BillingModel::Ucs, 3, R, meters).unwrap();
        let wh = |h: usize| -> Vec<i64> { c.households[h].actual().iter().map(|w| w.0).collect() };
        assert_eq!(wh(0), vec![132, 118, 121, 140, 310, 295, 180, 162]);
        assert_eq!(wh(1), vec![80, 75, 60, 10, -130, -230, -310, -330]);
        assert_eq!(wh(2), vec![251, 251, 251, 250, 216, 216, 215, 215]);
        let promised: Vec<i64> = c.households[0].promises().iter().map(|w| w.0).collect();
        assert_eq!(promised, vec![125, 125, 125, 125, 237, 237, 237, 236]);
        // The plain reader has no file access; a bad file is named with
        // its household.
        let e = community(&text, BillingModel::Ucs, 3, R).unwrap_err();
        assert!(
            e.starts_with("households[0] (house-001): meter files"),
            "{e}"
        );
        let e = community_with(
            &text.replace("\"cycle_start\": \"2026-11-28T00:00:00+01:00\",", ""),
            BillingModel::Ucs,
            3,
            R,
            meters,
        )
        .unwrap_err();
        assert!(e.contains("meter files need the cycle's start"), "{e}");
        // Another start: the files no longer line up with the cycle.
        let e = community_with(
            &text,
            BillingModel::Ucs,
            3,
            R,
            MeterFiles {
                cycle_start: Some("2026-11-28T00:00:00Z"),
                ..meters
            },
        )
        .unwrap_err();
        assert!(
            e.starts_with("households[0] (house-001): forecast-hourly.csv: line 2: 2026-11-27T23:00:00Z is before the cycle start"),
            "{e}"
        );
        let e = community_with(
            &text.replace(
                "[0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06]",
                "[0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06]",
            ),
            BillingModel::Ucs,
            3,
            R,
            meters,
        );
        assert!(e.is_err());
        let both = text.replace(
            "\"forecast_file\": \"forecast-2.csv\"",
            "\"promises_kwh\": [1], \"forecast_file\": \"forecast-2.csv\"",
        );
        let e = community_with(&both, BillingModel::Ucs, 3, R, meters).unwrap_err();
        assert!(e.contains("households[1] (house-002): give promises_kwh and actual_kwh, or forecast_file and actual_file, not both"), "{e}");
    }
}
