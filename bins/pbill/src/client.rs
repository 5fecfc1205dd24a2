//! Client commands: `keygen`, `context` and `roster` (operator to edge),
//! `rotate` (household to edge), `submit` and `bill` (household software
//! to its core).

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

/// `path` with `suffix` appended to its file name (`core.key` →
/// `core.key.new`).
fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Writes `key` to `path` unless the file holds it already; refuses a file
/// that holds another key.
fn keep_key(key: &NodeKey, path: &Path) -> Result<(), String> {
    if path.exists() {
        let there = NodeKey::read_file(path).map_err(|e| e.to_string())?;
        return if there.id() == key.id() {
            Ok(())
        } else {
            Err(format!(
                "{} holds another key (node {}): move it away and run pbill rotate again",
                path.display(),
                there.id().to_hex()
            ))
        };
    }
    key.write_new(path).map_err(|e| e.to_string())
}

/// Where the current key is backed up: `KEY.old`, or the first free
/// `KEY.old.N` when earlier rotations left theirs (a file that already
/// holds this key is used again).
fn backup_path(key_file: &Path, current: &NodeKey) -> Result<std::path::PathBuf, String> {
    for n in 1..1000 {
        let path = if n == 1 {
            with_suffix(key_file, ".old")
        } else {
            with_suffix(key_file, &format!(".old.{n}"))
        };
        if !path.exists() {
            return Ok(path);
        }
        if NodeKey::read_file(&path).is_ok_and(|k| k.id() == current.id()) {
            return Ok(path);
        }
    }
    Err(format!(
        "{}: too many old key files next to it; move them away",
        key_file.display()
    ))
}

/// The member list, if the edge serves the client's key now (its
/// handshake and its envelope are accepted).
async fn edge_serves(client: &mut EdgeClient) -> Option<pb_protocol::MemberList> {
    match client.call(&Request::GetMembers).await.map(|e| e.response) {
        Ok(Response::Members(list)) => Some(list),
        _ => None,
    }
}

/// After a refused or lost answer to `RotateKey`: whether the edge has the
/// rotation anyway (an earlier attempt's answer was lost). It has when it
/// serves the new key, no longer serves the old one, and its signed member
/// list shows the member (if it joined) with the new key.
fn rotated_already(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    to: &pb_protocol::Audience,
    (old, new): (&NodeKey, &NodeKey),
    member: &pb_units::MemberId,
) -> bool {
    let client = |key: &NodeKey| {
        EdgeClient::new(
            Connection::new(endpoint, TIMEOUT),
            NodeKey::from_bytes(key.to_bytes()),
            to.clone(),
        )
    };
    let Some(list) = rt.block_on(edge_serves(&mut client(new))) else {
        return false;
    };
    let listed = list.members.iter().find(|e| &e.member == member);
    rt.block_on(edge_serves(&mut client(old))).is_none()
        && listed.is_none_or(|e| e.node == new.id())
}

/// `pbill rotate`: replaces the core's node key, between cycles.
///
/// The new key (from `new_key`, else generated) is first written next to
/// the current one as `KEY.new`, and the current key is copied to
/// `KEY.old` (or `KEY.old.N`); then `RotateKey` goes to the edge signed
/// with the current key, carrying the new key's proof. Only once the edge
/// has confirmed (it answers `Ok`, or, when an earlier attempt's answer
/// was lost, it serves the new key) does `KEY.new` replace `KEY`
/// (a rename: `KEY` is never missing). The core must be stopped (its
/// store is checked), and restarted afterwards to speak with the new key.
pub fn rotate(config_path: &Path, new_key: Option<&Path>) -> Result<(), String> {
    let config = pb_core::CoreConfig::load(config_path).map_err(|e| e.to_string())?;
    let checked = config.check().map_err(|e| e.to_string())?;
    let key_file = &config.key_file;
    // A running core holds its store open: refuse, it would go on with
    // the old key (and must restart to read the new one anyway).
    let _store = if config.data_dir.join("core.redb").exists() {
        Some(pb_core::store::CoreStore::open(&config.data_dir).map_err(|e| {
            format!(
                "cannot open the core's store ({e}): stop the core ({}) before rotating its key",
                config_path.display()
            )
        })?)
    } else {
        None
    };
    let current = NodeKey::read_file(key_file).map_err(|e| e.to_string())?;
    let pending = with_suffix(key_file, ".new");
    let next = match new_key {
        Some(path) => NodeKey::read_file(path).map_err(|e| e.to_string())?,
        None if pending.exists() => {
            let k = NodeKey::read_file(&pending).map_err(|e| e.to_string())?;
            eprintln!(
                "using the new key left in {} by an earlier attempt",
                pending.display()
            );
            k
        }
        None => NodeKey::generate(&mut rand_core::OsRng),
    };
    if next.id() == current.id() {
        return Err(format!(
            "the new key is the key in use ({}): give another one, or none to generate it",
            key_file.display()
        ));
    }
    // A key given with --new-key is copied to KEY.new for this attempt
    // only; a generated one stays there for the next attempt.
    let given = new_key.is_some() && !pending.exists();
    keep_key(&next, &pending)?;
    let backup = backup_path(key_file, &current)?;
    keep_key(&current, &backup)?;

    let old = current.id();
    let proof = pb_protocol::rotation_proof(&next, &checked.community, &checked.member, &old);
    let to = pb_protocol::Audience {
        edge: checked.edge_node,
        community: checked.community.clone(),
    };
    let rt = runtime()?;
    let connection = Connection::new(&config.edge, TIMEOUT);
    rt.block_on(connection.probe()).map_err(|e| e.to_string())?;
    let new_id = next.id();
    let mut client = EdgeClient::new(
        connection,
        NodeKey::from_bytes(current.to_bytes()),
        to.clone(),
    );
    let answer = rt.block_on(client.call(&Request::RotateKey {
        new_node: new_id,
        proof,
    }));
    let refusal = match answer.map(|e| e.response) {
        Ok(Response::Ok) => None,
        Ok(Response::Error { code, message }) => {
            Some(format!("the edge refused ({code:?}): {message}"))
        }
        Ok(other) => Some(format!("unexpected answer: {other:?}")),
        Err(e) => Some(e.to_string()),
    };
    if let Some(refusal) = refusal {
        // An earlier attempt may have gone through with its answer lost:
        // then the old key is refused and the new one served.
        if !rotated_already(&rt, &config.edge, &to, (&current, &next), &checked.member) {
            if given {
                let _ = std::fs::remove_file(&pending);
                return Err(format!(
                    "{refusal}\nnothing changed: {} is still the key in use",
                    key_file.display()
                ));
            }
            return Err(format!(
                "{refusal}\nnothing changed: {} is still the key in use (the new key waits in {}; run \
                 pbill rotate again to retry with it)",
                key_file.display(),
                pending.display()
            ));
        }
        eprintln!("the edge had already recorded this rotation ({refusal})");
    }
    std::fs::rename(&pending, key_file).map_err(|e| {
        format!(
            "the edge rotated the key but {} could not replace {}: {e}; move it there by hand",
            pending.display(),
            key_file.display()
        )
    })?;
    println!("{}", new_id.to_hex());
    eprintln!(
        "member {}: node {} rotated to the node above; {} holds the new key, the old one is kept in {}. Restart the core; give the new node id to the operator, who updates edge.toml and posts a new member list (pbill roster).",
        checked.member,
        old.to_hex(),
        key_file.display(),
        backup.display()
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
