//! `pbill status`: where the cycles stand, asked of the edge (operator) or
//! of a household's core.

use std::path::{Path, PathBuf};

use pb_core::api::{ApiRequest, ApiResponse, StatusReply, StatusRequest};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{CycleProgress, NodeId, NodeKey, Request, Response, StatusReport};
use pb_units::CycleId;
use serde::Serialize;

use crate::client::{TIMEOUT, api_call, runtime};

/// Where the cycles stand. At the edge (operator's key): a cycle's phase,
/// its members submitted, missing and dropped (by node id), its deadline
/// and the time each phase took; without --cycle, the latest cycles in one
/// table. At a core (--core): the household's cycles and their state.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["edge", "core"]))]
pub struct StatusArgs {
    /// Edge endpoint, e.g. tcp://127.0.0.1:5555 (with --key, --edge-id,
    /// --community).
    #[arg(long, requires_all = ["key", "edge_id", "community"])]
    edge: Option<String>,
    /// The operator's key file (its node id must be among the edge's
    /// operators; any other key is refused).
    #[arg(long, conflicts_with = "core")]
    key: Option<PathBuf>,
    /// The edge's node id (64 hex digits): requests are signed for it and
    /// encrypted to it, and answers signed by anyone else are refused.
    #[arg(long, conflicts_with = "core")]
    edge_id: Option<String>,
    /// The community (as in `edge.toml`).
    #[arg(long, conflicts_with = "core")]
    community: Option<String>,
    /// One cycle, with its members by node id (edge only).
    #[arg(long, conflicts_with = "core")]
    cycle: Option<u64>,
    /// A household's core: its household API endpoint.
    #[arg(long)]
    core: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `pbill status`.
pub fn run(args: &StatusArgs) -> Result<(), String> {
    match (&args.edge, &args.core) {
        (Some(edge), None) => {
            let (Some(key), Some(edge_id), Some(community)) =
                (&args.key, &args.edge_id, &args.community)
            else {
                return Err("--edge needs --key, --edge-id and --community".into());
            };
            let report = edge_status(edge, key, edge_id, community, args.cycle)?;
            if args.json {
                print_json(&EdgeOut::from(&report))
            } else {
                print!("{}", edge_text(&report, args.cycle.is_some()));
                Ok(())
            }
        }
        (None, Some(core)) => {
            let reply = core_status(core)?;
            if args.json {
                print_json(&reply)
            } else {
                print!("{}", core_text(&reply));
                Ok(())
            }
        }
        _ => Err("give either --edge or --core".into()),
    }
}

fn print_json(value: &impl Serialize) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Asks the edge, signed with the operator's key.
fn edge_status(
    edge: &str,
    key: &Path,
    edge_id: &str,
    community: &str,
    cycle: Option<u64>,
) -> Result<StatusReport, String> {
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
    let request = Request::Status {
        cycle: cycle.map(CycleId),
    };
    let exchange = rt
        .block_on(client.call(&request))
        .map_err(|e| e.to_string())?;
    match exchange.response {
        Response::Status(report) => Ok(report),
        Response::Error { code, message } => Err(format!("the edge refused ({code:?}): {message}")),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// Asks a core through the household API.
fn core_status(core: &str) -> Result<StatusReply, String> {
    match api_call(core, &ApiRequest::Status(StatusRequest {}))? {
        ApiResponse::Status(s) => Ok(s),
        ApiResponse::Error(e) => Err(format!("the core refused ({}): {}", e.code, e.message)),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// `12.345 s`, `3 min 4 s`, `2 h 5 min`, `1 d 3 h`.
fn duration(millis: u64) -> String {
    let s = millis / 1000;
    match s {
        0..60 => format!("{}.{:03} s", s, millis % 1000),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// A moment relative to `now`: `12 s ago`, `in 3 min 4 s`.
fn relative(at: u64, now: u64) -> String {
    if at <= now {
        format!("{} ago", duration((now - at).saturating_mul(1000)))
    } else {
        format!("in {}", duration((at - now).saturating_mul(1000)))
    }
}

fn rounds_text(c: &CycleProgress) -> String {
    c.rounds
        .iter()
        .map(|r| format!("{} {}", r.round, duration(r.millis)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn edge_text(report: &StatusReport, one: bool) -> String {
    let mut out = String::new();
    if one {
        for c in &report.cycles {
            out += &format!("cycle {}: {}\n", c.cycle.0, c.phase);
            out += &format!(
                "  members    {} enrolled, {} submitted, {} missing, {} dropped\n",
                c.enrolled, c.submitted, c.missing, c.dropped
            );
            out += &format!(
                "  posted     {} (unix {})\n",
                relative(c.posted_at, report.now),
                c.posted_at
            );
            out += &format!(
                "  deadline   {} (unix {})\n",
                relative(c.deadline, report.now),
                c.deadline
            );
            if let Some(at) = c.billed_at {
                out += &format!(
                    "  billed     {} (unix {}), {} bills\n",
                    relative(at, report.now),
                    at,
                    c.bills
                );
            }
            out += &format!("  phases     {}\n", rounds_text(c));
            if let Some(n) = &c.nodes {
                for (name, list, count) in [
                    ("submitted", &n.submitted, c.submitted),
                    ("missing", &n.missing, c.missing),
                    ("dropped", &n.dropped, c.dropped),
                ] {
                    if list.len() < count {
                        out += &format!("  {name:<10} {count} (the first {} listed)\n", list.len());
                    } else {
                        out += &format!("  {name:<10} {count}\n");
                    }
                    for node in list {
                        out += &format!("    {}\n", node.to_hex());
                    }
                }
            }
        }
        return out;
    }
    out += &format!(
        "{} members joined; {} cycles shown (latest last)\n",
        report.members,
        report.cycles.len()
    );
    if report.cycles.is_empty() {
        out += "no cycle yet: post a context with `pbill context`\n";
        return out;
    }
    out += &format!(
        "{:>8}  {:<11}{:>9}{:>10}{:>8}{:>8}{:>7}  {:<16}  {}\n",
        "cycle",
        "phase",
        "enrolled",
        "submitted",
        "missing",
        "dropped",
        "bills",
        "posted",
        "phases"
    );
    for c in &report.cycles {
        out += &format!(
            "{:>8}  {:<11}{:>9}{:>10}{:>8}{:>8}{:>7}  {:<16}  {}\n",
            c.cycle.0,
            c.phase,
            c.enrolled,
            c.submitted,
            c.missing,
            c.dropped,
            c.bills,
            relative(c.posted_at, report.now),
            rounds_text(c)
        );
    }
    out
}

fn core_text(s: &StatusReply) -> String {
    let mut out = format!(
        "member {} (node {})\nedge {}: {}\n",
        s.member,
        s.node,
        s.edge,
        if s.joined { "joined" } else { "not joined yet" }
    );
    out += &format!(
        "community: {} members, member list fingerprint {}\n",
        s.community_size
            .map_or_else(|| "unknown number of".to_string(), |n| n.to_string()),
        s.roster_fingerprint.as_deref().unwrap_or("unknown")
    );
    if s.cycles.is_empty() {
        out += "no cycle with data at this core\n";
        return out;
    }
    out += &format!(
        "{:>8}  {:<24}{:>12}{:>12}\n",
        "cycle", "state", "upload B", "download B"
    );
    for c in &s.cycles {
        out += &format!(
            "{:>8}  {:<24}{:>12}{:>12}\n",
            c.cycle_id, c.state, c.upload_bytes, c.download_bytes
        );
    }
    out
}

/// The edge's answer as JSON, node ids in hex.
#[derive(Serialize)]
struct EdgeOut {
    now: u64,
    members: usize,
    cycles: Vec<CycleOut>,
}

#[derive(Serialize)]
struct CycleOut {
    cycle: u64,
    phase: String,
    posted_at: u64,
    deadline: u64,
    billed_at: Option<u64>,
    enrolled: usize,
    submitted: usize,
    missing: usize,
    dropped: usize,
    bills: usize,
    rounds: Vec<RoundOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<NodesOut>,
}

#[derive(Serialize)]
struct RoundOut {
    round: String,
    seconds: f64,
}

#[derive(Serialize)]
struct NodesOut {
    submitted: Vec<String>,
    missing: Vec<String>,
    dropped: Vec<String>,
}

impl From<&StatusReport> for EdgeOut {
    fn from(r: &StatusReport) -> EdgeOut {
        let hex = |v: &[NodeId]| v.iter().map(NodeId::to_hex).collect();
        EdgeOut {
            now: r.now,
            members: r.members,
            cycles: r
                .cycles
                .iter()
                .map(|c| CycleOut {
                    cycle: c.cycle.0,
                    phase: c.phase.clone(),
                    posted_at: c.posted_at,
                    deadline: c.deadline,
                    billed_at: c.billed_at,
                    enrolled: c.enrolled,
                    submitted: c.submitted,
                    missing: c.missing,
                    dropped: c.dropped,
                    bills: c.bills,
                    rounds: c
                        .rounds
                        .iter()
                        .map(|r| RoundOut {
                            round: r.round.clone(),
                            seconds: r.millis as f64 / 1000.0,
                        })
                        .collect(),
                    nodes: c.nodes.as_ref().map(|n| NodesOut {
                        submitted: hex(&n.submitted),
                        missing: hex(&n.missing),
                        dropped: hex(&n.dropped),
                    }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb_protocol::{CycleNodes, RoundTime};

    #[test]
    fn durations_and_moments_read_naturally() {
        assert_eq!(duration(1234), "1.234 s");
        assert_eq!(duration(184_000), "3 min 4 s");
        assert_eq!(duration(7_500_000), "2 h 5 min");
        assert_eq!(duration(97_200_000), "1 d 3 h");
        assert_eq!(relative(90, 100), "10.000 s ago");
        assert_eq!(relative(160, 100), "in 1 min 0 s");
    }

    #[test]
    fn one_cycle_lists_its_members_and_the_table_counts() {
        let c = CycleProgress {
            cycle: CycleId(7),
            phase: "correcting".into(),
            posted_at: 1000,
            deadline: 1900,
            billed_at: None,
            enrolled: 3,
            submitted: 2,
            missing: 1,
            dropped: 1,
            bills: 0,
            rounds: vec![
                RoundTime {
                    round: "collecting".into(),
                    millis: 900_000,
                },
                RoundTime {
                    round: "correcting".into(),
                    millis: 5000,
                },
            ],
            nodes: Some(CycleNodes {
                submitted: vec![NodeId([1; 32]), NodeId([2; 32])],
                missing: vec![NodeId([2; 32])],
                dropped: vec![NodeId([3; 32])],
            }),
        };
        let report = StatusReport {
            now: 1905,
            members: 3,
            cycles: vec![c],
        };
        let one = edge_text(&report, true);
        assert!(one.contains("cycle 7: correcting"), "{one}");
        assert!(one.contains("3 enrolled, 2 submitted, 1 missing, 1 dropped"));
        assert!(one.contains("collecting 15 min 0 s, correcting 5.000 s"));
        assert!(one.contains(&NodeId([3; 32]).to_hex()));
        assert!(one.contains("dropped    1\n"), "{one}");
        // A list cut by the edge says so.
        let mut cut = report.clone();
        cut.cycles[0].dropped = 9000;
        let text = edge_text(&cut, true);
        assert!(
            text.contains("dropped    9000 (the first 1 listed)"),
            "{text}"
        );
        let table = edge_text(&report, false);
        assert!(table.contains("correcting"), "{table}");
        assert!(!table.contains(&NodeId([3; 32]).to_hex()));
        let json = serde_json::to_value(EdgeOut::from(&report)).unwrap();
        assert_eq!(
            json["cycles"][0]["nodes"]["dropped"][0],
            NodeId([3; 32]).to_hex()
        );
        assert_eq!(json["cycles"][0]["rounds"][1]["seconds"], 5.0);
    }
}
