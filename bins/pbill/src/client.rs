//! Client commands: `keygen`, `context` (operator to edge), `submit` and
//! `bill` (household software to its core).

use std::path::Path;
use std::time::Duration;

use pb_core::api::ApiResponse;
use pb_model::parse::{energy_kwh, prices_per_kwh};
use pb_model::{BillingModel, CycleContext};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeId, NodeKey, Request, Response};
use pb_units::CycleId;
use serde::Deserialize;

/// Timeout of one request from the command line.
pub const TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// `pbill keygen`: a new node key; prints its node id.
pub fn keygen(out: &Path) -> Result<(), String> {
    let key = NodeKey::generate(&mut rand_core::OsRng);
    key.write_new(out).map_err(|e| e.to_string())?;
    println!("{}", key.id().to_hex());
    eprintln!(
        "wrote the secret key to {} (keep it private; give the node id above to the edge operator)",
        out.display()
    );
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesJson {
    trading: Vec<f64>,
    retail: Vec<f64>,
    feed_in: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextJson {
    #[serde(default)]
    cycle_id: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    prices: PricesJson,
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads CSV columns by header name, every value a number.
fn csv_columns(path: &Path, names: &[&str]) -> Result<Vec<Vec<f64>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let index: Vec<usize> = names
        .iter()
        .map(|n| {
            headers.iter().position(|h| h == *n).ok_or_else(|| {
                format!(
                    "{}: missing column {n:?} (header must name {})",
                    path.display(),
                    names.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut columns = vec![Vec::new(); names.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        for (c, &i) in index.iter().enumerate() {
            let cell = record.get(i).unwrap_or("");
            let v: f64 = cell.parse().map_err(|_| {
                format!(
                    "{}: row {}, column {}: {cell:?} is not a number",
                    path.display(),
                    row + 2,
                    names[c]
                )
            })?;
            columns[c].push(v);
        }
    }
    Ok(columns)
}

/// Reads a cycle context from CSV (`trading,retail,feed_in` per slot) or
/// JSON (`{"cycle_id", "model", "prices": {...}}`).
pub fn read_context(
    path: &Path,
    cycle: Option<u64>,
    model: Option<BillingModel>,
) -> Result<CycleContext, String> {
    let (file_cycle, file_model, prices) = if is_csv(path) {
        let c = csv_columns(path, &["trading", "retail", "feed_in"])?;
        let mut it = c.into_iter();
        let (t, r, f) = (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        );
        (
            None,
            None,
            PricesJson {
                trading: t,
                retail: r,
                feed_in: f,
            },
        )
    } else {
        let j: ContextJson =
            serde_json::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        (j.cycle_id, j.model, j.prices)
    };
    let cycle = cycle
        .or(file_cycle)
        .ok_or("no cycle: give --cycle or cycle_id in the file")?;
    let model = match (model, file_model) {
        (Some(m), _) => m,
        (None, Some(m)) => m.parse().map_err(|e| format!("model: {e}"))?,
        (None, None) => BillingModel::Ucs,
    };
    let slots = prices.trading.len();
    if slots == 0 {
        return Err("prices: no slots".into());
    }
    CycleContext::new(
        CycleId(cycle),
        model,
        prices_per_kwh("trading", &prices.trading, slots)?,
        prices_per_kwh("retail", &prices.retail, slots)?,
        prices_per_kwh("feed_in", &prices.feed_in, slots)?,
    )
    .map_err(|e| e.to_string())
}

/// `pbill context`: sends a cycle context to the edge, signed with the
/// operator's key.
pub fn context(
    edge: &str,
    key: &Path,
    edge_id: Option<&str>,
    ctx: CycleContext,
) -> Result<(), String> {
    let key = NodeKey::read_file(key).map_err(|e| e.to_string())?;
    let edge_id = edge_id
        .map(|s| NodeId::from_hex(s).ok_or("--edge-id: not a node id (64 hex digits)"))
        .transpose()?;
    let rt = runtime()?;
    let mut client = EdgeClient::new(Connection::new(edge, TIMEOUT), key, edge_id);
    let cycle = ctx.cycle();
    let slots = ctx.slots();
    let exchange = rt
        .block_on(client.call(&Request::PutContext(ctx)))
        .map_err(|e| e.to_string())?;
    match exchange.response {
        Response::Ok => {
            println!("cycle {cycle}: context recorded ({slots} slots)");
            Ok(())
        }
        Response::Error { code, message } => Err(format!("the edge refused ({code:?}): {message}")),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataJson {
    promises_kwh: Vec<f64>,
    actual_kwh: Vec<f64>,
}

/// One request to a core's household API.
pub fn api_call(core: &str, request: &serde_json::Value) -> Result<ApiResponse, String> {
    let rt = runtime()?;
    let mut conn = Connection::new(core, TIMEOUT);
    let answer = rt.block_on(conn.json(request)).map_err(|e| e.to_string())?;
    serde_json::from_value(answer).map_err(|e| format!("unexpected answer from the core: {e}"))
}

/// `pbill submit`: a household's data for a cycle, from CSV
/// (`promise_kwh,actual_kwh` per slot) or JSON.
pub fn submit(core: &str, cycle: u64, file: &Path) -> Result<(), String> {
    let (promises, actual) = if is_csv(file) {
        let mut c = csv_columns(file, &["promise_kwh", "actual_kwh"])?.into_iter();
        (c.next().unwrap_or_default(), c.next().unwrap_or_default())
    } else {
        let j: DataJson =
            serde_json::from_str(&read(file)?).map_err(|e| format!("{}: {e}", file.display()))?;
        (j.promises_kwh, j.actual_kwh)
    };
    // Check locally first for a precise message; the core checks again.
    energy_kwh("promises_kwh", &promises, promises.len())?;
    energy_kwh("actual_kwh", &actual, promises.len())?;
    let request = serde_json::json!({"submit": {"cycle_id": cycle, "promises_kwh": promises, "actual_kwh": actual}});
    match api_call(core, &request)? {
        ApiResponse::Accepted(a) => {
            println!(
                "cycle {}: {} slots accepted ({})",
                a.cycle_id, a.slots, a.state
            );
            Ok(())
        }
        ApiResponse::Error(e) => Err(format!("the core refused ({}): {}", e.code, e.message)),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// What `pbill bill` found.
pub enum BillOutcome {
    /// Billed.
    Billed,
    /// Not yet.
    Pending,
}

/// `pbill bill`: the household's bill for a cycle.
pub fn bill(core: &str, cycle: u64, json: bool) -> Result<BillOutcome, String> {
    let answer = api_call(core, &serde_json::json!({"get_bill": {"cycle_id": cycle}}))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?
        );
    }
    match answer {
        ApiResponse::Bill(b) => {
            if !json {
                println!(
                    "cycle {}: bill {}  reward {}  total {}",
                    b.cycle_id, b.bill, b.reward, b.total
                );
            }
            Ok(BillOutcome::Billed)
        }
        ApiResponse::Pending(p) => {
            if !json {
                println!("cycle {}: no bill yet ({})", p.cycle_id, p.state);
            }
            Ok(BillOutcome::Pending)
        }
        ApiResponse::Error(e) => Err(format!("the core refused ({}): {}", e.code, e.message)),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}
