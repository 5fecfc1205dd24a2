//! The operator's view of a running edge over real sockets: the `Status`
//! request through a cycle's phases (collecting, correcting after a
//! dropout, billed), refused to anyone but an operator, and the Prometheus
//! endpoint scraped with a real HTTP client, its counters moving with the
//! requests. A metrics address that cannot be bound stops the start-up
//! with nothing left running.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Member, context, data, edge_config, error_code};
use pb_edge::EdgeStore;
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_net::{Connection, EdgeClient};
use pb_protocol::{CycleProgress, ErrorCode, NodeKey, Request, Response, StatusReport};
use pb_przs::IdentityKey;
use pb_secagg::Round;
use pb_shared_billing::CpuBackend;
use pb_units::{CycleId, MemberId};

const N: usize = 4;

fn scrape(addr: SocketAddr) -> String {
    let mut r = ureq::get(&format!("http://{addr}/metrics")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut().read_to_string().unwrap()
}

/// The value of the series `name` (with its labels) in an exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn status_follows_a_cycle_and_metrics_move_with_requests() {
    let dir = tempfile::tempdir().unwrap();
    let edge_key = NodeKey::from_bytes([9; 32]);
    edge_key.write_new(&dir.path().join("edge.key")).unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let mut members: Vec<Member> = (0..N as u8)
        .map(|i| Member {
            key: NodeKey::from_bytes([i + 1; 32]),
            hiding: None,
            przs: IdentityKey::from_bytes([i + 60; 32]),
            glwe: SecretKey::generate(&mut deterministic(u128::from(i) + 70)).into(),
            id: MemberId::new(format!("s{i}")).unwrap(),
        })
        .collect();
    let mut config = edge_config(dir.path(), "status", &operator, &members, 4);
    config.metrics = Some("127.0.0.1:0".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let edge = pb_edge::spawn(
        rt.handle(),
        &config,
        Box::new(CpuBackend::new()),
        stop.clone(),
    )
    .unwrap();
    let metrics = edge.metrics.expect("metrics enabled");
    let first = scrape(metrics);
    assert_eq!(value(&first, "pbill_members"), Some(0.0), "{first}");
    assert!(!first.contains("pbill_requests_total"), "{first}");

    let client = |key: &NodeKey| {
        EdgeClient::new(
            Connection::new(edge.endpoint.clone(), Duration::from_secs(20)),
            NodeKey::from_bytes(key.to_bytes()),
            pb_protocol::Audience {
                edge: edge_key.id(),
                community: config.community_id().unwrap(),
            },
        )
    };
    let call = |c: &mut EdgeClient, r: &Request| rt.block_on(c.call(r)).unwrap().response;
    let mut clients: Vec<EdgeClient> = members.iter().map(|m| client(&m.key)).collect();
    for (m, c) in members.iter().zip(clients.iter_mut()) {
        let join = Request::Join {
            member: m.id.clone(),
            przs: m.przs.public(),
            public_key: m.glwe.public_key(&mut deterministic(5)),
        };
        assert_eq!(call(c, &join), Response::Ok);
    }
    let mut op = client(&operator);
    let status = |op: &mut EdgeClient, cycle: Option<u64>| -> StatusReport {
        match call(
            op,
            &Request::Status {
                cycle: cycle.map(CycleId),
            },
        ) {
            Response::Status(s) => s,
            other => panic!("{other:?}"),
        }
    };
    let one = |op: &mut EdgeClient| -> CycleProgress {
        let mut s = status(op, Some(1));
        assert_eq!(s.cycles.len(), 1);
        s.cycles.remove(0)
    };

    // Only an operator may ask.
    assert_eq!(
        error_code(&call(&mut clients[0], &Request::Status { cycle: None })),
        Some(ErrorCode::Forbidden)
    );
    let empty = status(&mut op, None);
    assert_eq!(empty.members, N);
    assert!(empty.cycles.is_empty());
    assert_eq!(
        error_code(&call(
            &mut op,
            &Request::Status {
                cycle: Some(CycleId(1))
            }
        )),
        Some(ErrorCode::UnknownCycle)
    );

    // The member list and the cycle; s3 never takes part.
    let ctx = context(1);
    let refs: Vec<&Member> = members.iter().collect();
    let signed = common::signed_roster("status", 1, &operator, &refs);
    assert_eq!(common::post_roster(&call, &mut op, &signed), Response::Ok);
    for m in &mut members {
        m.hiding = Some(common::hiding("status", m));
    }
    let hidden: Vec<_> = (0..3)
        .map(|i| {
            members[i]
                .hiding
                .as_ref()
                .unwrap()
                .hide(
                    &data(&members[i].id, i as i64 + 2),
                    &ctx,
                    &mut deterministic(200 + i as u128),
                )
                .unwrap()
        })
        .collect();
    assert_eq!(
        call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    let mut secagg: Vec<pb_secagg::Client> = members
        .iter()
        .map(|m| common::start(&signed, &operator, m, 1))
        .collect();
    for i in 0..3 {
        assert_eq!(
            common::advertise(&call, &mut clients[i], &secagg[i], 1),
            Response::Ok
        );
    }
    let node = |i: usize| members[i].key.id();
    let mut survivors = vec![node(0), node(1), node(2)];
    survivors.sort();

    // Where the cycle stands is recomputed between requests (at most
    // every tick): give it one.
    std::thread::sleep(Duration::from_millis(500));
    let c = one(&mut op);
    assert_eq!(c.phase, "advertise");
    assert_eq!(
        (c.enrolled, c.submitted, c.missing, c.dropped),
        (N, 0, 1, 0)
    );
    assert_eq!(c.deadline, c.posted_at + 4);
    let nodes = c.nodes.unwrap();
    assert!(nodes.submitted.is_empty());
    assert_eq!(nodes.missing, vec![node(3)]);
    assert_eq!(c.rounds.len(), 1);
    assert_eq!(c.rounds[0].round, "advertise");

    // The deadline passes: the share round opens without s3; the others
    // share and submit their masked data.
    common::wait_round(&call, &mut op, 1, Round::Share);
    for i in 0..3 {
        assert_eq!(
            common::share(&call, &mut clients[i], &mut secagg[i], 1),
            Response::Ok
        );
    }
    common::wait_round(&call, &mut op, 1, Round::Mask);
    for (i, h) in hidden.into_iter().enumerate() {
        let r = common::masked(&call, &mut clients[i], &mut secagg[i], h, 1);
        assert_eq!(call(&mut clients[i], &r), Response::Ok);
    }
    common::wait_round(&call, &mut op, 1, Round::Confirm);
    std::thread::sleep(Duration::from_millis(500));
    let c = one(&mut op);
    assert_eq!(c.phase, "confirm");
    assert_eq!((c.submitted, c.missing, c.dropped), (3, 3, 1));
    let nodes = c.nodes.unwrap();
    assert_eq!(nodes.dropped, vec![node(3)]);
    assert_eq!(nodes.submitted, survivors);
    assert_eq!(nodes.missing, survivors);
    let names: Vec<&str> = c.rounds.iter().map(|r| r.round.as_str()).collect();
    assert_eq!(names, ["advertise", "share", "mask", "confirm"]);
    assert!(c.rounds[0].millis >= 4000, "{:?}", c.rounds);

    for i in 0..3 {
        assert_eq!(
            common::confirm(
                &call,
                &mut clients[i],
                &mut secagg[i],
                &signed,
                &members[i].key,
                1
            ),
            Response::Ok
        );
    }
    for i in 0..3 {
        let r = common::reveal(&call, &mut clients[i], &mut secagg[i], 1);
        assert!(
            r == Response::Ok || error_code(&r) == Some(ErrorCode::AlreadyDone),
            "{r:?}"
        );
    }
    common::bill(&call, &mut clients[0], 1);
    let c = one(&mut op);
    assert_eq!(c.phase, "billed");
    assert_eq!((c.submitted, c.missing, c.dropped, c.bills), (3, 0, 1, 3));
    assert!(c.billed_at.is_some());
    let names: Vec<&str> = c.rounds.iter().map(|r| r.round.as_str()).collect();
    assert_eq!(names, ["rounds", "billing"]);
    let nodes = c.nodes.unwrap();
    assert_eq!(nodes.submitted, survivors);
    assert_eq!(nodes.dropped, vec![node(3)]);
    // Without a cycle: the table, in counts only.
    let table = status(&mut op, None);
    assert_eq!(table.cycles.len(), 1);
    assert_eq!(table.cycles[0].phase, "billed");
    assert!(table.cycles[0].nodes.is_none());

    // The counters moved with all of this.
    let after = scrape(metrics);
    let v = |series: &str| value(&after, series).unwrap_or_else(|| panic!("{series}\n{after}"));
    assert_eq!(v("pbill_requests_total{kind=\"Join\",outcome=\"ok\"}"), 4.0);
    assert_eq!(
        v("pbill_requests_total{kind=\"Submit\",outcome=\"ok\"}"),
        3.0
    );
    assert!(v("pbill_requests_total{kind=\"Reveal\",outcome=\"ok\"}") >= 2.0);
    assert_eq!(
        v("pbill_requests_total{kind=\"Status\",outcome=\"refused\"}"),
        2.0
    );
    assert!(v("pbill_requests_total{kind=\"Status\",outcome=\"ok\"}") >= 5.0);
    assert_eq!(v("pbill_refusals_total{reason=\"Forbidden\"}"), 1.0);
    assert_eq!(v("pbill_refusals_total{reason=\"UnknownCycle\"}"), 1.0);
    assert_eq!(v("pbill_submissions_total"), 3.0);
    assert_eq!(v("pbill_bills_total"), 3.0);
    assert_eq!(v("pbill_cycles_billed_total"), 1.0);
    assert_eq!(
        v("pbill_billing_duration_seconds_count{backend=\"cpu\"}"),
        1.0
    );
    assert!(v("pbill_billing_households_per_second{backend=\"cpu\"}") > 0.0);
    assert_eq!(v("pbill_members"), N as f64);
    assert_eq!(v("pbill_open_cycles"), 0.0);
    assert!(v("pbill_store_size_bytes") > 0.0);
    assert!(v("pbill_process_resident_memory_bytes") > 1e6);
    // No member or node id is ever a label.
    for m in &members {
        assert!(!after.contains(m.id.as_str()), "{}", m.id);
        assert!(!after.contains(&m.key.id().to_hex()));
    }

    stop.store(true, Ordering::Relaxed);
    edge.join();
    // Stopped with the edge.
    assert!(
        ureq::get(&format!("http://{metrics}/metrics"))
            .call()
            .is_err()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    NodeKey::from_bytes([9; 32])
        .write_new(&dir.path().join("edge.key"))
        .unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let port = free_port();
    let mut config = edge_config(dir.path(), "busy", &operator, &[], 60);
    config.listen = format!("tcp://127.0.0.1:{port}");
    config.metrics = Some(busy_addr.to_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let e = pb_edge::spawn(
        rt.handle(),
        &config,
        Box::new(CpuBackend::new()),
        stop.clone(),
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("metrics")
            && message.contains(&busy_addr.to_string())
            && message.contains("in use"),
        "{message}"
    );
    // Not half-started: the edge's endpoint is not listening and its store
    // is closed again (redb refuses a second open in one process).
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    EdgeStore::open(&config.data_dir).unwrap();

    // A malformed address is as clear.
    config.metrics = Some("localhost".into());
    let e = pb_edge::spawn(rt.handle(), &config, Box::new(CpuBackend::new()), stop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("IP:PORT"), "{e}");
    drop(busy);
}
