//! Dropouts against a running edge over real sockets: a member that never
//! submits, one that fetches the cycle and vanishes before submitting (and
//! comes back late, after the correction round: refused), and a survivor
//! that vanishes during the correction round and comes back (the cycle
//! waits for it). The survivors are billed exactly, the dropped members get
//! no bill, and the edge's own store shows that it never held an
//! individual value: each stored contribution is masked, and all it can
//! compute from them is the survivors' aggregate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Member, context, data, edge_config, error_code};
use pb_edge::EdgeStore;
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_hiding::HidingContext;
use pb_model::{Aggregates, BillingModel, Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{ErrorCode, NodeKey, Request, Response};
use pb_przs::{IdentityKey, PairwiseKeys, encode};
use pb_shared_billing::{CpuBackend, SharedBilling};
use pb_units::{CommunityId, CycleId, MemberId};

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
    assert_eq!(
        call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    let roster: Vec<_> = members
        .iter()
        .map(|m| (m.id.clone(), m.przs.public()))
        .collect();
    for m in &mut members {
        let keys =
            PairwiseKeys::derive(&CommunityId("dropouts".into()), &m.id, &m.przs, &roster).unwrap();
        m.hiding = Some(HidingContext::new(keys, m.glwe.clone()));
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

    // d0..d3 submit. d4 fetches the cycle, then vanishes before submitting;
    // d5 never says anything.
    for i in 0..4 {
        assert_eq!(
            call(&mut clients[i], &Request::Submit(hide(i))),
            Response::Ok
        );
    }
    assert!(matches!(
        call(&mut clients[4], &Request::GetCycle { cycle: CycleId(1) }),
        Response::Cycle { .. }
    ));

    // The deadline passes: d4 and d5 are declared dropped out.
    let give_up = Instant::now() + Duration::from_secs(20);
    let dropped = loop {
        match call(&mut op, &Request::GetCycle { cycle: CycleId(1) }) {
            Response::Cycle { dropped, .. } if !dropped.is_empty() => break dropped,
            _ => {}
        }
        assert!(Instant::now() < give_up, "no dropouts declared");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(dropped, vec![members[4].id.clone(), members[5].id.clone()]);

    // d4 comes back and submits after the correction round began: refused
    // (its data with the survivors' corrections would expose it), and
    // nothing changes.
    assert_eq!(
        error_code(&call(&mut clients[4], &Request::Submit(hide(4)))),
        Some(ErrorCode::Rejected)
    );
    // d0..d2 send their corrections; d3 has vanished for now: the cycle waits.
    let correction = |i: usize| {
        members[i]
            .hiding
            .as_ref()
            .unwrap()
            .dropout_correction(&ctx, &dropped)
            .unwrap()
    };
    for i in 0..3 {
        assert_eq!(
            call(&mut clients[i], &Request::Correct(correction(i))),
            Response::Ok
        );
    }
    assert_eq!(
        call(&mut clients[0], &Request::GetBill { cycle: CycleId(1) }),
        Response::Pending {
            waiting: 1,
            dropouts: true
        }
    );
    // d3 is back: the cycle is billed.
    assert_eq!(
        call(&mut clients[3], &Request::Correct(correction(3))),
        Response::Ok
    );
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
    assert!(error_code(&call(&mut clients[4], &Request::Submit(hide(4)))).is_some());
    stop.store(true, Ordering::Relaxed);
    edge.join();

    // What the edge holds after billing: the bills of the survivors, and no
    // contribution or correction any more.
    let store = EdgeStore::open(&dir.path().join("data")).unwrap();
    assert_eq!(store.bill_count(CycleId(1)).unwrap(), 4);
    assert!(store.submissions(CycleId(1)).unwrap().is_empty());
    assert!(store.corrections(CycleId(1)).unwrap().is_empty());

    // What the edge received. Each contribution is masked: no slot of it
    // equals the member's value (a chance of about 2^-64 per slot).
    let received: Vec<_> = (0..4).map(hide).collect();
    let v: Vec<_> = all.iter().map(Data::vectors).collect();
    for (i, h) in received.iter().enumerate() {
        for (a, masked) in BillingModel::Ucs.aggregates().iter().zip(&h.masked) {
            let clear: Vec<u64> = a.contribution(&v[i]).iter().map(|&x| encode(x)).collect();
            assert!(
                clear.iter().zip(masked).all(|(c, m)| c != m),
                "{}: a contribution shows a value in the clear",
                h.member
            );
        }
    }
    // All it can compute from them, with the corrections, is the
    // survivors' aggregate.
    let mut replay = SharedBilling::new(Box::new(CpuBackend::new()));
    for (id, m) in store.members().unwrap() {
        replay.register_member(id, m.public_key).unwrap();
    }
    replay
        .record_context_with(ctx.clone(), members.iter().map(|m| m.id.clone()))
        .unwrap();
    for h in received {
        replay.record_data(h).unwrap();
    }
    assert_eq!(replay.declare_dropouts(CycleId(1)).unwrap(), dropped);
    for i in 0..4 {
        replay.record_correction(correction(i)).unwrap();
    }
    assert_eq!(
        replay.aggregates(CycleId(1)).unwrap(),
        Aggregates::in_clear(BillingModel::Ucs, ctx.slots(), &v[..4])
    );
}
