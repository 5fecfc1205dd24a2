//! `pbill demo`: a whole community on loopback. One edge process and N core
//! processes (or threads, `--in-process`), synthetic households, the cycle
//! context from an operator key, data through each household API, bills
//! checked against the plaintext model.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::progress::{Progress, progress};
use pb_core::api::ApiResponse;
use pb_edge::{EdgeConfig, Enrollment};
use pb_model::{Bill, BillingModel, CycleContext, Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeKey, Request, Response};
use pb_shared_billing::BackendChoice;
use pb_units::Money;

use crate::synthetic;

/// Options of `pbill demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Number of households (one core each).
    #[arg(long, default_value_t = 20)]
    pub households: usize,
    /// Number of 15-minute slots (672 = one week).
    #[arg(long, default_value_t = 672)]
    pub slots: usize,
    /// Billing model.
    #[arg(long, value_enum, default_value_t = crate::ModelArg::Ucs)]
    pub model: crate::ModelArg,
    /// Compute backend of the edge: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub backend: BackendChoice,
    /// Seed of the synthetic community.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Households that never submit (the last ones): the advertise round
    /// closes at its deadline without them and the others are billed.
    #[arg(long, default_value_t = 0)]
    pub dropouts: usize,
    /// Households that submit and then vanish before unmasking (the last
    /// submitters; their cores go silent after their masked submission):
    /// the survivors' shares unmask the aggregate without them, and every
    /// submitter is billed.
    #[arg(long, default_value_t = 0)]
    pub unmask_dropouts: usize,
    /// Advertise deadline of the edge in seconds after the context
    /// (default 5 with --dropouts, else 600): households without data by
    /// then take no part in the cycle.
    #[arg(long)]
    pub deadline_secs: Option<u64>,
    /// Fault drill: kill -9 the edge when half the households have
    /// submitted, restart it, and go on.
    #[arg(long)]
    pub kill_edge: bool,
    /// Fault drill: kill -9 the first core right after its submission,
    /// restart it, and go on.
    #[arg(long)]
    pub kill_core: bool,
    /// Run the cores as threads of this process instead of processes
    /// (for large communities).
    #[arg(long)]
    pub in_process: bool,
    /// Directory for keys, configurations, stores and logs (default: a
    /// temporary directory, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up waiting for the bills after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Address (IP:PORT) of the edge's Prometheus metrics endpoint while
    /// the demo runs (default: a free port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// A child process that is killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) endpoint: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(
    exe: &Path,
    role: &str,
    extra: &[String],
    config: &Path,
    log: &Path,
) -> Result<Proc, String> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new(exe)
        .arg(role)
        .arg("--config")
        .arg(config)
        .args(["--log-level", "info"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {role}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut proc = Proc {
        child,
        endpoint: String::new(),
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) if line.starts_with("listening ") => {
            proc.endpoint = line.trim_start_matches("listening ").trim().to_string();
            Ok(proc)
        }
        _ => {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            Err(format!(
                "{role} did not start ({}); last log lines:\n{}",
                config.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    }
}

fn bar(len: usize, what: &str) -> Progress {
    progress(len, what)
}

pub(crate) fn write_toml(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = toml::to_string(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The directory of a loopback community: `dir` if given (it must be empty
/// or new: stores of an earlier run hold other keys, so new cores could
/// never join), else a temporary one, removed when the guard is dropped.
pub(crate) fn work_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match dir {
        Some(d) => {
            if std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(format!(
                    "--dir {}: not empty (a fresh directory is needed for the keys and stores)",
                    d.display()
                ));
            }
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// The node keys of a loopback community, written to `dir`: the edge's
/// (`edge.key`), the operator's and one per household core (`h0000.key`,
/// ...).
pub(crate) struct CommunityKeys {
    pub(crate) edge: NodeKey,
    pub(crate) operator: NodeKey,
    pub(crate) ids: Vec<String>,
    pub(crate) enrollments: Vec<Enrollment>,
}

pub(crate) fn write_keys(dir: &Path, households: usize) -> Result<CommunityKeys, String> {
    let new_key = |name: &str| -> Result<NodeKey, String> {
        let key = NodeKey::generate(&mut rand_core::OsRng);
        key.write_new(&dir.join(name)).map_err(|e| e.to_string())?;
        Ok(key)
    };
    let edge = new_key("edge.key")?;
    let operator = new_key("operator.key")?;
    let ids: Vec<String> = (0..households).map(|i| format!("h{i:04}")).collect();
    let mut enrollments = Vec::with_capacity(households);
    for id in &ids {
        let key = new_key(&format!("{id}.key"))?;
        enrollments.push(Enrollment {
            member: id.clone(),
            node: key.id().to_hex(),
        });
    }
    Ok(CommunityKeys {
        edge,
        operator,
        ids,
        enrollments,
    })
}

/// An edge on a loopback port of its own in `dir` (store in `edge-data`,
/// key in `edge.key`), `operator` allowed to post contexts, `members`
/// enrolled.
pub(crate) fn edge_config(
    dir: &Path,
    community: &str,
    operator: &NodeKey,
    members: Vec<Enrollment>,
    dropout_deadline_secs: u64,
) -> EdgeConfig {
    let round_secs = dropout_deadline_secs.clamp(1, 60);
    EdgeConfig {
        community: community.into(),
        listen: "tcp://127.0.0.1:0".into(),
        data_dir: dir.join("edge-data"),
        key_file: dir.join("edge.key"),
        limits: Default::default(),
        metrics: None,
        max_members: pb_edge::config::DEFAULT_MAX_MEMBERS,
        retention: Default::default(),
        store_cache_mib: pb_edge::config::DEFAULT_STORE_CACHE_MIB,
        min_members: 3,
        dropout_deadline_secs,
        round_secs,
        operators: vec![operator.id().to_hex()],
        members,
    }
}

/// A loopback address with a port free right now (for a child process's
/// endpoint that must be known before it starts).
fn free_loopback_addr() -> Result<String, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .map_err(|e| format!("cannot find a free port for the metrics: {e}"))
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM:`, `VmRSS:`).
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A household's core as the demo sees it.
enum CoreProc {
    Process(Proc),
    Thread(String),
}

impl CoreProc {
    fn endpoint(&self) -> &str {
        match self {
            CoreProc::Process(p) => &p.endpoint,
            CoreProc::Thread(e) => e,
        }
    }
}

pub(crate) async fn api(
    conn: &mut Connection,
    request: serde_json::Value,
) -> Result<ApiResponse, String> {
    let answer = conn.json(&request).await.map_err(|e| e.to_string())?;
    serde_json::from_value(answer).map_err(|e| format!("unexpected answer: {e}"))
}

/// Runs the demo; `Ok(true)` when every bill is present and exact.
pub fn run(args: &DemoArgs) -> Result<bool, String> {
    if args.households < 3 {
        return Err("--households: at least 3 (fewer would expose members to each other)".into());
    }
    if args.dropouts + 3 > args.households {
        return Err("--dropouts: at least 3 households must remain".into());
    }
    if args.unmask_dropouts + args.dropouts >= args.households {
        return Err("--unmask-dropouts: at least one household must stay to the end".into());
    }
    if args.kill_core && args.in_process {
        return Err("--kill-core needs core processes (drop --in-process)".into());
    }
    // Fail here, before starting anything, if the backend cannot run; the
    // edge process gets the same choice and logs which backend it uses.
    let (_, said) = pb_cuda::select_backend(args.backend)?;
    eprintln!("edge {said}");
    let edge_extra = vec!["--backend".to_string(), args.backend.to_string()];
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let (dir, _tmp) = work_dir(args.dir.as_deref())?;
    let n = args.households;
    let community = "demo-community".to_string();
    eprintln!(
        "pbill demo: {n} households x {} slots, model {}, in {}",
        args.slots,
        BillingModel::from(args.model),
        dir.display()
    );
    let t0 = Instant::now();

    // Keys and configuration.
    let CommunityKeys {
        edge: edge_key,
        operator,
        ids,
        enrollments,
    } = write_keys(&dir, n)?;
    let operator = Arc::new(operator);
    let deadline = args
        .deadline_secs
        .unwrap_or(if args.dropouts > 0 { 5 } else { 600 });
    let mut edge_config = edge_config(&dir, &community, &operator, enrollments, deadline);
    let metrics = match &args.metrics {
        Some(a) => a.clone(),
        None => free_loopback_addr()?,
    };
    edge_config.metrics = Some(metrics.clone());
    let edge_toml = dir.join("edge.toml");
    write_toml(&edge_toml, &edge_config)?;
    let edge_log = dir.join("edge.log");
    let mut edge = start(&exe, "edge", &edge_extra, &edge_toml, &edge_log)?;
    eprintln!("edge metrics (Prometheus) at http://{metrics}/metrics while the demo runs");
    // Pin the port so that a restarted edge is found at the same place.
    edge_config.listen = edge.endpoint.clone();
    write_toml(&edge_toml, &edge_config)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let submitters = n - args.dropouts;
    // The last submitters vanish before unmasking.
    let silent = |i: usize| i < submitters && i + args.unmask_dropouts >= submitters;
    let core_config = |i: usize| pb_core::CoreConfig {
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
        drill_silent_after_mask: silent(i),
        poll_millis: if n > 200 { 1000 } else { 200 },
        request_timeout_millis: 30_000,
        metrics: None,
    };
    let core_toml = |i: usize| dir.join(format!("{}.toml", ids[i]));
    let core_log = |i: usize| dir.join(format!("{}.log", ids[i]));
    let pb = bar(n, "starting cores");
    let mut cores = Vec::with_capacity(n);
    let mut threads = Vec::new();
    for i in 0..n {
        let mut cfg = core_config(i);
        if args.in_process {
            let running =
                pb_core::spawn(rt.handle(), &cfg, stop.clone()).map_err(|e| e.to_string())?;
            cores.push(CoreProc::Thread(running.endpoint.clone()));
            threads.push(running);
        } else {
            write_toml(&core_toml(i), &cfg)?;
            let p = start(&exe, "core", &[], &core_toml(i), &core_log(i))?;
            // Pin the API port for restarts.
            cfg.listen = p.endpoint.clone();
            write_toml(&core_toml(i), &cfg)?;
            cores.push(CoreProc::Process(p));
        }
        pb.inc(1);
    }
    pb.finish();
    let endpoints: Vec<String> = cores.iter().map(|c| c.endpoint().to_string()).collect();

    // Wait until every core has joined.
    let pb = bar(n, "cores joining");
    rt.block_on(async {
        let mut joined = vec![false; n];
        let mut conns: Vec<Connection> = endpoints
            .iter()
            .map(|e| Connection::new(e.clone(), Duration::from_secs(30)))
            .collect();
        let give_up = Instant::now() + Duration::from_secs(args.timeout_secs);
        while joined.iter().any(|j| !j) {
            for i in 0..n {
                if !joined[i] {
                    if let Ok(ApiResponse::Status(s)) =
                        api(&mut conns[i], serde_json::json!({"status": {}})).await
                    {
                        if s.joined {
                            joined[i] = true;
                            pb.inc(1);
                        }
                    }
                }
            }
            if Instant::now() > give_up {
                return Err(format!(
                    "cores not joined after {} s (see the logs in {})",
                    args.timeout_secs,
                    dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })?;
    pb.finish();
    let t_join = t0.elapsed();
    eprintln!("{n} cores started, keys generated, joined: {:.2?}", t_join);

    // The community's data and the cycle context.
    let file = synthetic::generate(n, args.slots, args.seed)?;
    let parsed = pb_inputs::community(
        &serde_json::to_string(&file).map_err(|e| e.to_string())?,
        BillingModel::from(args.model),
        3,
        pb_inputs::Units::Round,
    )?;
    let ctx: CycleContext = parsed.context.clone();
    let mut operator_client = EdgeClient::new(
        Connection::new(edge_config.listen.clone(), Duration::from_secs(30)),
        operator.clone(),
        pb_protocol::Audience {
            edge: edge_key.id(),
            community: pb_units::CommunityId(community.clone()),
        },
    );
    // The operator signs the member list with its enrolment key; every
    // core checks it against the key pinned in its core.toml.
    let signed = crate::client::sign_roster(
        &operator,
        &community,
        1,
        enrolled_entries(&edge_config.members)?,
    )?;
    rt.block_on(crate::client::post_roster(&mut operator_client, &signed))?;
    eprintln!(
        "member list version 1 signed by the operator: {} members, fingerprint {}",
        signed.roster.members.len(),
        pb_secagg::roster::show_fingerprint(&signed.roster.fingerprint())
    );
    match rt
        .block_on(operator_client.call(&Request::PutContext(ctx.clone())))
        .map_err(|e| e.to_string())?
        .response
    {
        Response::Ok => {}
        other => return Err(format!("the edge refused the context: {other:?}")),
    }

    // Submissions through the household APIs, in two halves: the fault
    // drills strike between them, mid-cycle.
    let t_submit = Instant::now();
    let pb = bar(submitters, "submitting (hide + upload)");
    let half = submitters / 2;
    let submit = |range: std::ops::Range<usize>| -> Result<(), String> {
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let mut results = Vec::new();
            for i in range {
                let h = &file.households[i];
                let endpoint = endpoints[i].clone();
                let request = serde_json::json!({"submit": {"cycle_id": file.cycle_id, "promises_kwh": h.promises_kwh, "actual_kwh": h.actual_kwh}});
                set.spawn(async move {
                    // What household software should do: retry while the
                    // edge is unavailable (the core stores nothing then).
                    let mut conn = Connection::new(endpoint, Duration::from_secs(60));
                    let mut attempts = 0;
                    loop {
                        let r = api(&mut conn, request.clone()).await;
                        attempts += 1;
                        match &r {
                            Ok(ApiResponse::Error(e)) if e.code == "edge_unavailable" && attempts < 60 => {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            _ => return (i, r),
                        }
                    }
                });
                // Bound the concurrency.
                while set.len() >= 16 {
                    if let Some(Ok(r)) = set.join_next().await {
                        pb.inc(1);
                        results.push(r);
                    }
                }
            }
            while let Some(joined) = set.join_next().await {
                if let Ok(r) = joined {
                    pb.inc(1);
                    results.push(r);
                }
            }
            results.into_iter().try_for_each(|(i, r)| check_accepted(i, r))
        })
    };
    submit(0..half)?;
    if args.kill_edge {
        pb.suspend(|| eprintln!("drill: killing the edge (SIGKILL) with {half} of {submitters} submissions made; restarting it"));
        let _ = edge.child.kill();
        let _ = edge.child.wait();
        edge = start(&exe, "edge", &edge_extra, &edge_toml, &edge_log)?;
    }
    if args.kill_core {
        if let Some(CoreProc::Process(p)) = cores.get_mut(0) {
            pb.suspend(|| {
                eprintln!(
                    "drill: killing core {} (SIGKILL) right after its submission; restarting it",
                    ids[0]
                )
            });
            let _ = p.child.kill();
            let _ = p.child.wait();
            *p = start(&exe, "core", &[], &core_toml(0), &core_log(0))?;
        }
    }
    submit(half..submitters)?;
    pb.finish();
    let t_submitted = t_submit.elapsed();
    eprintln!(
        "{submitters} households submitted through their APIs: {:.2?}",
        t_submitted
    );

    // Bills.
    let t_bills = Instant::now();
    let fetching = submitters - args.unmask_dropouts;
    let pb = bar(fetching, "masking rounds + billing + delivery");
    let give_up = Instant::now() + Duration::from_secs(args.timeout_secs);
    let answers: BTreeMap<usize, (pb_core::api::BillReply, pb_core::api::CycleReport)> = rt
        .block_on(async {
            let mut out = BTreeMap::new();
            let mut conns: Vec<Connection> = endpoints
                .iter()
                .map(|e| Connection::new(e.clone(), Duration::from_secs(30)))
                .collect();
            while out.len() < fetching && Instant::now() < give_up {
                for i in 0..fetching {
                    if out.contains_key(&i) {
                        continue;
                    }
                    if let Ok(ApiResponse::Bill(b)) = api(
                        &mut conns[i],
                        serde_json::json!({"get_bill": {"cycle_id": file.cycle_id}}),
                    )
                    .await
                    {
                        let report =
                            match api(&mut conns[i], serde_json::json!({"status": {}})).await {
                                Ok(ApiResponse::Status(s)) => {
                                    s.cycles.into_iter().find(|c| c.cycle_id == file.cycle_id)
                                }
                                _ => None,
                            };
                        if let Some(r) = report {
                            out.insert(i, (b, r));
                            pb.inc(1);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out
        });
    pb.finish();
    let t_billed = t_bills.elapsed();
    let edge_peak = status_kib(edge.child.id(), "VmHWM:");

    // Check against the plaintext model over the members billed.
    let survivors: Vec<Data> = parsed.households.iter().take(submitters).cloned().collect();
    let expected: Vec<Bill> = reference::bills(&ctx, &survivors).map_err(|e| e.to_string())?;
    let mut ok = answers.len() == fetching;
    println!(
        "{:<8} {:>16} {:>16} {:>16}  check",
        "member", "bill", "reward", "total"
    );
    let mut shown = 0;
    for (i, want) in expected.iter().enumerate() {
        let line = match answers.get(&i) {
            Some((b, _)) => {
                let got = (
                    Money::from_decimal_str(&b.bill),
                    Money::from_decimal_str(&b.reward),
                );
                let exact = got == (Some(want.bill), Some(want.reward));
                ok &= exact;
                format!(
                    "{:<8} {:>16} {:>16} {:>16}  {}",
                    ids[i],
                    b.bill,
                    b.reward,
                    b.total,
                    if exact { "exact" } else { "DIFFERS" }
                )
            }
            None if silent(i) => format!(
                "{:<8} {:>16} {:>16} {:>16}  vanished before unmasking (billed, never fetched)",
                ids[i], "-", "-", "-"
            ),
            None => {
                ok = false;
                format!("{:<8} {:>16} {:>16} {:>16}  MISSING", ids[i], "-", "-", "-")
            }
        };
        if shown < 25 || !(line.ends_with("exact") || line.ends_with("fetched)")) {
            println!("{line}");
            shown += 1;
        } else if shown == 25 {
            println!("... ({} more)", submitters - 25);
            shown += 1;
        }
    }
    for id in ids.iter().skip(submitters) {
        println!(
            "{id:<8} {:>16} {:>16} {:>16}  dropped out (no data)",
            "-", "-", "-"
        );
    }
    let reports: Vec<&pb_core::api::CycleReport> = answers.values().map(|(_, r)| r).collect();
    let avg = |f: &dyn Fn(&pb_core::api::CycleReport) -> u64| -> f64 {
        if reports.is_empty() {
            0.0
        } else {
            reports.iter().map(|r| f(r) as f64).sum::<f64>() / reports.len() as f64
        }
    };
    println!();
    println!(
        "timing ({n} households, {} slots, {}):",
        args.slots,
        BillingModel::from(args.model)
    );
    println!("  start + keygen + join      {:>10.2?}", t_join);
    println!(
        "  submit (hide + upload)     {:>10.2?}   hide at the cores {:.2} ms/household",
        t_submitted,
        avg(&|r| r.hide_micros) / 1e3
    );
    println!(
        "  billing + delivery         {:>10.2?}   decrypt at the cores {:.3} ms/household",
        t_billed,
        avg(&|r| r.decrypt_micros) / 1e3
    );
    println!("  total                      {:>10.2?}", t0.elapsed());
    println!(
        "wire per household-cycle: upload {:.0} B, download {:.0} B (sealed frames)",
        avg(&|r| r.upload_bytes),
        avg(&|r| r.download_bytes)
    );
    if let Some(kib) = edge_peak {
        println!("edge peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
    println!("edge metrics were served at http://{metrics}/metrics");
    println!(
        "result: {} of {fetching} bills {}",
        answers.len(),
        if ok {
            "present and exact"
        } else {
            "checked: SOME MISSING OR DIFFERENT"
        }
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(cores);
    for t in threads {
        t.join();
    }
    drop(edge);
    Ok(ok)
}

/// The member list entries of the enrolled cores.
pub(crate) fn enrolled_entries(
    members: &[Enrollment],
) -> Result<Vec<pb_secagg::RosterEntry>, String> {
    members
        .iter()
        .map(|e| {
            Ok(pb_secagg::RosterEntry {
                member: pb_units::MemberId::new(e.member.clone()).map_err(|x| x.to_string())?,
                identity: pb_protocol::NodeId::from_hex(&e.node)
                    .ok_or("enrolled node id is not hex")?
                    .0,
            })
        })
        .collect()
}

fn check_accepted(i: usize, r: Result<ApiResponse, String>) -> Result<(), String> {
    match r {
        Ok(ApiResponse::Accepted(_)) => Ok(()),
        Ok(other) => Err(format!("household {i}: submission refused: {other:?}")),
        Err(e) => Err(format!("household {i}: {e}")),
    }
}
