//! Dropouts at every round against a running edge over real sockets, with
//! SecAgg+: a member that never takes part, one that shares its keys and
//! vanishes before masking (and comes back late: refused, nothing
//! changes), and a survivor that vanishes before revealing (the cycle
//! waits for it, and says so, then completes when it is back). The survivors
//! are billed exactly, the dropped members get no bill, and what the edge
//! stores shows that it never held an individual value: each stored
//! contribution is masked, and what it unmasked is the survivors'
//! aggregate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Member, context, data, edge_config, error_code};
use pb_edge::EdgeStore;
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_model::{Aggregates, BillingModel, Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{ErrorCode, NodeKey, Request, Response};
use pb_przs::{IdentityKey, encode};
use pb_secagg::Round;
use pb_shared_billing::CpuBackend;
use pb_units::{CycleId, MemberId};

const N: usize = 6;

#[test]
fn survivors_are_billed_and_late_or_vanished_members_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let edge_key = NodeKey::from_bytes([9; 32]);
    edge_key.write_new(&dir.path().join("edge.key")).unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let mut members: Vec<Member> = (0..N as u8)
        .map(|i| Member {
            key: NodeKey::from_bytes([i + 1; 32]),
            hiding: None,
            przs: IdentityKey::from_bytes([i + 40; 32]),
            glwe: SecretKey::generate(&mut deterministic(u128::from(i) + 7)).into(),
            id: MemberId::new(format!("d{i}")).unwrap(),
        })
        .collect();
    let config = edge_config(dir.path(), "dropouts", &operator, &members, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let edge = pb_edge::spawn(
        rt.handle(),
        &config,
        Box::new(CpuBackend::new()),
        stop.clone(),
    )
    .unwrap();
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
    let ctx = context(1);
    let mut op = client(&operator);
    let refs: Vec<&Member> = members.iter().collect();
    let signed = common::signed_roster("dropouts", 1, &operator, &refs);
    assert_eq!(common::post_roster(&call, &mut op, &signed), Response::Ok);
    assert_eq!(
        call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    for m in &mut members {
        m.hiding = Some(common::hiding("dropouts", m));
    }
    let all: Vec<Data> = (0..N).map(|i| data(&members[i].id, i as i64 + 2)).collect();
    let hide = |i: usize| {
        members[i]
            .hiding
            .as_ref()
            .unwrap()
            .hide(&all[i], &ctx, &mut deterministic(100 + i as u128))
            .unwrap()
    };
    let mut secagg: Vec<pb_secagg::Client> = members
        .iter()
        .map(|m| common::start(&signed, &operator, m, 1))
        .collect();

    // d0..d4 advertise; d5 never says anything: the advertise round closes
    // at its deadline without it.
    for i in 0..5 {
        assert_eq!(
            common::advertise(&call, &mut clients[i], &secagg[i], 1),
            Response::Ok
        );
    }
    common::wait_round(&call, &mut op, 1, Round::Share);
    match call(
        &mut clients[5],
        &Request::Advertise {
            cycle: CycleId(1),
            bundle: secagg[5].bundle().clone(),
        },
    ) {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Rejected);
            assert!(message.contains("advertise round"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // d0..d4 share; d0..d3 mask and submit; d4 vanishes before masking.
    for i in 0..5 {
        assert_eq!(
            common::share(&call, &mut clients[i], &mut secagg[i], 1),
            Response::Ok
        );
    }
    common::wait_round(&call, &mut op, 1, Round::Mask);
    let mut sent = Vec::new();
    for i in 0..4 {
        let r = common::masked(&call, &mut clients[i], &mut secagg[i], hide(i), 1);
        assert_eq!(call(&mut clients[i], &r), Response::Ok);
        sent.push(r);
    }
    let late = common::masked(&call, &mut clients[4], &mut secagg[4], hide(4), 1);
    // The mask round closes at its time without d4.
    common::wait_round(&call, &mut op, 1, Round::Confirm);
    // d4 comes back: its masked data is refused (its mask key is about to
    // be revealed), and nothing changes.
    assert_eq!(
        error_code(&call(&mut clients[4], &late)),
        Some(ErrorCode::Rejected)
    );
    assert_eq!(
        error_code(&call(
            &mut clients[4],
            &Request::GetShares { cycle: CycleId(1) }
        )),
        Some(ErrorCode::Rejected)
    );
    // The survivors confirm; d0..d2 reveal, d3 vanishes before revealing.
    for i in 0..4 {
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
    // d0's holders are d1..d4: with d3 and d4 silent only two of them
    // answered, one short of its threshold of three. The edge says whom it
    // waits for.
    std::thread::sleep(Duration::from_millis(500));
    match call(&mut clients[0], &Request::GetBill { cycle: CycleId(1) }) {
        Response::Pending { round, waiting } => {
            assert_eq!(round, Round::Reveal);
            assert_eq!(waiting, 1);
        }
        other => panic!("{other:?}"),
    }
    // d3 is back and reveals: every submitter is billed.
    let r = common::reveal(&call, &mut clients[3], &mut secagg[3], 1);
    assert!(
        r == Response::Ok || error_code(&r) == Some(ErrorCode::AlreadyDone),
        "{r:?}"
    );
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        if let Response::Cycle { billed: true, .. } =
            call(&mut op, &Request::GetCycle { cycle: CycleId(1) })
        {
            break;
        }
        assert!(Instant::now() < give_up, "the cycle was not billed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = reference::bills(&ctx, &all[..4]).unwrap();
    for i in 0..4 {
        let bill = match call(&mut clients[i], &Request::GetBill { cycle: CycleId(1) }) {
            Response::Bill(b) => b,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            members[i].hiding.as_ref().unwrap().decrypt(&bill).unwrap(),
            want[i]
        );
    }
    for i in 4..6 {
        assert_eq!(
            error_code(&call(
                &mut clients[i],
                &Request::GetBill { cycle: CycleId(1) }
            )),
            Some(ErrorCode::Rejected)
        );
    }
    // Still refused after billing.
    assert!(error_code(&call(&mut clients[4], &late)).is_some());
    stop.store(true, Ordering::Relaxed);
    edge.join();

    // What the edge holds after billing: the survivors' bills and the
    // aggregate it unmasked, which is exactly theirs; no contribution.
    let store = EdgeStore::open(&dir.path().join("data")).unwrap();
    assert_eq!(store.bill_count(CycleId(1)).unwrap(), 4);
    assert!(store.submissions(CycleId(1)).unwrap().is_empty());
    // The cycle's SecAgg+ tables (shares, masked vectors, answers) are
    // dropped once it is billed.
    assert!(store.round_table_cycles().unwrap().is_empty());
    let v: Vec<_> = all.iter().map(Data::vectors).collect();
    let clear = Aggregates::in_clear(BillingModel::Ucs, ctx.slots(), &v[..4]);
    let stored = store.aggregates(CycleId(1)).unwrap().unwrap();
    for (a, got) in BillingModel::Ucs.aggregates().iter().zip(&stored) {
        assert_eq!(clear.get(*a, ctx.slots()).unwrap(), got.as_slice());
    }
    // What the edge received: each contribution is masked, no slot of it
    // equals the member's value (a chance of about 2^-64 per slot).
    for (i, r) in sent.iter().enumerate() {
        let Request::Submit { data: h, .. } = r else {
            unreachable!()
        };
        for (a, masked) in BillingModel::Ucs.aggregates().iter().zip(&h.masked) {
            let clear: Vec<u64> = a.contribution(&v[i]).iter().map(|&x| encode(x)).collect();
            assert!(
                clear.iter().zip(masked).all(|(c, m)| c != m),
                "{}: a contribution shows a value in the clear",
                h.member
            );
        }
    }
}
