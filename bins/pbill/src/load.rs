//! `pbill-bench load`: the edge under the load of a large community. One edge
//! process on loopback; this process plays every member's core (each with
//! its own node key, GLWE key and SecAgg+ state, each request signed with
//! its own key in an encrypted session of its own key, over one of a pool
//! of `--concurrency` connections the members share). Members join, the operator posts the member
//! list and the cycle, then the SecAgg+ rounds run as phases: advertise,
//! share, the timed window in which every member submits its masked data
//! once at a uniformly random moment, confirm, reveal. `--dropout-rate`
//! members vanish before advertising, `--unmask-dropout-rate` members
//! after their masked submission. Prints acceptance latency percentiles,
//! the edge's memory and disk, the latency of requests made while the edge
//! bills, and checks that every submitter's bill decrypts to the plaintext
//! model's; `--report FILE.json` writes the same as JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::progress::{Progress, progress};
use pb_edge::{Enrollment, Limits};
use pb_glwe::SecretKey;
use pb_hiding::{HiddenData, HidingContext};
use pb_model::{BillingModel, Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeKey, Request, Response};
use pb_przs::IdentityKey;
use pb_secagg::{Client, Round, SignedRoster};
use pb_units::{CommunityId, CycleId, MemberId};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::demo::{edge_config, start, status_kib, write_toml};
use crate::synthetic;

/// Options of `pbill-bench load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Members of the community (each plays a core with its own keys).
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Slots of the cycle (96 = one day of 15-minute slots).
    #[arg(long, default_value_t = 96)]
    pub slots: usize,
    /// Every member submits its masked data once at a random moment of
    /// this window.
    #[arg(long, default_value_t = 60)]
    pub window_secs: u64,
    /// Fraction of members that vanish before the cycle starts (they never
    /// advertise; the edge waits for them until its advertise deadline).
    #[arg(long, default_value_t = 0.0)]
    pub dropout_rate: f64,
    /// Fraction of the submitters that vanish after their masked
    /// submission, before unmasking (they are billed all the same).
    #[arg(long, default_value_t = 0.0)]
    pub unmask_dropout_rate: f64,
    /// The edge's advertise deadline in seconds (default: 60 + members /
    /// 100, time enough for every member to advertise).
    #[arg(long)]
    pub deadline_secs: Option<u64>,
    /// Most requests in flight at once, and the size of the pool of
    /// connections the members share (each request runs in a session of
    /// its member's own key, handshaken over the borrowed connection).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seed of the data and of the submission schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up waiting for a round or the bills after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Write the edge's log to this file (default: a temporary directory,
    /// deleted at the end with the edge's store).
    #[arg(long)]
    pub edge_log: Option<std::path::PathBuf>,
}

struct Member {
    id: MemberId,
    key: Arc<NodeKey>,
    przs: IdentityKey,
    /// The GLWE secret key, encoded (`SecretKey::to_bytes`, 1 KiB; the
    /// key itself takes about 200 KiB, 4 GB for 20,000 members).
    secret: zeroize::Zeroizing<Vec<u8>>,
}

impl Member {
    /// The member's GLWE secret key.
    fn glwe(&self) -> Result<SecretKey, String> {
        SecretKey::from_bytes(&self.secret).ok_or_else(|| "GLWE key round trip".to_string())
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(sorted: &[Duration]) -> Latency {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Latency {
            p50: ms(percentile(sorted, 0.5)),
            p99: ms(percentile(sorted, 0.99)),
            max: ms(sorted.last().copied().unwrap_or_default()),
        }
    }
}

/// `--report FILE.json`.
#[derive(Debug, Serialize)]
struct Report {
    members: usize,
    slots: usize,
    window_secs: u64,
    dropouts_before: usize,
    dropouts_unmask: usize,
    submitters: usize,
    accepted: usize,
    exact_bills: usize,
    edge_vmhwm_bytes: u64,
    /// Bytes the store's files take on disk (allocated blocks).
    edge_disk_bytes: u64,
    /// The files' length: redb grows a file ahead of use (doubling it up
    /// to 4 GiB), and the part never written takes no disk space.
    edge_file_bytes: u64,
    disk_bytes_per_member_cycle: f64,
    accept_latency_ms: Latency,
    billing_secs: f64,
    /// Requests answered while the cycle was being billed (the aggregate
    /// unmasked, the bills being computed).
    during_billing_latency_ms: Latency,
    during_billing_requests: usize,
    /// Requests answered from the first reveal until the aggregate was
    /// unmasked (queued behind the members' reveals).
    during_reveal_latency_ms: Latency,
    during_reveal_requests: usize,
    phases_secs: Vec<(String, f64)>,
    pass: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A bounded pool of connections to the edge shared by every simulated
/// member, as `--concurrency` connections: a member borrows one, opens its
/// own encrypted session over it (a Noise handshake as its own key; the
/// edge replaces the connection's previous session), sends its request
/// signed with its own key, and gives the connection back. The edge thus
/// sees a bounded number of connections whatever the community's size, as
/// it would behind a pool of gateways, and never the churn of one
/// connection per request.
struct Pool {
    idle: std::sync::Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
    endpoint: String,
    to: pb_protocol::Audience,
}

/// A connection of the [`Pool`] borrowed by one member; given back when
/// dropped.
struct Lease {
    client: Option<EdgeClient>,
    pool: Arc<Pool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Pool {
    fn new(size: usize, endpoint: String, to: pb_protocol::Audience) -> Arc<Pool> {
        Arc::new(Pool {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(size.max(1))),
            endpoint,
            to,
        })
    }

    /// Waits for a free connection and makes it speak as `key`.
    async fn lease(self: &Arc<Pool>, key: &Arc<NodeKey>) -> Result<Lease, String> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let connection = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .unwrap_or_else(|| Connection::new(self.endpoint.clone(), Duration::from_secs(15)));
        Ok(Lease {
            client: Some(EdgeClient::new(connection, key.clone(), self.to.clone())),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

impl Lease {
    /// The client speaking as the member (always there until dropped).
    fn client(&mut self) -> Result<&mut EdgeClient, String> {
        self.client
            .as_mut()
            .ok_or_else(|| "connection gone".to_string())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (Some(client), Ok(mut idle)) = (self.client.take(), self.pool.idle.lock()) {
            idle.push(client.into_connection());
        }
    }
}

/// The members and the pool of connections they share.
struct Sessions<'a> {
    pool: Arc<Pool>,
    members: &'a [Member],
}

/// Sends `request`, again over a fresh connection after a transport
/// failure or timeout (at most three tries), as a core does: every
/// request is idempotent at the edge (a repeated round message is
/// answered `Ok` or `AlreadyDone`).
async fn call_retrying(c: &mut EdgeClient, request: &Request) -> Result<Response, String> {
    let mut last = String::new();
    for _ in 0..3 {
        match c.call(request).await {
            Ok(x) => return Ok(x.response),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Members worked on at once between network phases (see [`run`]).
const CHUNK: usize = 2_000;

/// A member's SecAgg+ state, encoded.
fn park(c: &Client) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(c, bincode::config::standard()).map_err(|e| e.to_string())
}

/// A member's SecAgg+ state from [`park`].
fn unpark(bytes: &[u8]) -> Result<Client, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

/// Requests written to a file until they are sent (the members' masked
/// submissions wait there for the timed window: about 133 KB each, 13 GB
/// at 100,000 members, more than this process should hold).
struct Spill {
    file: std::fs::File,
    at: u64,
    index: std::collections::BTreeMap<usize, (u64, usize)>,
    _dir: tempfile::TempDir,
}

impl Spill {
    fn new(dir: &std::path::Path) -> Result<Spill, String> {
        let d = tempfile::tempdir_in(dir).map_err(|e| e.to_string())?;
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(d.path().join("requests"))
            .map_err(|e| format!("spill file: {e}"))?;
        Ok(Spill {
            file,
            at: 0,
            index: std::collections::BTreeMap::new(),
            _dir: d,
        })
    }

    /// Appends member `i`'s encoded request.
    fn push(&mut self, i: usize, bytes: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(bytes, self.at)
            .map_err(|e| format!("spill file: {e}"))?;
        self.index.insert(i, (self.at, bytes.len()));
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// The members with a request.
    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.index.keys().copied()
    }

    /// Member `i`'s request.
    fn read(&self, i: usize) -> Result<Request, String> {
        use std::os::unix::fs::FileExt;
        let &(at, len) = self.index.get(&i).ok_or("no such request")?;
        let mut bytes = vec![0u8; len];
        self.file
            .read_exact_at(&mut bytes, at)
            .map_err(|e| format!("spill file: {e}"))?;
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .map(|(r, _)| r)
            .map_err(|e| e.to_string())
    }
}

/// Runs every request of `calls` (member index, request), each over a
/// pooled connection in an encrypted session of that member, at most
/// `concurrency` at once.
fn run_all(
    rt: &tokio::runtime::Runtime,
    sessions: &Sessions<'_>,
    calls: Vec<(usize, Request)>,
    concurrency: usize,
    what: &str,
) -> Vec<(usize, Duration, Result<Response, String>)> {
    run_all_shrunk(rt, sessions, calls, concurrency, what, &|_, r| r)
}

/// [`run_all`], passing each answer through `shrink` as it arrives (the
/// load process plays every member: answers that are the same for all,
/// such as the survivor set, are kept once, not once per member).
fn run_all_shrunk(
    rt: &tokio::runtime::Runtime,
    sessions: &Sessions<'_>,
    calls: Vec<(usize, Request)>,
    concurrency: usize,
    what: &str,
    shrink: &(dyn Fn(usize, Response) -> Response + Sync),
) -> Vec<(usize, Duration, Result<Response, String>)> {
    let pb = progress(calls.len(), what);
    let out = run_chunk(rt, sessions, calls, concurrency, &pb, shrink);
    pb.finish();
    out
}

/// Sends the same read request for each member of `who` (a chunk) and
/// returns the answers in `who`'s order; the first failure named.
fn ask_chunk(
    rt: &tokio::runtime::Runtime,
    sessions: &Sessions<'_>,
    who: &[usize],
    request: &Request,
    concurrency: usize,
) -> Result<Vec<Option<Response>>, String> {
    let calls = who.iter().map(|&i| (i, request.clone())).collect();
    let r = run_chunk(
        rt,
        sessions,
        calls,
        concurrency,
        &Progress::none(),
        &|_, r| r,
    );
    let mut by = answers(
        sessions.members.len(),
        r,
        sessions.members,
        request_what(request),
    )?;
    Ok(who.iter().map(|&i| by[i].take()).collect())
}

fn request_what(r: &Request) -> &'static str {
    match r {
        Request::GetBundles { .. } => "fetching key bundles",
        Request::GetShares { .. } => "fetching shares",
        Request::GetConfirmations { .. } => "fetching confirmations",
        _ => "asking",
    }
}

/// [`run_all_shrunk`] counting on a progress of the caller's.
fn run_chunk(
    rt: &tokio::runtime::Runtime,
    sessions: &Sessions<'_>,
    calls: Vec<(usize, Request)>,
    concurrency: usize,
    pb: &Progress,
    shrink: &(dyn Fn(usize, Response) -> Response + Sync),
) -> Vec<(usize, Duration, Result<Response, String>)> {
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut out = Vec::with_capacity(calls.len());
        for (i, request) in calls {
            let (pool, key) = (sessions.pool.clone(), sessions.members[i].key.clone());
            set.spawn(async move {
                let sent = Instant::now();
                let r = match pool.lease(&key).await {
                    Ok(mut lease) => match lease.client() {
                        Ok(c) => call_retrying(c, &request).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                (i, sent.elapsed(), r)
            });
            while set.len() >= concurrency.max(1) {
                if let Some(Ok((i, t, r))) = set.join_next().await {
                    pb.inc(1);
                    out.push((i, t, r.map(|x| shrink(i, x))));
                }
            }
        }
        while let Some(j) = set.join_next().await {
            if let Ok((i, t, r)) = j {
                pb.inc(1);
                out.push((i, t, r.map(|x| shrink(i, x))));
            }
        }
        out
    })
}

/// The answers of `results`, indexed like `members`; the first failure
/// named.
fn answers(
    n: usize,
    results: Vec<(usize, Duration, Result<Response, String>)>,
    members: &[Member],
    what: &str,
) -> Result<Vec<Option<Response>>, String> {
    let mut out: Vec<Option<Response>> = (0..n).map(|_| None).collect();
    for (i, _, r) in results {
        match r {
            // A retried round message the edge already had.
            Ok(Response::Error {
                code: pb_protocol::ErrorCode::AlreadyDone,
                ..
            }) => out[i] = Some(Response::Ok),
            Ok(Response::Error { code, message }) => {
                return Err(format!(
                    "{what}: {} refused ({code:?}): {message}",
                    members[i].id
                ));
            }
            Ok(x) => out[i] = Some(x),
            Err(e) => return Err(format!("{what}: {}: {e}", members[i].id)),
        }
    }
    Ok(out)
}

/// Polls the cycle until it reaches `round` (or is billed).
fn wait_round(
    rt: &tokio::runtime::Runtime,
    op: &mut EdgeClient,
    cycle: CycleId,
    round: Round,
    give_up: Duration,
) -> Result<(), String> {
    let until = Instant::now() + give_up;
    loop {
        match rt
            .block_on(op.call(&Request::GetCycle { cycle }))
            .map_err(|e| e.to_string())?
            .response
        {
            Response::Cycle {
                round: r, billed, ..
            } if r >= round || billed => return Ok(()),
            Response::Cycle { .. } => {}
            other => return Err(format!("unexpected answer to GetCycle: {other:?}")),
        }
        if Instant::now() > until {
            return Err(format!(
                "the cycle did not reach its {round:?} round in time"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Households of a community file read through the household API's
/// parser (`pb_inputs::community`), in parts of at most 10,000 households:
/// a file of 100,000 is over the parser's 64 MiB input limit.
fn parse_in_parts(file: pb_inputs::CommunityFile) -> Result<pb_inputs::Community, String> {
    const PART: usize = 10_000;
    let pb_inputs::CommunityFile {
        cycle_id,
        prices,
        households,
        cycle_start,
    } = file;
    let mut parts: Vec<Vec<pb_inputs::HouseholdFile>> = Vec::new();
    let mut rest = households.into_iter().peekable();
    while rest.peek().is_some() {
        parts.push(rest.by_ref().take(PART).collect());
    }
    // A last part too small for a community goes with the one before.
    if parts.len() > 1 && parts.last().is_some_and(|p| p.len() < 3) {
        let last = parts.pop().unwrap_or_default();
        if let Some(prev) = parts.last_mut() {
            prev.extend(last);
        }
    }
    let mut out: Option<pb_inputs::Community> = None;
    for households in parts {
        let part = pb_inputs::CommunityFile {
            cycle_id,
            prices: prices.clone(),
            households,
            cycle_start: cycle_start.clone(),
        };
        let c = pb_inputs::community(
            &serde_json::to_string(&part).map_err(|e| e.to_string())?,
            BillingModel::Ucs,
            3,
            pb_inputs::Units::Round,
        )?;
        match &mut out {
            None => out = Some(c),
            Some(all) => {
                all.households.extend(c.households);
                all.ids.extend(c.ids);
            }
        }
    }
    out.ok_or_else(|| "no households".to_string())
}

/// Runs the load test; `Ok(true)` when every submission was accepted and
/// every submitter's bill is exact.
pub fn run(args: &LoadArgs) -> Result<bool, String> {
    if args.members < 3 {
        return Err("--members: at least 3".into());
    }
    if args.window_secs == 0 {
        return Err("--window-secs: at least 1".into());
    }
    for (name, r) in [
        ("--dropout-rate", args.dropout_rate),
        ("--unmask-dropout-rate", args.unmask_dropout_rate),
    ] {
        if !(0.0..0.5).contains(&r) {
            return Err(format!("{name}: a fraction from 0 to below 0.5"));
        }
    }
    let n = args.members;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    eprintln!(
        "pbill-bench load: {n} members x {} slots, submissions spread over {} s",
        args.slots, args.window_secs
    );
    let community = "load-community".to_string();
    let mut phases: Vec<(String, f64)> = Vec::new();
    let mut phase_start = Instant::now();
    let edge_pid = std::cell::Cell::new(0u32);
    let mut lap = |name: &str, phases: &mut Vec<(String, f64)>| {
        let t = phase_start.elapsed().as_secs_f64();
        match status_kib(edge_pid.get(), "VmRSS:") {
            Some(kib) if edge_pid.get() != 0 => {
                eprintln!("{name}: {t:.1} s (edge memory now {} MiB)", kib / 1024)
            }
            _ => eprintln!("{name}: {t:.1} s"),
        }
        phases.push((name.to_string(), t));
        phase_start = Instant::now();
    };

    // Who vanishes when (the same for a given seed).
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let before = (n as f64 * args.dropout_rate).round() as usize;
    let submitters = n - before;
    let after = (submitters as f64 * args.unmask_dropout_rate).round() as usize;
    let mut vanish = vec![0u8; n]; // 0 stays, 1 before advertising, 2 before unmasking
    for &i in &order[..before] {
        vanish[i] = 1;
    }
    for &i in &order[before..before + after] {
        vanish[i] = 2;
    }

    // Keys.
    let pb = progress(n, "member keys");
    let members: Vec<Member> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut seeder = pb_glwe::seeding::new_seeder();
            let secret = SecretKey::generate(seeder.as_mut()).to_bytes();
            pb.inc(1);
            Ok(Member {
                id: MemberId::new(format!("m{i:06}")).map_err(|e| e.to_string())?,
                key: Arc::new(NodeKey::generate(&mut rand_core::OsRng)),
                przs: IdentityKey::generate(&mut rand_core::OsRng),
                secret,
            })
        })
        .collect::<Result<_, String>>()?;
    pb.finish();
    let edge_key = NodeKey::generate(&mut rand_core::OsRng);
    edge_key
        .write_new(&dir.join("edge.key"))
        .map_err(|e| e.to_string())?;
    let operator = Arc::new(NodeKey::generate(&mut rand_core::OsRng));

    // The edge, with connection caps that fit the pool (all its
    // connections come from this one address) and the operator's two.
    let limits = Limits {
        max_connections: args.concurrency + 64,
        max_connections_per_address: args.concurrency + 64,
        requests_per_sec: 1_000,
        request_burst: 1_000,
        ..Limits::default()
    };
    let enrollments: Vec<Enrollment> = members
        .iter()
        .map(|m| Enrollment {
            member: m.id.to_string(),
            node: m.key.id().to_hex(),
        })
        .collect();
    let roster_entries = crate::demo::enrolled_entries(&enrollments)?;
    let deadline = args.deadline_secs.unwrap_or(60 + n as u64 / 100);
    let mut config = edge_config(dir, &community, &operator, enrollments, deadline);
    config.limits = limits;
    // The share and mask rounds stay open for the whole window and for
    // the members' work this one process does for all of them (checking
    // k bundles and sharing, then hiding and masking: about 40 ms per
    // member at k = 300 on this machine); each closes as soon as every
    // member is in.
    config.round_secs = args.window_secs + 120 + n as u64 / 10;
    let toml = dir.join("edge.toml");
    write_toml(&toml, &config)?;
    let edge = start(
        &exe,
        "edge",
        &["--backend".into(), "cpu".into()],
        &toml,
        &args
            .edge_log
            .clone()
            .unwrap_or_else(|| dir.join("edge.log")),
    )?;
    let pid = edge.child.id();
    edge_pid.set(pid);
    let endpoint = edge.endpoint.clone();
    let rss_idle = status_kib(pid, "VmRSS:").unwrap_or(0);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let audience = pb_protocol::Audience {
        edge: edge_key.id(),
        community: CommunityId(community.clone()),
    };
    let connect = |key: &Arc<NodeKey>| {
        EdgeClient::new(
            Connection::new(endpoint.clone(), Duration::from_secs(15)),
            key.clone(),
            audience.clone(),
        )
    };
    let give_up = Duration::from_secs(args.timeout_secs);
    let sessions = Sessions {
        pool: Pool::new(args.concurrency, endpoint.clone(), audience.clone()),
        members: &members,
    };
    let all: Vec<usize> = (0..n).collect();
    let active = |stage: u8| -> Vec<usize> {
        all.iter()
            .copied()
            .filter(|&i| vanish[i] == 0 || vanish[i] > stage)
            .collect()
    };

    // Members are worked on in chunks: what a chunk needs (requests,
    // answers, decoded SecAgg+ states) is dropped before the next, so the
    // process's memory grows with the community only by each member's
    // parked state; the masked submissions wait on disk for the window.
    let chunk = CHUNK;

    // Join.
    let pb = progress(n, "joining");
    for part in all.chunks(chunk) {
        let calls: Vec<(usize, Request)> = part
            .par_iter()
            .map(|&i| {
                let m = &members[i];
                let mut seeder = pb_glwe::seeding::new_seeder();
                Ok((
                    i,
                    Request::Join {
                        member: m.id.clone(),
                        przs: m.przs.public(),
                        public_key: m.glwe()?.public_key(seeder.as_mut()),
                    },
                ))
            })
            .collect::<Result<_, String>>()?;
        let r = run_chunk(&rt, &sessions, calls, args.concurrency, &pb, &|_, r| r);
        answers(n, r, &members, "join")?;
    }
    pb.finish();
    lap("join", &mut phases);

    // The member list and the cycle.
    let mut file = synthetic::generate(n, args.slots, args.seed)?;
    for (h, m) in file.households.iter_mut().zip(&members) {
        h.id = pb_inputs::HouseholdId::Text(m.id.to_string());
    }
    let parsed = parse_in_parts(file)?;
    let ctx = parsed.context.clone();
    let cycle = ctx.cycle();
    let mut op = connect(&operator);
    let signed: SignedRoster =
        crate::client::sign_roster(&operator, &community, 1, roster_entries)?;
    rt.block_on(crate::client::post_roster(&mut op, &signed))?;
    match rt
        .block_on(op.call(&Request::PutContext(ctx.clone())))
        .map_err(|e| e.to_string())?
        .response
    {
        Response::Ok => {}
        other => return Err(format!("context refused: {other:?}")),
    }
    lap("member list and context", &mut phases);

    // Advertise (each member's per-cycle keys, signed).
    let advertisers = active(1);
    // A core verifies the member list once per version and draws the
    // cycle's graph once: this process does both once for all its
    // members, not once per member (which is quadratic in n).
    let roster = signed
        .verify(&operator.id().0, 3)
        .map_err(|e| format!("member list: {e}"))?;
    let session = pb_secagg::Session {
        community: roster.community.clone(),
        cycle: cycle.0,
        roster: roster.fingerprint(),
    };
    let params = roster.params().map_err(|e| e.to_string())?;
    let graph = pb_secagg::Graph::new(&session, &roster.ids(), &params);
    // The members' SecAgg+ states are parked encoded (bincode) between
    // rounds: this process plays every member (a core holds one).
    let mut parked: Vec<Option<Vec<u8>>> = (0..n).map(|_| None).collect();
    let pb = progress(advertisers.len(), "advertising");
    for part in advertisers.chunks(chunk) {
        let started: Vec<(usize, Vec<u8>, Request)> = part
            .par_iter()
            .map(|&i| {
                let m = &members[i];
                let c = Client::with_graph(
                    &roster,
                    &graph,
                    3,
                    &m.id,
                    m.key.signing_key(),
                    &mut rand_core::OsRng,
                )
                .map_err(|e| format!("{}: {e}", m.id))?;
                let request = Request::Advertise {
                    cycle,
                    bundle: c.bundle().clone(),
                };
                Ok((i, park(&c)?, request))
            })
            .collect::<Result<_, String>>()?;
        let mut calls = Vec::with_capacity(started.len());
        for (i, state, request) in started {
            parked[i] = Some(state);
            calls.push((i, request));
        }
        let r = run_chunk(&rt, &sessions, calls, args.concurrency, &pb, &|_, r| r);
        answers(n, r, &members, "advertise")?;
    }
    pb.finish();
    wait_round(
        &rt,
        &mut op,
        cycle,
        Round::Share,
        give_up + Duration::from_secs(deadline),
    )?;
    lap("advertise round", &mut phases);

    // Share: each chunk fetches its bundles, checks them and shares (the
    // cores' work), and uploads.
    let pb = progress(advertisers.len(), "checking bundles and sharing secrets");
    for part in advertisers.chunks(chunk) {
        let got = ask_chunk(
            &rt,
            &sessions,
            part,
            &Request::GetBundles { cycle },
            args.concurrency,
        )?;
        let shares: Vec<(usize, Vec<u8>, Request)> = part
            .par_iter()
            .zip(got)
            .map(|(&i, got)| {
                let Some(Response::Bundles(b)) = got else {
                    return Err(format!("{}: no bundles", members[i].id));
                };
                let mut c = unpark(parked[i].as_deref().ok_or("lost state")?)?;
                let shares = c
                    .share(&b, &mut rand_core::OsRng)
                    .map_err(|e| format!("{}: {e}", members[i].id))?;
                pb.inc(1);
                Ok((i, park(&c)?, Request::Share { cycle, shares }))
            })
            .collect::<Result<_, String>>()?;
        let mut calls = Vec::with_capacity(shares.len());
        for (i, state, request) in shares {
            parked[i] = Some(state);
            calls.push((i, request));
        }
        let r = run_chunk(
            &rt,
            &sessions,
            calls,
            args.concurrency,
            &Progress::none(),
            &|_, r| r,
        );
        answers(n, r, &members, "share")?;
    }
    pb.finish();
    wait_round(&rt, &mut op, cycle, Round::Mask, give_up)?;
    lap("share round", &mut phases);

    // Mask: each member's hidden data masked (the cores' work, not
    // timed), its submission written to a file until the window.
    let cid = CommunityId(community.clone());
    let mut spill = Spill::new(dir)?;
    let pb = progress(advertisers.len(), "hiding and masking");
    let mut state_bytes = 0usize;
    for part in advertisers.chunks(chunk) {
        let got = ask_chunk(
            &rt,
            &sessions,
            part,
            &Request::GetShares { cycle },
            args.concurrency,
        )?;
        let prepared: Vec<(usize, Vec<u8>, Vec<u8>)> = part
            .par_iter()
            .zip(got)
            .map(|(&i, got)| {
                let m = &members[i];
                let d: &Data = &parsed.households[i];
                let secret = m.glwe()?;
                let h = HidingContext::for_secagg(&cid, &m.id, secret);
                let mut seeder = pb_glwe::seeding::new_seeder();
                let mut hidden: HiddenData = h
                    .hide(d, &ctx, seeder.as_mut())
                    .map_err(|e| e.to_string())?;
                let Some(Response::Shares(s)) = got else {
                    return Err(format!("{}: no shares", m.id));
                };
                let mut c = unpark(parked[i].as_deref().ok_or("lost state")?)?;
                let masked = c
                    .mask(&s, &hidden.masked)
                    .map_err(|e| format!("{}: {e}", m.id))?;
                hidden.masked = masked.vectors.clone();
                let request = Request::Submit {
                    data: hidden,
                    partners: masked.partners.clone(),
                };
                let bytes = bincode::serde::encode_to_vec(&request, bincode::config::standard())
                    .map_err(|e| e.to_string())?;
                pb.inc(1);
                Ok((i, park(&c)?, bytes))
            })
            .collect::<Result<_, String>>()?;
        for (i, state, request) in prepared {
            state_bytes += state.len();
            parked[i] = Some(state);
            spill.push(i, &request)?;
        }
    }
    pb.finish();
    eprintln!(
        "members' SecAgg+ states after masking: {:.1} KB each on average",
        state_bytes as f64 / advertisers.len().max(1) as f64 / 1e3
    );
    lap("hiding and masking at the members (not load)", &mut phases);

    // The load: each member submits once at a random moment of the
    // window, read from the file just before.
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let window = Duration::from_secs(args.window_secs);
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop_sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut schedule: Vec<(Duration, usize)> = spill
        .members()
        .map(|i| {
            (
                Duration::from_micros(rng.next_u64() % (window.as_micros() as u64)),
                i,
            )
        })
        .collect();
    schedule.sort();
    eprintln!("submitting over {} s ...", args.window_secs);
    let start_at = tokio::time::Instant::now() + Duration::from_millis(200);
    let pb = progress(schedule.len(), "submitting (timed)");
    let results: Vec<(usize, Duration, Result<Response, String>)> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut out = Vec::with_capacity(schedule.len());
        for &(offset, i) in &schedule {
            tokio::time::sleep_until(start_at + offset).await;
            while let Some(j) = set.try_join_next() {
                if let Ok(done) = j {
                    pb.inc(1);
                    out.push(done);
                }
            }
            let request: Request = match spill.read(i) {
                Ok(r) => r,
                Err(e) => {
                    out.push((i, Duration::ZERO, Err(e)));
                    continue;
                }
            };
            let (pool, key) = (sessions.pool.clone(), members[i].key.clone());
            set.spawn(async move {
                // A core keeps its session open: the handshake over the
                // borrowed connection is not part of the timed request.
                let mut lease = match pool.lease(&key).await {
                    Ok(lease) => lease,
                    Err(e) => return (i, Duration::ZERO, Err(e)),
                };
                let c = match lease.client() {
                    Ok(c) => c,
                    Err(e) => return (i, Duration::ZERO, Err(e)),
                };
                let _ = c.handshake().await;
                let sent = Instant::now();
                let r = call_retrying(c, &request).await;
                (i, sent.elapsed(), r)
            });
        }
        while let Some(j) = set.join_next().await {
            if let Ok(done) = j {
                pb.inc(1);
                out.push(done);
            }
        }
        out
    });
    pb.finish();
    drop(spill);
    let ok = |r: &Result<Response, String>| {
        matches!(
            r,
            Ok(Response::Ok)
                | Ok(Response::Error {
                    code: pb_protocol::ErrorCode::AlreadyDone,
                    ..
                })
        )
    };
    let accepted = results.iter().filter(|(_, _, r)| ok(r)).count();
    for (i, _, r) in results.iter().filter(|(_, _, r)| !ok(r)).take(5) {
        eprintln!("member {}: submission not accepted: {r:?}", members[*i].id);
    }
    let mut lat: Vec<Duration> = results.iter().map(|(_, t, _)| *t).collect();
    lat.sort();
    wait_round(&rt, &mut op, cycle, Round::Confirm, give_up)?;
    lap("mask round (timed window)", &mut phases);

    // Confirm and reveal (those that stay).
    let stay = active(2);
    // Each member fetches the survivor set (one bit per roster member); a
    // set equal to the first one fetched is kept once, checked and hashed
    // once (a core does that once; this process plays every member), one
    // that differs is kept as it came.
    let first_set: std::sync::Mutex<Option<pb_secagg::SurvivorBits>> = std::sync::Mutex::new(None);
    let calls = stay
        .iter()
        .map(|&i| (i, Request::GetSurvivors { cycle }))
        .collect();
    let r = run_all_shrunk(
        &rt,
        &sessions,
        calls,
        args.concurrency,
        "fetching the survivor set",
        &|_, r| match r {
            Response::Survivors(set) => match first_set.lock() {
                Ok(mut first) if first.is_none() => {
                    *first = Some(set);
                    Response::Ok
                }
                Ok(first) if first.as_ref() == Some(&set) => Response::Ok,
                _ => Response::Survivors(set),
            },
            other => other,
        },
    );
    let got = answers(n, r, &members, "survivor set")?;
    let first_set = first_set
        .into_inner()
        .map_err(|_| "survivor set lost")?
        .ok_or("no survivor set fetched")?
        .checked(&signed.roster)
        .map_err(|e| format!("survivor set: {e}"))?;
    // Each state is decoded, confirms and is parked again; it keeps the
    // hash of the set it signed and its neighbours' part, not the set.
    let confirmed: Vec<(usize, Vec<u8>, Request)> = stay
        .par_iter()
        .map(|&i| {
            let own;
            let set = match &got[i] {
                Some(Response::Ok) => &first_set,
                Some(Response::Survivors(bits)) => {
                    own = bits
                        .checked(&signed.roster)
                        .map_err(|e| format!("{}: survivor set: {e}", members[i].id))?;
                    &own
                }
                _ => return Err(format!("{}: no survivor set", members[i].id)),
            };
            let mut c = unpark(parked[i].as_deref().ok_or("lost state")?)?;
            let confirmation = c
                .confirm_checked(set, members[i].key.signing_key())
                .map_err(|e| format!("{}: {e}", members[i].id))?;
            Ok((
                i,
                park(&c)?,
                Request::Confirm {
                    cycle,
                    confirmation,
                },
            ))
        })
        .collect::<Result<_, String>>()?;
    drop(got);
    let mut confirms = Vec::with_capacity(confirmed.len());
    for (i, state, request) in confirmed {
        parked[i] = Some(state);
        confirms.push((i, request));
    }
    let r = run_all(&rt, &sessions, confirms, args.concurrency, "confirming");
    answers(n, r, &members, "confirm")?;
    // Every reveal is computed first (checking k confirmations each: the
    // cores' work) and sent after, so that the unmasking and billing do
    // not share the machine with it; a member's state goes once it
    // revealed.
    let pb = progress(stay.len(), "checking confirmations and revealing");
    let mut reveals: Vec<(usize, Request)> = Vec::with_capacity(stay.len());
    for part in stay.chunks(chunk) {
        let got = ask_chunk(
            &rt,
            &sessions,
            part,
            &Request::GetConfirmations { cycle },
            args.concurrency,
        )?;
        let built: Vec<(usize, Request)> = part
            .par_iter()
            .zip(got)
            .map(|(&i, got)| {
                let Some(Response::Confirmations(cs)) = got else {
                    return Err(format!("{}: no confirmations", members[i].id));
                };
                let mut c = unpark(parked[i].as_deref().ok_or("lost state")?)?;
                let set = c
                    .confirmed()
                    .map(|c| c.set)
                    .ok_or_else(|| format!("{}: not confirmed", members[i].id))?;
                let reveal = c
                    .reveal(&set, &cs)
                    .map_err(|e| format!("{}: {e}", members[i].id))?;
                pb.inc(1);
                Ok((i, Request::Reveal { cycle, reveal }))
            })
            .collect::<Result<_, String>>()?;
        for (i, _) in &built {
            parked[*i] = None;
        }
        reveals.extend(built);
    }
    pb.finish();
    drop(parked);
    let t_reveal = Instant::now();
    // Requests made while the edge unmasks and bills: the operator asks
    // for the cycle every 50 ms until it is billed (or `--timeout-secs`).
    let prober = {
        let mut probe = connect(&operator);
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            // Each answer's latency, by what it said: being billed (the
            // round is done), or still in the reveal round.
            let (mut billing, mut revealing) = (Vec::new(), Vec::new());
            let mut billed_at = None;
            let until = Instant::now() + give_up;
            while Instant::now() < until {
                let t = Instant::now();
                if let Ok(x) = handle.block_on(probe.call(&Request::GetCycle { cycle })) {
                    let took = t.elapsed();
                    match x.response {
                        Response::Cycle { billed: true, .. } => {
                            billing.push(took);
                            billed_at = Some(Instant::now());
                            break;
                        }
                        Response::Cycle {
                            round: Round::Done, ..
                        } => billing.push(took),
                        _ => revealing.push(took),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (billing, revealing, billed_at)
        })
    };
    let r = run_all(&rt, &sessions, reveals, args.concurrency, "revealing");
    // Answers after the aggregate was unmasked get AlreadyDone (their
    // shares were not needed): `answers` takes them as done.
    answers(n, r, &members, "reveal")?;
    lap("confirm and reveal rounds", &mut phases);

    // Bills: every submitter that stayed fetches and decrypts its own, in
    // chunks, once the cycle is billed: the members' decryption (on their
    // own machines in a community) would otherwise take this machine's
    // cores from the edge while it bills, and the probe would measure
    // that.
    let (mut during, mut revealing, billed_at) =
        prober.join().map_err(|_| "the probe thread failed")?;
    during.sort();
    revealing.sort();
    let billing_secs = billed_at
        .map(|t| t.duration_since(t_reveal).as_secs_f64())
        .unwrap_or_default();
    if billed_at.is_none() {
        return Err("the cycle was not billed".into());
    }
    eprintln!("unmasked and billed {billing_secs:.1} s after the reveals began");
    let billed_members: Vec<usize> = stay.clone();
    let want_members: Vec<Data> = (0..n)
        .filter(|&i| vanish[i] != 1)
        .map(|i| parsed.households[i].clone())
        .collect();
    let bills = reference::bills(&ctx, &want_members).map_err(|e| e.to_string())?;
    let want: std::collections::BTreeMap<&MemberId, &pb_model::Bill> =
        want_members.iter().map(Data::member).zip(&bills).collect();
    let until = Instant::now() + give_up;
    let mut exact = 0;
    let pb = progress(billed_members.len(), "fetching and decrypting bills");
    for part in billed_members.chunks(chunk) {
        let mut pending: Vec<usize> = part.to_vec();
        while !pending.is_empty() {
            let calls = pending
                .iter()
                .map(|&i| (i, Request::GetBill { cycle }))
                .collect();
            let r = run_chunk(
                &rt,
                &sessions,
                calls,
                args.concurrency,
                &Progress::none(),
                &|_, r| r,
            );
            let mut again = Vec::new();
            let mut fetched = Vec::new();
            for (i, _, r) in r {
                match r {
                    Ok(Response::Bill(b)) => fetched.push((i, b)),
                    Ok(Response::Pending { .. }) => again.push(i),
                    Ok(other) => return Err(format!("{}: {other:?}", members[i].id)),
                    Err(e) => return Err(format!("{}: {e}", members[i].id)),
                }
            }
            let checked: Vec<bool> = fetched
                .par_iter()
                .map(|(i, b)| {
                    let m = &members[*i];
                    let (bill, reward) = m
                        .glwe()?
                        .decrypt_totals(&b.totals)
                        .map_err(|e| e.to_string())?;
                    pb.inc(1);
                    Ok(match want.get(&m.id) {
                        Some(w) if (bill, reward) == (w.bill.0, w.reward.0) => true,
                        _ => {
                            eprintln!("{}: bill DIFFERS from the plaintext model", m.id);
                            false
                        }
                    })
                })
                .collect::<Result<_, String>>()?;
            exact += checked.iter().filter(|x| **x).count();
            if !again.is_empty() {
                if Instant::now() > until {
                    return Err("bills not ready in time".into());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            pending = again;
        }
    }
    pb.finish();
    lap("bills fetched and decrypted", &mut phases);
    stop_sampling.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let rss_end = status_kib(pid, "VmRSS:").unwrap_or(0);
    let (store_len, store_bytes) = dir_size(&dir.join("edge-data"));

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "load: {n} members, {} slots, window {} s; {before} vanished before the cycle, {after} before unmasking",
        args.slots, args.window_secs
    );
    println!(
        "submissions: {accepted} of {submitters} accepted, {} not",
        submitters - accepted,
    );
    let accept = Latency::of(&lat);
    println!(
        "acceptance latency: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        accept.p50, accept.p99, accept.max
    );
    println!(
        "edge memory: {:.0} MiB at start, peak {:.0} MiB during the window (sampled), {:.0} MiB peak overall (VmHWM, billing included), {:.0} MiB at the end; store {:.0} MiB on disk ({:.0} MiB long)",
        mib(rss_idle),
        mib(peak.load(Ordering::Relaxed)),
        mib(hwm),
        mib(rss_end),
        store_bytes as f64 / (1 << 20) as f64,
        store_len as f64 / (1 << 20) as f64
    );
    let during_lat = Latency::of(&during);
    let reveal_lat = Latency::of(&revealing);
    println!(
        "unmasking + billing: billed {billing_secs:.1} s after the reveals began; requests answered while billing: {}, p99 {:.1} ms, max {:.1} ms; before, in the reveal round: {}, p99 {:.1} ms, max {:.1} ms",
        during.len(),
        during_lat.p99,
        during_lat.max,
        revealing.len(),
        reveal_lat.p99,
        reveal_lat.max
    );
    println!(
        "bills: {exact} of {} fetched, decrypted and equal to the plaintext model ({after} more billed for members that vanished before unmasking)",
        billed_members.len()
    );
    let ok = accepted == submitters && exact == billed_members.len();
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    if let Some(path) = &args.report {
        let report = Report {
            members: n,
            slots: args.slots,
            window_secs: args.window_secs,
            dropouts_before: before,
            dropouts_unmask: after,
            submitters,
            accepted,
            exact_bills: exact,
            edge_vmhwm_bytes: hwm * 1024,
            edge_disk_bytes: store_bytes,
            edge_file_bytes: store_len,
            disk_bytes_per_member_cycle: store_bytes as f64 / submitters.max(1) as f64,
            accept_latency_ms: accept,
            billing_secs,
            during_billing_latency_ms: during_lat,
            during_billing_requests: during.len(),
            during_reveal_latency_ms: reveal_lat,
            during_reveal_requests: revealing.len(),
            phases_secs: phases,
            pass: ok,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        crate::write_file(path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    drop(edge);
    Ok(ok)
}

/// The length of the files under `dir` and the bytes they take on disk
/// (allocated blocks; the length where the platform does not say).
fn dir_size(dir: &std::path::Path) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let (len, disk) = if p.is_dir() {
            dir_size(&p)
        } else {
            match e.metadata() {
                #[cfg(unix)]
                Ok(m) => (m.len(), std::os::unix::fs::MetadataExt::blocks(&m) * 512),
                #[cfg(not(unix))]
                Ok(m) => (m.len(), m.len()),
                Err(_) => (0, 0),
            }
        };
        total.0 += len;
        total.1 += disk;
    }
    total
}
