//! Membership over real sockets: the operator revokes a member by posting
//! a new version of the member list without it. The revoked member is
//! refused everything from then on, an older version cannot be posted
//! again, a list naming a node the edge does not admit is refused, and the
//! next cycle runs, and is billed exactly, on the new list.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Member, context, data, edge_config, error_code};
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_model::{Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{ErrorCode, NodeKey, Request, Response};
use pb_przs::IdentityKey;
use pb_shared_billing::CpuBackend;
use pb_units::{CycleId, MemberId};

#[test]
fn a_revoked_member_is_refused_and_the_cycle_runs_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let edge_key = NodeKey::from_bytes([9; 32]);
    edge_key.write_new(&dir.path().join("edge.key")).unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let mut members: Vec<Member> = (0..4u8)
        .map(|i| Member {
            key: NodeKey::from_bytes([i + 1; 32]),
            hiding: None,
            przs: IdentityKey::from_bytes([i + 60; 32]),
            glwe: SecretKey::generate(&mut deterministic(u128::from(i) + 70)).into(),
            id: MemberId::new(format!("r{i}")).unwrap(),
        })
        .collect();
    let config = edge_config(dir.path(), "revoke", &operator, &members, 3600);
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
    let mut op = client(&operator);
    let all: Vec<&Member> = members.iter().collect();
    let v1 = common::signed_roster("revoke", 1, &operator, &all);
    assert_eq!(common::post_roster(&call, &mut op, &v1), Response::Ok);
    let roster_of = |c: &mut EdgeClient| {
        call(
            c,
            &Request::GetRoster {
                version: None,
                page: 0,
            },
        )
    };
    assert!(matches!(roster_of(&mut clients[3]), Response::Roster(_)));

    // Version 2 without r3: r3 is refused everything, with the reason.
    let v2 = common::signed_roster("revoke", 2, &operator, &all[..3]);
    assert_eq!(common::post_roster(&call, &mut op, &v2), Response::Ok);
    for r in [
        Request::GetRoster {
            version: None,
            page: 0,
        },
        Request::GetCycle { cycle: CycleId(1) },
        Request::GetBill { cycle: CycleId(1) },
    ] {
        match call(&mut clients[3], &r) {
            Response::Error { code, message } => {
                assert_eq!(code, ErrorCode::NotEnrolled, "{message}");
                assert!(message.contains("revoked"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The old version cannot come back; the same one again is fine.
    assert_eq!(
        error_code(&common::post_roster(&call, &mut op, &v1)),
        Some(ErrorCode::AlreadyDone)
    );
    assert_eq!(common::post_roster(&call, &mut op, &v2), Response::Ok);
    // A list naming a key the edge does not admit for a member (a swapped
    // or rotated key the edge's configuration does not know) is refused.
    let intruder = Member {
        key: NodeKey::from_bytes([77; 32]),
        hiding: None,
        przs: IdentityKey::from_bytes([78; 32]),
        glwe: members[0].glwe.clone(),
        id: members[2].id.clone(),
    };
    let swapped = common::signed_roster(
        "revoke",
        3,
        &operator,
        &[&members[0], &members[1], &intruder],
    );
    match common::post_roster(&call, &mut op, &swapped) {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Rejected);
            assert!(message.contains("does not admit"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A list below the minimum is refused.
    let small = common::signed_roster("revoke", 3, &operator, &all[..2]);
    assert_eq!(
        error_code(&common::post_roster(&call, &mut op, &small)),
        Some(ErrorCode::Rejected)
    );

    // The next cycle runs on version 2: r0..r2 are billed exactly.
    let ctx = context(1);
    assert_eq!(
        call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    match call(&mut op, &Request::GetCycle { cycle: CycleId(1) }) {
        Response::Cycle { roster_version, .. } => assert_eq!(roster_version, 2),
        other => panic!("{other:?}"),
    }
    for m in &mut members {
        m.hiding = Some(common::hiding("revoke", m));
    }
    let values: Vec<Data> = (0..3).map(|i| data(&members[i].id, i as i64 + 3)).collect();
    common::all_rounds(
        &call,
        &mut op,
        &mut clients,
        &members,
        &v2,
        &operator,
        &ctx,
        &values,
    );
    let want = reference::bills(&ctx, &values).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        let bill = loop {
            match call(&mut clients[i], &Request::GetBill { cycle: CycleId(1) }) {
                Response::Bill(b) => break b,
                Response::Pending { .. } => {}
                other => panic!("{other:?}"),
            }
            assert!(std::time::Instant::now() < until, "no bill");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            members[i].hiding.as_ref().unwrap().decrypt(&bill).unwrap(),
            want[i]
        );
    }
    assert_eq!(
        error_code(&call(
            &mut clients[3],
            &Request::GetBill { cycle: CycleId(1) }
        )),
        Some(ErrorCode::NotEnrolled)
    );
    stop.store(true, Ordering::Relaxed);
    edge.join();
}
