//! Client commands: `keygen`, `context` (operator to edge), `submit` and
//! `bill` (household software to its core).

use std::path::Path;
use std::time::Duration;

use pb_core::api::{ApiRequest, ApiResponse, CycleRef, SubmitRequest};
use pb_inputs::{HouseholdData, MeterFile, MeterFormat, Units};
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

/// Posts a signed member list to the edge, page by page.
pub async fn post_roster(
    client: &mut EdgeClient,
    signed: &pb_secagg::SignedRoster,
) -> Result<(), String> {
    for page in pb_protocol::RosterPage::split(signed) {
        let n = page.page;
        match client
            .call(&Request::PutRoster(page))
            .await
            .map_err(|e| e.to_string())?
            .response
        {
            Response::Ok => {}
            Response::Error { code, message } => {
                return Err(format!(
                    "the edge refused page {n} of the member list ({code:?}): {message}"
                ));
            }
            other => return Err(format!("unexpected answer: {other:?}")),
        }
    }
    Ok(())
}

/// Signs a member list of `entries` with the operator's enrolment key.
pub fn sign_roster(
    operator: &NodeKey,
    community: &str,
    version: u64,
    entries: Vec<pb_secagg::RosterEntry>,
) -> Result<pb_secagg::SignedRoster, String> {
    let roster = pb_secagg::Roster::new(community, version, entries)
        .map_err(|e| format!("member list: {e}"))?;
    Ok(pb_secagg::SignedRoster::sign(
        roster,
        operator.signing_key(),
    ))
}

#[derive(serde::Deserialize)]
struct Enrolment {
    #[serde(default)]
    members: Vec<pb_edge::Enrollment>,
}

/// `pbill roster`: signs the member list (the members enrolled in
/// `members_file`, an `edge.toml` or any TOML with `[[members]]`, less
/// `revoke`) with the operator's enrolment key and posts it to the edge.
#[allow(clippy::too_many_arguments)]
pub fn roster(
    edge: &str,
    key: &Path,
    edge_id: &str,
    community: &str,
    members_file: &Path,
    revoke: &[String],
    version: Option<u64>,
) -> Result<(), String> {
    let key = std::sync::Arc::new(NodeKey::read_file(key).map_err(|e| e.to_string())?);
    let edge_id = NodeId::from_hex(edge_id).ok_or("--edge-id: not a node id (64 hex digits)")?;
    if community.trim().is_empty() {
        return Err("--community: must not be empty".into());
    }
    let text = pb_inputs::bounded_text(members_file, pb_inputs::Kind::EdgeConfig)
        .map_err(|e| e.to_string())?;
    let enrolment: Enrolment =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", members_file.display()))?;
    for r in revoke {
        if !enrolment.members.iter().any(|m| &m.member == r) {
            return Err(format!(
                "--revoke {r}: not enrolled in {}",
                members_file.display()
            ));
        }
    }
    let mut entries = Vec::new();
    for (i, m) in enrolment.members.iter().enumerate() {
        if revoke.contains(&m.member) {
            continue;
        }
        let member = pb_units::MemberId::new(m.member.clone())
            .map_err(|e| format!("members[{i}].member: {e}"))?;
        let node = NodeId::from_hex(&m.node)
            .ok_or_else(|| format!("members[{i}].node: not a node id (64 hex digits)"))?;
        entries.push(pb_secagg::RosterEntry {
            member,
            identity: node.0,
        });
    }
    let to = pb_protocol::Audience {
        edge: edge_id,
        community: pb_units::CommunityId(community.into()),
    };
    let rt = runtime()?;
    let connection = Connection::new(edge, TIMEOUT);
    rt.block_on(connection.probe()).map_err(|e| e.to_string())?;
    let mut client = EdgeClient::new(connection, key.clone(), to);
    let version = match version {
        Some(v) => v,
        None => match rt
            .block_on(client.call(&Request::GetRoster {
                version: None,
                page: 0,
            }))
            .map_err(|e| e.to_string())?
            .response
        {
            Response::Roster(p) => p.roster.version + 1,
            _ => 1,
        },
    };
    let signed = sign_roster(&key, community, version, entries)?;
    rt.block_on(post_roster(&mut client, &signed))?;
    println!(
        "member list version {version}: {} members, fingerprint {}",
        signed.roster.members.len(),
        pb_secagg::roster::show_fingerprint(&signed.roster.fingerprint())
    );
    Ok(())
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

/// Where `pbill submit` reads a household's data.
pub enum Source<'a> {
    /// One file, a value per slot: CSV (`promise_kwh,actual_kwh`) or JSON.
    File(&'a Path),
    /// Meter files placed on the cycle's slots by time.
    Meters {
        /// The promises.
        forecast: &'a Path,
        /// The meter's readings.
        actual: &'a Path,
        /// `--cycle-start`.
        cycle_start: Option<&'a str>,
        /// `--slots`.
        slots: Option<usize>,
    },
}

/// The format of a meter file: `format` if given, else its extension.
fn meter_format(path: &Path, format: Option<MeterFormat>) -> Result<MeterFormat, String> {
    format
        .or_else(|| MeterFormat::from_path(path))
        .ok_or_else(|| {
            format!(
                "{}: cannot tell its format from its name (.csv or .xml): give --format csv or --format espi",
                path.display()
            )
        })
}

/// Reads and checks a household's data for `pbill submit`, before
/// anything is sent; prints the rounding warning.
pub fn read_household(
    source: &Source<'_>,
    format: Option<MeterFormat>,
    units: Units,
) -> Result<HouseholdData, String> {
    let parsed = match *source {
        Source::File(file) => {
            let text = read(file)?;
            let origin = file.display().to_string();
            // Any extension but .csv and .xml is read as JSON, as before.
            let format = format
                .or_else(|| MeterFormat::from_path(file))
                .unwrap_or(MeterFormat::Json);
            match format {
                MeterFormat::Csv => pb_inputs::data_csv(&origin, &text, units)?,
                MeterFormat::Json => pb_inputs::data_json(&origin, &text, units)?,
                MeterFormat::Espi => {
                    return Err(format!(
                        "{origin}: an ESPI file holds one meter series: give it as --actual (or \
                         --forecast) with the other series and --cycle-start"
                    ));
                }
            }
        }
        Source::Meters {
            forecast,
            actual,
            cycle_start,
            slots,
        } => {
            let start = cycle_start.ok_or(
                "--cycle-start is needed to place meter readings on the cycle's slots \
                 (ISO 8601 with an offset, e.g. 2026-11-28T00:00:00+01:00)",
            )?;
            let clock = pb_inputs::CycleClock::parse(start, slots)
                .map_err(|e| e.replace("cycle start:", "--cycle-start:"))?;
            let (f_text, a_text) = (read(forecast)?, read(actual)?);
            let (f_origin, a_origin) =
                (forecast.display().to_string(), actual.display().to_string());
            pb_inputs::household_from_meters(
                &MeterFile {
                    origin: &f_origin,
                    text: &f_text,
                    format: meter_format(forecast, format)?,
                },
                &MeterFile {
                    origin: &a_origin,
                    text: &a_text,
                    format: meter_format(actual, format)?,
                },
                &clock,
                units,
            )?
        }
    };
    let origin = match source {
        Source::File(f) => f.display().to_string(),
        Source::Meters { actual, .. } => format!("{} and its forecast", actual.display()),
    };
    warn_rounding(&origin, &parsed.rounding);
    Ok(parsed.value)
}

/// `pbill submit`: a household's data for a cycle, checked by
/// [`read_household`].
pub fn submit(core: &str, cycle: u64, data: HouseholdData, units: Units) -> Result<(), String> {
    let request = ApiRequest::Submit(SubmitRequest {
        cycle_id: cycle,
        promises_kwh: data.promises_kwh,
        actual_kwh: data.actual_kwh,
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
