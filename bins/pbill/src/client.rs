//! Client commands: `keygen`, `context` (operator to edge), `submit` and
//! `bill` (household software to its core).

use std::path::Path;
use std::time::Duration;

use pb_core::api::{ApiRequest, ApiResponse, CycleRef, SubmitRequest};
use pb_inputs::Units;
use pb_model::{BillingModel, CycleContext};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeId, NodeKey, Request, Response};

/// Timeout of one request from the command line.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime for one command's requests.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
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

/// Reads an input file within the cap of data files.
pub fn read(path: &Path) -> Result<String, String> {
    pb_inputs::bounded_text(path, pb_inputs::Kind::Data).map_err(|e| e.to_string())
}

/// Prints the one warning line of what rounding to the unit changed.
pub fn warn_rounding(origin: &str, rounding: &pb_inputs::Rounding) {
    if let Some(w) = rounding.warning() {
        eprintln!("warning: {origin}: {w}");
    }
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Reads a cycle context from CSV (`trading,retail,feed_in` per slot) or
/// JSON (`{"cycle_id", "model", "prices": {...}}`).
pub fn read_context(
    path: &Path,
    cycle: Option<u64>,
    model: Option<BillingModel>,
    units: Units,
) -> Result<CycleContext, String> {
    let text = read(path)?;
    let origin = path.display().to_string();
    let over = pb_inputs::ContextOverrides {
        cycle,
        model,
        units,
    };
    let parsed = if is_csv(path) {
        pb_inputs::context_csv(&origin, &text, over)
    } else {
        pb_inputs::context_json(&origin, &text, over)
    }?;
    warn_rounding(&origin, &parsed.rounding);
    Ok(parsed.value)
}

/// `pbill context`: sends a cycle context to the edge, signed with the
/// operator's key.
pub fn context(
    edge: &str,
    key: &Path,
    edge_id: &str,
    community: &str,
    ctx: CycleContext,
) -> Result<(), String> {
    let key = NodeKey::read_file(key).map_err(|e| e.to_string())?;
    let edge_id = NodeId::from_hex(edge_id).ok_or("--edge-id: not a node id (64 hex digits)")?;
    if community.trim().is_empty() {
        return Err("--community: must not be empty".into());
    }
    let to = pb_protocol::Audience {
        edge: edge_id,
        community: pb_units::CommunityId(community.into()),
    };
    let rt = runtime()?;
    let connection = Connection::new(edge, TIMEOUT);
    rt.block_on(connection.probe()).map_err(|e| e.to_string())?;
    let mut client = EdgeClient::new(connection, key, to);
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

/// One request to a core's household API (JSON, sent as serialised, so
/// decimal values keep their text).
pub fn api_call(core: &str, request: &ApiRequest) -> Result<ApiResponse, String> {
    let bytes = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let rt = runtime()?;
    let mut conn = Connection::new(core, TIMEOUT);
    rt.block_on(conn.probe()).map_err(|e| e.to_string())?;
    let answer = rt
        .block_on(conn.request(bytes))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&answer).map_err(|e| format!("unexpected answer from the core: {e}"))
}

/// `pbill submit`: a household's data for a cycle, from CSV
/// (`promise_kwh,actual_kwh` per slot) or JSON.
pub fn submit(core: &str, cycle: u64, file: &Path, units: Units) -> Result<(), String> {
    let text = read(file)?;
    let origin = file.display().to_string();
    // Check locally first for a precise message; the core checks again.
    let parsed = if is_csv(file) {
        pb_inputs::data_csv(&origin, &text, units)?
    } else {
        pb_inputs::data_json(&origin, &text, units)?
    };
    warn_rounding(&origin, &parsed.rounding);
    let request = ApiRequest::Submit(SubmitRequest {
        cycle_id: cycle,
        promises_kwh: parsed.value.promises_kwh,
        actual_kwh: parsed.value.actual_kwh,
        strict_units: units == Units::Strict,
    });
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
    let answer = api_call(core, &ApiRequest::GetBill(CycleRef { cycle_id: cycle }))?;
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
