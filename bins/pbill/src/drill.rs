//! `pbill-bench drill`: the crash-restart drill. A community of edge and core
//! processes on loopback bills cycle after cycle while a killer thread
//! sends SIGKILL to the edge or to a random core at random moments and
//! restarts it. At the end every cycle must be billed exactly once (the
//! edge's log says "cycle billed" at most once per cycle), every
//! household's bill for every cycle must equal the plaintext model, and
//! no submission may be lost (a lost one would leave its cycle unbilled).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pb_core::api::ApiResponse;
use pb_model::{BillingModel, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{Request, Response};
use pb_units::Money;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::demo::{CommunityKeys, Proc, api, edge_config, start, work_dir, write_keys, write_toml};
use crate::synthetic;

/// Options of `pbill-bench drill`.
#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// Number of households (one core process each).
    #[arg(long, default_value_t = 4)]
    pub households: usize,
    /// Slots per cycle.
    #[arg(long, default_value_t = 8)]
    pub slots: usize,
    /// Kill at least this many times (the drill runs cycles until then).
    #[arg(long, default_value_t = 200)]
    pub kills: u64,
    /// Bill at least this many cycles.
    #[arg(long, default_value_t = 3)]
    pub cycles: u64,
    /// Shortest pause between a restart and the next kill, in ms.
    #[arg(long, default_value_t = 20)]
    pub min_gap_ms: u64,
    /// Longest pause between a restart and the next kill, in ms.
    #[arg(long, default_value_t = 600)]
    pub max_gap_ms: u64,
    /// Seed of the kill schedule and of the synthetic data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for keys, stores and logs (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
}

/// What the driver is doing, for the kill report.
const PHASES: [&str; 3] = ["posting context", "submitting", "awaiting bills"];

struct Procs {
    edge: Proc,
    cores: Vec<Proc>,
}

#[derive(Default)]
struct KillLog {
    edge: u64,
    cores: u64,
    by_phase: [u64; 3],
}

/// Runs the drill; `Ok(true)` when every check passed.
pub fn run(args: &DrillArgs) -> Result<bool, String> {
    if args.households < 3 {
        return Err("--households: at least 3".into());
    }
    if args.min_gap_ms > args.max_gap_ms {
        return Err("--min-gap-ms must not exceed --max-gap-ms".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let (dir, _tmp) = work_dir(args.dir.as_deref())?;
    let n = args.households;
    eprintln!(
        "pbill-bench drill: {n} households x {} slots, at least {} kills and {} cycles, in {}",
        args.slots,
        args.kills,
        args.cycles,
        dir.display()
    );
    let t0 = Instant::now();
    let CommunityKeys {
        edge: edge_key,
        operator,
        ids,
        enrollments,
    } = write_keys(&dir, n)?;
    let community = "drill-community".to_string();
    // No dropouts: every submission must make it.
    let roster_entries = crate::demo::enrolled_entries(&enrollments)?;
    let mut edge_config = edge_config(&dir, &community, &operator, enrollments, 86_400);
    let edge_toml = dir.join("edge.toml");
    let edge_log = dir.join("edge.log");
    let edge_extra = vec!["--backend".to_string(), "cpu".to_string()];
    write_toml(&edge_toml, &edge_config)?;
    let edge = start(&exe, "edge", &edge_extra, &edge_toml, &edge_log)?;
    edge_config.listen = edge.endpoint.clone();
    write_toml(&edge_toml, &edge_config)?;
    let core_toml = |i: usize| dir.join(format!("{}.toml", ids[i]));
    let core_log = |i: usize| dir.join(format!("{}.log", ids[i]));
    let mut cores = Vec::new();
    for i in 0..n {
        let mut cfg = pb_core::CoreConfig {
            member: ids[i].clone(),
            community: community.clone(),
            edge: edge_config.listen.clone(),
            edge_node: edge_key.id().to_hex(),
            listen: "tcp://127.0.0.1:0".into(),
            data_dir: dir.join(format!("{}-data", ids[i])),
            key_file: dir.join(format!("{}.key", ids[i])),
            secrets_passphrase_file: None,
            operator: operator.id().to_hex(),
            min_members: 3,
            drill_silent_after_mask: false,
            poll_millis: 100,
            request_timeout_millis: 2000,
            metrics: None,
        };
        write_toml(&core_toml(i), &cfg)?;
        let p = start(&exe, "core", &[], &core_toml(i), &core_log(i))?;
        cfg.listen = p.endpoint.clone();
        write_toml(&core_toml(i), &cfg)?;
        cores.push(p);
    }
    let endpoints: Vec<String> = cores.iter().map(|c| c.endpoint.clone()).collect();
    let procs = Arc::new(Mutex::new(Procs { edge, cores }));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let give_up = Instant::now() + Duration::from_secs(args.timeout_secs);
    // Every core joins before the first cycle (a later joiner is not a
    // member of it).
    for e in &endpoints {
        until(
            give_up,
            &rt,
            e,
            &serde_json::json!({"status": {}}),
            |r| match r {
                ApiResponse::Status(s) if s.joined => Some(()),
                _ => None,
            },
        )?;
    }

    // The operator signs and posts the member list (before the killer
    // starts: posting is not what this drill tests).
    let operator = Arc::new(operator);
    let signed = crate::client::sign_roster(&operator, &community, 1, roster_entries)?;
    let mut roster_client = EdgeClient::new(
        Connection::new(edge_config.listen.clone(), Duration::from_secs(10)),
        operator.clone(),
        pb_protocol::Audience {
            edge: edge_key.id(),
            community: pb_units::CommunityId(community.clone()),
        },
    );
    rt.block_on(crate::client::post_roster(&mut roster_client, &signed))?;

    // The killer.
    let done = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(0));
    let kills = Arc::new(AtomicU64::new(0));
    let log = Arc::new(Mutex::new(KillLog::default()));
    let killer = {
        let (done, phase, kills, log, procs) = (
            done.clone(),
            phase.clone(),
            kills.clone(),
            log.clone(),
            procs.clone(),
        );
        let (exe, edge_extra, edge_toml, edge_log) = (
            exe.clone(),
            edge_extra.clone(),
            edge_toml.clone(),
            edge_log.clone(),
        );
        let tomls: Vec<(PathBuf, PathBuf)> = (0..n).map(|i| (core_toml(i), core_log(i))).collect();
        let (min_gap, max_gap, seed) = (args.min_gap_ms, args.max_gap_ms, args.seed);
        std::thread::spawn(move || -> Result<(), String> {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            while !done.load(Ordering::Relaxed) {
                let gap = min_gap + rng.next_u64() % (max_gap - min_gap + 1);
                std::thread::sleep(Duration::from_millis(gap));
                if done.load(Ordering::Relaxed) {
                    break;
                }
                // One kill in three hits the edge, the rest a random core.
                let victim = rng.next_u64() % (3 * n as u64);
                let mut p = procs.lock().map_err(|_| "poisoned")?;
                let at = usize::from(phase.load(Ordering::Relaxed)).min(2);
                if victim < n as u64 {
                    let _ = p.edge.child.kill();
                    let _ = p.edge.child.wait();
                    p.edge = start(&exe, "edge", &edge_extra, &edge_toml, &edge_log)?;
                    if let Ok(mut l) = log.lock() {
                        l.edge += 1;
                        l.by_phase[at] += 1;
                    }
                } else {
                    let i = (victim % n as u64) as usize;
                    let _ = p.cores[i].child.kill();
                    let _ = p.cores[i].child.wait();
                    p.cores[i] = start(&exe, "core", &[], &tomls[i].0, &tomls[i].1)?;
                    if let Ok(mut l) = log.lock() {
                        l.cores += 1;
                        l.by_phase[at] += 1;
                    }
                }
                kills.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };

    // The driver: cycles until enough kills and cycles.
    let mut operator_client = EdgeClient::new(
        Connection::new(edge_config.listen.clone(), Duration::from_secs(2)),
        operator.clone(),
        pb_protocol::Audience {
            edge: edge_key.id(),
            community: pb_units::CommunityId(community.clone()),
        },
    );
    let mut results: BTreeMap<u64, bool> = BTreeMap::new();
    let mut cycle = 0u64;
    // Submissions the cores accepted, and bills the households got back:
    // an accepted submission without a bill is lost.
    let (mut accepted, mut billed_members) = (0u64, 0u64);
    let outcome = (|| -> Result<(), String> {
        while kills.load(Ordering::Relaxed) < args.kills || cycle < args.cycles {
            cycle += 1;
            let mut file = synthetic::generate(n, args.slots, args.seed.wrapping_add(cycle))?;
            file.cycle_id = cycle;
            let parsed = pb_inputs::community(
                &serde_json::to_string(&file).map_err(|e| e.to_string())?,
                BillingModel::Ucs,
                3,
                pb_inputs::Units::Round,
            )?;
            phase.store(0, Ordering::Relaxed);
            loop {
                if Instant::now() > give_up {
                    return Err(format!("cycle {cycle}: context not recorded in time"));
                }
                match rt
                    .block_on(operator_client.call(&Request::PutContext(parsed.context.clone())))
                {
                    Ok(x) if x.response == Response::Ok => break,
                    Ok(x) => {
                        if let Response::Error { code, message } = &x.response {
                            if *code != pb_protocol::ErrorCode::Rejected {
                                return Err(format!("cycle {cycle}: context refused: {message}"));
                            }
                        }
                    }
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            phase.store(1, Ordering::Relaxed);
            for (i, h) in file.households.iter().enumerate() {
                let request = serde_json::json!({"submit": {"cycle_id": cycle, "promises_kwh": h.promises_kwh, "actual_kwh": h.actual_kwh}});
                until(give_up, &rt, &endpoints[i], &request, |r| match r {
                    ApiResponse::Accepted(_) => Some(Ok(())),
                    ApiResponse::Error(e)
                        if e.code != "edge_unavailable" && e.code != "internal" =>
                    {
                        Some(Err(format!(
                            "cycle {cycle}, {}: submission refused: {}",
                            ids[i], e.message
                        )))
                    }
                    _ => None,
                })??;
                accepted += 1;
            }
            phase.store(2, Ordering::Relaxed);
            let want =
                reference::bills(&parsed.context, &parsed.households).map_err(|e| e.to_string())?;
            let mut exact = true;
            for i in 0..n {
                let request = serde_json::json!({"get_bill": {"cycle_id": cycle}});
                let bill = until(give_up, &rt, &endpoints[i], &request, |r| match r {
                    ApiResponse::Bill(b) => Some(b.clone()),
                    _ => None,
                })?;
                billed_members += 1;
                let got = (
                    Money::from_decimal_str(&bill.bill),
                    Money::from_decimal_str(&bill.reward),
                );
                if got != (Some(want[i].bill), Some(want[i].reward)) {
                    eprintln!(
                        "cycle {cycle}, {}: bill {} reward {} DIFFERS from the plaintext model",
                        ids[i], bill.bill, bill.reward
                    );
                    exact = false;
                }
            }
            results.insert(cycle, exact);
            eprintln!(
                "cycle {cycle}: {n} bills {} ({} kills so far, {:.0?})",
                if exact { "exact" } else { "WRONG" },
                kills.load(Ordering::Relaxed),
                t0.elapsed()
            );
        }
        Ok(())
    })();
    done.store(true, Ordering::Relaxed);
    let killer_result = killer
        .join()
        .map_err(|_| "the killer thread panicked".to_string())?;
    outcome?;
    killer_result?;

    // Exactly once: the edge logs "cycle billed" after the bills are
    // committed, so a cycle billed twice would appear twice.
    let billed = billed_counts(&edge_log)?;
    let mut ok = accepted == billed_members;
    let mut unlogged = 0;
    for (&c, &exact) in &results {
        let times = billed.get(&c).copied().unwrap_or(0);
        if times > 1 {
            eprintln!("cycle {c}: billed {times} times");
            ok = false;
        }
        if times == 0 {
            // Killed between the commit and the log line: billed (the
            // bills came back) but not logged.
            unlogged += 1;
        }
        ok &= exact;
    }
    let l = log.lock().map_err(|_| "poisoned")?;
    let total = kills.load(Ordering::Relaxed);
    println!(
        "kills survived: {total} ({} edge, {} core); by phase: {} {}, {} {}, {} {}",
        l.edge,
        l.cores,
        PHASES[0],
        l.by_phase[0],
        PHASES[1],
        l.by_phase[1],
        PHASES[2],
        l.by_phase[2]
    );
    println!(
        "cycles: {} billed, {} with bills exactly equal to the plaintext model, {} billed more than once, {} lost submissions{}",
        results.len(),
        results.values().filter(|e| **e).count(),
        billed.values().filter(|t| **t > 1).count(),
        accepted.saturating_sub(billed_members),
        if unlogged > 0 {
            format!(" ({unlogged} billing log lines lost to a kill)")
        } else {
            String::new()
        }
    );
    println!("time: {:.1?}", t0.elapsed());
    println!(
        "result: {}",
        if ok && total >= args.kills {
            "PASS"
        } else {
            "FAIL"
        }
    );
    drop(procs);
    Ok(ok && total >= args.kills)
}

/// Asks a core's household API until `accept` says the answer is final,
/// reconnecting after failures (the core may be down).
fn until<T>(
    give_up: Instant,
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    request: &serde_json::Value,
    accept: impl Fn(&ApiResponse) -> Option<T>,
) -> Result<T, String> {
    let mut conn = Connection::new(endpoint.to_string(), Duration::from_secs(3));
    loop {
        match rt.block_on(api(&mut conn, request.clone())) {
            Ok(r) => {
                if let Some(v) = accept(&r) {
                    return Ok(v);
                }
            }
            Err(_) => conn = Connection::new(endpoint.to_string(), Duration::from_secs(3)),
        }
        if Instant::now() > give_up {
            return Err(format!("{endpoint}: no final answer to {request} in time"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How often the edge's log says each cycle was billed.
fn billed_counts(log: &Path) -> Result<BTreeMap<u64, u64>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("cycle billed")) {
        let cycle = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cycle="))
            .and_then(|v| v.trim_start_matches("cycle-").parse::<u64>().ok());
        if let Some(c) = cycle {
            *out.entry(c).or_insert(0) += 1;
        }
    }
    Ok(out)
}
