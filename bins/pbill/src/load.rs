//! `pbill load`: the edge under the load of a large community. One edge
//! process on loopback; this process plays every member's core (each with
//! its own node key, PRZS key, GLWE key and connection). Members join,
//! the operator posts the cycle, every member's hidden data is prepared
//! (not timed), then every member submits once at a uniformly random
//! moment of the window. Prints acceptance latency percentiles, the edge's
//! memory, and checks that every submission was accepted and every bill
//! decrypts to the plaintext model's.

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
use pb_przs::{IdentityKey, PairwiseKeys};
use pb_units::{CommunityId, MemberId};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

use crate::demo::{edge_config, start, status_kib, write_toml};
use crate::synthetic;

/// Options of `pbill load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Members of the community (each plays a core with its own
    /// connection).
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Slots of the cycle (96 = one day of 15-minute slots).
    #[arg(long, default_value_t = 96)]
    pub slots: usize,
    /// Every member submits once at a random moment of this window.
    #[arg(long, default_value_t = 60)]
    pub window_secs: u64,
    /// Seed of the data and of the submission schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up waiting for the bills after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

struct Member {
    id: MemberId,
    key: NodeKey,
    przs: IdentityKey,
    secret: Vec<u8>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the load test; `Ok(true)` when nothing was dropped and every bill
/// is exact.
pub fn run(args: &LoadArgs) -> Result<bool, String> {
    if args.members < 3 {
        return Err("--members: at least 3".into());
    }
    if args.window_secs == 0 {
        return Err("--window-secs: at least 1".into());
    }
    let n = args.members;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    eprintln!(
        "pbill load: {n} members x {} slots, submissions spread over {} s",
        args.slots, args.window_secs
    );
    let community = "load-community".to_string();
    let t0 = Instant::now();

    // Keys.
    let pb = progress(n, "member keys");
    let members: Vec<Member> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut seeder = pb_glwe::seeding::new_seeder();
            let secret = SecretKey::generate(seeder.as_mut());
            pb.inc(1);
            Ok(Member {
                id: MemberId::new(format!("m{i:05}")).map_err(|e| e.to_string())?,
                key: NodeKey::generate(&mut rand_core::OsRng),
                przs: IdentityKey::generate(&mut rand_core::OsRng),
                secret: secret.to_bytes().to_vec(),
            })
        })
        .collect::<Result<_, String>>()?;
    pb.finish();
    let edge_key = NodeKey::generate(&mut rand_core::OsRng);
    edge_key
        .write_new(&dir.join("edge.key"))
        .map_err(|e| e.to_string())?;
    let operator = NodeKey::generate(&mut rand_core::OsRng);

    // The edge, with connection caps that fit the community.
    let limits = Limits {
        max_connections: n + 64,
        max_connections_per_address: n + 64,
        ..Limits::default()
    };
    let mut config = edge_config(
        dir,
        &community,
        &operator,
        members
            .iter()
            .map(|m| Enrollment {
                member: m.id.to_string(),
                node: m.key.id().to_hex(),
            })
            .collect(),
        86_400,
    );
    config.limits = limits;
    let toml = dir.join("edge.toml");
    write_toml(&toml, &config)?;
    let edge = start(
        &exe,
        "edge",
        &["--backend".into(), "cpu".into()],
        &toml,
        &dir.join("edge.log"),
    )?;
    let pid = edge.child.id();
    let endpoint = edge.endpoint.clone();
    let rss_idle = status_kib(pid, "VmRSS:").unwrap_or(0);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = |key: &NodeKey| {
        EdgeClient::new(
            Connection::new(endpoint.clone(), Duration::from_secs(120)),
            NodeKey::from_bytes(key.to_bytes()),
            pb_protocol::Audience {
                edge: edge_key.id(),
                community: CommunityId(community.clone()),
            },
        )
    };

    // Join: every member over its own connection, which it keeps.
    let pb = progress(n, "joining");
    let mut clients: Vec<EdgeClient> = members.iter().map(|m| client(&m.key)).collect();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let fresh = std::mem::take(&mut clients);
        for (m, mut c) in members.iter().zip(fresh) {
            let mut seeder = pb_glwe::seeding::new_seeder();
            let secret = SecretKey::from_bytes(&m.secret).ok_or("key round trip")?;
            let join = Request::Join {
                member: m.id.clone(),
                przs: m.przs.public(),
                public_key: secret.public_key(seeder.as_mut()),
            };
            set.spawn(async move {
                let r = c.call(&join).await.map(|x| x.response);
                (c, r)
            });
            while set.len() >= 32 {
                joined(&mut set, &pb, &mut clients).await?;
            }
        }
        while !set.is_empty() {
            joined(&mut set, &pb, &mut clients).await?;
        }
        Ok::<(), String>(())
    })?;
    pb.finish();
    // `clients` came back in completion order: index by node.
    let mut by_node: std::collections::HashMap<_, EdgeClient> =
        clients.into_iter().map(|c| (c.node_id(), c)).collect();
    let t_join = t0.elapsed();
    eprintln!("{n} members joined: {t_join:.1?}");

    // The cycle.
    let mut file = synthetic::generate(n, args.slots, args.seed)?;
    for (h, m) in file.households.iter_mut().zip(&members) {
        h.id = pb_inputs::HouseholdId::Text(m.id.to_string());
    }
    let parsed = pb_inputs::community(
        &serde_json::to_string(&file).map_err(|e| e.to_string())?,
        BillingModel::Ucs,
        3,
        pb_inputs::Units::Round,
    )?;
    let ctx = parsed.context.clone();
    let mut op = client(&operator);
    match rt
        .block_on(op.call(&Request::PutContext(ctx.clone())))
        .map_err(|e| e.to_string())?
        .response
    {
        Response::Ok => {}
        other => return Err(format!("context refused: {other:?}")),
    }
    let list = match rt
        .block_on(op.call(&Request::GetCycle { cycle: ctx.cycle() }))
        .map_err(|e| e.to_string())?
        .response
    {
        Response::Cycle { members, .. } => members,
        other => return Err(format!("unexpected answer to GetCycle: {other:?}")),
    };
    let publics: Vec<_> = list.iter().map(|e| (e.member.clone(), e.przs)).collect();

    // Every member hides its data (what each core does; not timed).
    let t_hide = Instant::now();
    let pb = progress(n, "hiding (PRZS with every member, encryption)");
    let cid = CommunityId(community.clone());
    let hidden: Vec<HiddenData> = members
        .par_iter()
        .zip(parsed.households.par_iter())
        .map(|(m, d): (&Member, &Data)| {
            let keys =
                PairwiseKeys::derive(&cid, &m.id, &m.przs, &publics).map_err(|e| e.to_string())?;
            let secret = SecretKey::from_bytes(&m.secret).ok_or("key round trip")?;
            let h = HidingContext::new(keys, secret);
            let mut seeder = pb_glwe::seeding::new_seeder();
            let out = h.hide(d, &ctx, seeder.as_mut()).map_err(|e| e.to_string());
            pb.inc(1);
            out
        })
        .collect::<Result<_, String>>()?;
    pb.finish();
    eprintln!(
        "{n} submissions prepared: {:.1?} (the cores' work, not part of the load)",
        t_hide.elapsed()
    );

    // The load: each member submits once at a random moment of the window.
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
    eprintln!("submitting over {} s ...", args.window_secs);
    let start_at = tokio::time::Instant::now() + Duration::from_millis(200);
    let results: Vec<(usize, Duration, Result<Response, String>)> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (m, h)) in members.iter().zip(hidden).enumerate() {
            let Some(mut c) = by_node.remove(&m.key.id()) else {
                continue;
            };
            let offset = Duration::from_micros(rng.next_u64() % (window.as_micros() as u64));
            set.spawn(async move {
                tokio::time::sleep_until(start_at + offset).await;
                let sent = Instant::now();
                let r = c
                    .call(&Request::Submit(h))
                    .await
                    .map(|x| x.response)
                    .map_err(|e| e.to_string());
                (i, sent.elapsed(), r, c)
            });
        }
        let mut out = Vec::with_capacity(n);
        while let Some(j) = set.join_next().await {
            if let Ok((i, t, r, c)) = j {
                by_node.insert(c.node_id(), c);
                out.push((i, t, r));
            }
        }
        out
    });
    let t_window = start_at.elapsed();
    let accepted = results
        .iter()
        .filter(|(_, _, r)| matches!(r, Ok(Response::Ok)))
        .count();
    for (i, _, r) in results
        .iter()
        .filter(|(_, _, r)| !matches!(r, Ok(Response::Ok)))
        .take(5)
    {
        eprintln!("member {}: submission not accepted: {r:?}", members[*i].id);
    }
    let mut lat: Vec<Duration> = results.iter().map(|(_, t, _)| *t).collect();
    lat.sort();

    // Bills: every member fetches and decrypts its own.
    let t_bills = Instant::now();
    let want = reference::bills(&ctx, &parsed.households).map_err(|e| e.to_string())?;
    let give_up = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut exact = 0;
    let pb = progress(n, "fetching and decrypting bills");
    for (i, m) in members.iter().enumerate() {
        let c = by_node
            .get_mut(&m.key.id())
            .ok_or("a member's connection was lost")?;
        loop {
            match rt.block_on(c.call(&Request::GetBill { cycle: ctx.cycle() })) {
                Ok(x) => match x.response {
                    Response::Bill(b) => {
                        let secret = SecretKey::from_bytes(&m.secret).ok_or("key round trip")?;
                        let (bill, reward) = secret
                            .decrypt_totals(&b.totals)
                            .map_err(|e| e.to_string())?;
                        if (bill, reward) == (want[i].bill.0, want[i].reward.0) {
                            exact += 1;
                        } else {
                            eprintln!("{}: bill DIFFERS from the plaintext model", m.id);
                        }
                        break;
                    }
                    Response::Pending { .. } => {}
                    other => return Err(format!("{}: {other:?}", m.id)),
                },
                Err(e) => return Err(format!("{}: {e}", m.id)),
            }
            if Instant::now() > give_up {
                return Err("bills not ready in time".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        pb.inc(1);
    }
    pb.finish();
    let t_billed = t_bills.elapsed();
    stop_sampling.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let rss_end = status_kib(pid, "VmRSS:").unwrap_or(0);
    let store_bytes = dir_size(&dir.join("edge-data"));

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "load: {n} members, {} slots, window {} s",
        args.slots, args.window_secs
    );
    println!(
        "submissions: {accepted} of {n} accepted, {} not ({:.1} s from the window's start to the last answer)",
        n - accepted,
        t_window.as_secs_f64()
    );
    println!(
        "acceptance latency: p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  p99.9 {:.1?}  max {:.1?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or_default()
    );
    println!(
        "edge memory: {:.0} MiB at start, peak {:.0} MiB during the window (sampled), {:.0} MiB peak overall (VmHWM, billing included), {:.0} MiB at the end; store {:.0} MiB on disk",
        mib(rss_idle),
        mib(peak.load(Ordering::Relaxed)),
        mib(hwm),
        mib(rss_end),
        store_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "bills: {exact} of {n} fetched, decrypted and equal to the plaintext model ({:.1?} after the window)",
        t_billed
    );
    let ok = accepted == n && exact == n;
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    drop(edge);
    Ok(ok)
}

async fn joined(
    set: &mut tokio::task::JoinSet<(EdgeClient, Result<Response, pb_net::NetError>)>,
    pb: &Progress,
    clients: &mut Vec<EdgeClient>,
) -> Result<(), String> {
    if let Some(j) = set.join_next().await {
        let (c, r) = j.map_err(|e| e.to_string())?;
        match r {
            Ok(Response::Ok) => {}
            other => return Err(format!("join refused: {other:?}")),
        }
        clients.push(c);
        pb.inc(1);
    }
    Ok(())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
