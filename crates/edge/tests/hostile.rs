//! Hostile input against a running edge over real sockets: every bad
//! request gets a clear signed error (or is dropped), nothing changes, and
//! the edge goes on to bill the honest members exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_model::{BillingModel, CycleContext, Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{Audience, Envelope, ErrorCode, NodeKey, Request, Response};
use pb_przs::IdentityKey;
use pb_secagg::Round;
use pb_shared_billing::CpuBackend;
use pb_units::{CommunityId, CycleId, MemberId, PriceUnits, Wh};

mod common;

use common::{Member, SLOTS, context, data, edge_config, error_code};

#[test]
fn hostile_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let edge_key = NodeKey::from_bytes([9; 32]);
    edge_key.write_new(&dir.path().join("edge.key")).unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let stranger = NodeKey::from_bytes([7; 32]);
    let mut members: Vec<Member> = (0..3u8)
        .map(|i| {
            let mut seeder = deterministic(i as u128);
            Member {
                key: NodeKey::from_bytes([i + 1; 32]),
                hiding: None,
                przs: IdentityKey::from_bytes([i + 20; 32]),
                glwe: SecretKey::generate(&mut seeder).into(),
                id: MemberId::new(format!("m{i}")).unwrap(),
            }
        })
        .collect();
    let config = edge_config(dir.path(), "hostile", &operator, &members, 3600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let edge = pb_edge::spawn(
        rt.handle(),
        &config,
        Box::new(CpuBackend::new()),
        stop.clone(),
    )
    .unwrap();
    let ep = edge.endpoint.clone();
    let timeout = Duration::from_secs(20);
    let audience = Audience {
        edge: edge_key.id(),
        community: CommunityId("hostile".into()),
    };
    let client = |key: &NodeKey| {
        EdgeClient::new(
            Connection::new(ep.clone(), timeout),
            NodeKey::from_bytes(key.to_bytes()),
            audience.clone(),
        )
    };
    let call = |c: &mut EdgeClient, r: &Request| rt.block_on(c.call(r)).unwrap().response;
    // Raw bytes in an encrypted session opened by `key`: the answer must
    // still be a signed response from the edge.
    let raw_as = |key: &NodeKey, bytes: Vec<u8>| -> Response {
        let mut conn = Connection::new(ep.clone(), timeout)
            .encrypted(NodeKey::from_bytes(key.to_bytes()), edge_key.id());
        let answer = rt.block_on(conn.request(bytes.clone())).unwrap();
        let (signer, _, r) = Envelope::open_response(&answer, &bytes).unwrap();
        assert_eq!(signer, edge_key.id());
        r
    };
    let member0 = NodeKey::from_bytes(members[0].key.to_bytes());
    let raw = |bytes: Vec<u8>| raw_as(&member0, bytes);

    // A core that joins with a low-order X25519 key (which would make key
    // derivation fail at every honest core) is refused with a clear
    // error, and nothing is recorded.
    let mut order8 = [0u8; 32];
    order8[0] = 1; // the point u = 1 has order 4
    let low = Request::Join {
        member: members[0].id.clone(),
        przs: pb_przs::IdentityPublic(order8),
        public_key: members[0].glwe.public_key(&mut deterministic(99)),
    };
    match call(&mut client(&members[0].key), &low) {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Rejected);
            assert!(message.contains("low-order"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match call(&mut client(&operator), &Request::GetMembers) {
        Response::Members(list) => assert!(list.members.is_empty()),
        other => panic!("{other:?}"),
    }

    // Members join.
    let mut clients: Vec<EdgeClient> = members.iter().map(|m| client(&m.key)).collect();
    for (m, c) in members.iter().zip(clients.iter_mut()) {
        let mut seeder = deterministic(99);
        let join = Request::Join {
            member: m.id.clone(),
            przs: m.przs.public(),
            public_key: m.glwe.public_key(&mut seeder),
        };
        assert_eq!(call(c, &join), Response::Ok);
    }
    // A member may not post a context or a member list; the operator may
    // (the list first).
    assert_eq!(
        error_code(&call(&mut clients[0], &Request::PutContext(context(1)))),
        Some(ErrorCode::Forbidden)
    );
    let refs: Vec<&Member> = members.iter().collect();
    let signed = common::signed_roster("hostile", 1, &operator, &refs);
    assert_eq!(
        error_code(&common::post_roster(&call, &mut clients[0], &signed)),
        Some(ErrorCode::Forbidden)
    );
    let mut op = client(&operator);
    match call(&mut op, &Request::PutContext(context(1))) {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Rejected);
            assert!(message.contains("no member list"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A list signed by someone else than the operator who posts it.
    let forged = common::signed_roster("hostile", 1, &stranger, &refs);
    assert_eq!(
        error_code(&common::post_roster(&call, &mut op, &forged)),
        Some(ErrorCode::Rejected)
    );
    // A list of another community.
    let elsewhere = common::signed_roster("elsewhere", 1, &operator, &refs);
    assert_eq!(
        error_code(&common::post_roster(&call, &mut op, &elsewhere)),
        Some(ErrorCode::Misdirected)
    );
    assert_eq!(common::post_roster(&call, &mut op, &signed), Response::Ok);
    assert_eq!(
        call(&mut op, &Request::PutContext(context(1))),
        Response::Ok
    );
    let cycle_state = |c: &mut EdgeClient| match call(c, &Request::GetCycle { cycle: CycleId(1) }) {
        Response::Cycle {
            round,
            waiting,
            billed,
            ..
        } => (round, waiting, billed),
        other => panic!("{other:?}"),
    };
    assert_eq!(cycle_state(&mut op), (Round::Advertise, 3, false));
    for m in members.iter_mut() {
        m.hiding = Some(common::hiding("hostile", m));
    }
    // The SecAgg+ rounds up to masking.
    let mut secagg: Vec<pb_secagg::Client> = members
        .iter()
        .map(|m| common::start(&signed, &operator, m, 1))
        .collect();
    // A member's core speaking for another member in a round: refused,
    // nothing changes (its own bundle is still accepted afterwards).
    match call(
        &mut clients[1],
        &Request::Advertise {
            cycle: CycleId(1),
            bundle: secagg[0].bundle().clone(),
        },
    ) {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::Forbidden);
            assert!(message.contains("speaks for"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    for (c, s) in clients.iter_mut().zip(&secagg) {
        assert_eq!(common::advertise(&call, c, s, 1), Response::Ok);
    }
    common::wait_round(&call, &mut op, 1, Round::Share);
    for (c, s) in clients.iter_mut().zip(secagg.iter_mut()) {
        assert_eq!(common::share(&call, c, s, 1), Response::Ok);
    }
    common::wait_round(&call, &mut op, 1, Round::Mask);
    let before = cycle_state(&mut op);
    assert_eq!(before, (Round::Mask, 3, false));
    let hidden = |i: usize, d: &Data, ctx: &CycleContext| {
        let mut seeder = deterministic(1000 + i as u128);
        members[i]
            .hiding
            .as_ref()
            .unwrap()
            .hide(d, ctx, &mut seeder)
            .unwrap()
    };
    let all: Vec<Data> = (0..3).map(|i| data(&members[i].id, i as i64 + 1)).collect();
    let good0 = common::masked(
        &call,
        &mut clients[0],
        &mut secagg[0],
        hidden(0, &all[0], &context(1)),
        1,
    );
    let Request::Submit {
        data: good0_data,
        partners: good0_partners,
    } = good0.clone()
    else {
        unreachable!()
    };
    let submit = |data: pb_hiding::HiddenData| Request::Submit {
        data,
        partners: good0_partners.clone(),
    };

    // 1. Random bytes, truncated frames, bit flips, wrong signature.
    assert_eq!(
        error_code(&raw(b"hello edge".to_vec())),
        Some(ErrorCode::BadFrame)
    );
    let frame = Envelope::seal_request(&members[0].key, pb_net::now_counter(0), &audience, &good0);
    assert_eq!(
        error_code(&raw(frame[..frame.len() / 2].to_vec())),
        Some(ErrorCode::BadFrame)
    );
    let mut forged = frame.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1; // inside the signature
    assert_eq!(error_code(&raw(forged)), Some(ErrorCode::BadSignature));
    let mut flipped = frame.clone();
    flipped[200] ^= 0x10; // inside the payload
    assert!(matches!(
        error_code(&raw(flipped)),
        Some(ErrorCode::BadSignature | ErrorCode::BadFrame)
    ));
    // 1b. A request validly signed by an enrolled member but for another
    // community or another edge is refused, and changes nothing.
    for (to, what) in [
        (
            Audience {
                community: CommunityId("elsewhere".into()),
                ..audience.clone()
            },
            "another community",
        ),
        (
            Audience {
                edge: stranger.id(),
                ..audience.clone()
            },
            "another edge",
        ),
    ] {
        let frame = Envelope::seal_request(&members[0].key, pb_net::now_counter(0), &to, &good0);
        match raw(frame) {
            Response::Error { code, message } => {
                assert_eq!(code, ErrorCode::Misdirected);
                assert!(message.contains(what), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    // 2. Oversized frame: the socket guard closes the connection at the
    // frame's header, before the edge buffers it (no answer); the edge goes
    // on serving.
    let mut conn = Connection::new(ep.clone(), Duration::from_secs(3));
    assert!(rt.block_on(conn.request(vec![0u8; 2 << 20])).is_err());
    // 3. Unknown identity: refused at the handshake, before any frame of
    // it is decrypted or decoded.
    let mut s = client(&stranger);
    match rt.block_on(s.call(&good0)) {
        Err(pb_net::NetError::Secure { source, .. }) => {
            assert!(source.to_string().contains("not enrolled"), "{source}")
        }
        other => panic!("{other:?}"),
    }
    // 3b. A plain (unencrypted) frame, validly signed by a member, is
    // refused by the transport.
    let mut plain = Connection::new(ep.clone(), timeout);
    let answer = rt
        .block_on(plain.request(Envelope::seal_request(
            &members[0].key,
            pb_net::now_counter(0),
            &audience,
            &good0,
        )))
        .unwrap();
    assert_eq!(answer[0], pb_net::secure::REFUSED);
    assert!(String::from_utf8_lossy(&answer).contains("encrypted transport only"));
    // 3c. A client that pins another key for the edge fails its handshake
    // with a clear error and sends nothing.
    let mut pinned_wrong = EdgeClient::new(
        Connection::new(ep.clone(), timeout),
        NodeKey::from_bytes(members[0].key.to_bytes()),
        Audience {
            edge: stranger.id(),
            ..audience.clone()
        },
    );
    match rt.block_on(pinned_wrong.call(&Request::GetMembers)) {
        Err(pb_net::NetError::Secure { source, .. }) => {
            assert!(
                source.to_string().contains("wrong pinned edge key"),
                "{source}"
            )
        }
        other => panic!("{other:?}"),
    }
    // 3d. A member's session carrying a frame signed by another member
    // is refused.
    let relayed = Envelope::seal_request(
        &members[1].key,
        pb_net::now_counter(0),
        &audience,
        &Request::GetMembers,
    );
    assert_eq!(error_code(&raw(relayed)), Some(ErrorCode::Forbidden));
    // 4. Someone else's data; an operator submitting.
    assert_eq!(
        error_code(&call(&mut clients[1], &good0)),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        error_code(&call(&mut op, &good0)),
        Some(ErrorCode::Forbidden)
    );
    // 5. Wrong vector lengths (a context of another size) and wrong cycle.
    let short_ctx = CycleContext::new(
        CycleId(1),
        BillingModel::Ucs,
        vec![PriceUnits(1); 4],
        vec![PriceUnits(1); 4],
        vec![PriceUnits(1); 4],
    )
    .unwrap();
    let short = Data::new(
        members[0].id.clone(),
        CycleId(1),
        vec![Wh(1); 4],
        vec![Wh(1); 4],
    )
    .unwrap();
    let bad_len = hidden(0, &short, &short_ctx);
    assert_eq!(
        error_code(&call(&mut clients[0], &submit(bad_len))),
        Some(ErrorCode::Rejected)
    );
    // The masked contributions of the right member and cycle but masked
    // with other neighbours than it shared with.
    assert_eq!(
        error_code(&call(
            &mut clients[0],
            &Request::Submit {
                data: good0_data.clone(),
                partners: vec![members[1].id.clone()],
            }
        )),
        Some(ErrorCode::Rejected)
    );
    let other_cycle = hidden(
        0,
        &Data::new(
            members[0].id.clone(),
            CycleId(5),
            vec![Wh(1); SLOTS],
            vec![Wh(1); SLOTS],
        )
        .unwrap(),
        &context(5),
    );
    assert_eq!(
        error_code(&call(&mut clients[0], &submit(other_cycle))),
        Some(ErrorCode::UnknownCycle)
    );
    assert_eq!(
        error_code(&call(
            &mut clients[0],
            &Request::GetBill { cycle: CycleId(5) }
        )),
        Some(ErrorCode::UnknownCycle)
    );
    // Nothing changed so far.
    assert_eq!(cycle_state(&mut op), before);

    // 6. A valid submission, then its replay: the replay is refused. A
    // request sealed before it but delivered after (reordered) is refused
    // too, and changes nothing.
    let early = Envelope::seal_request(
        &members[0].key,
        pb_net::now_counter(0),
        &audience,
        &Request::GetBill { cycle: CycleId(1) },
    );
    let frame = Envelope::seal_request(&members[0].key, pb_net::now_counter(0), &audience, &good0);
    assert_eq!(raw(frame.clone()), Response::Ok);
    assert_eq!(error_code(&raw(frame.clone())), Some(ErrorCode::Replay));
    assert_eq!(error_code(&raw(early)), Some(ErrorCode::Replay));
    // Replays do not spend the signer's rate budget: after more replays
    // than its burst, the member is still served.
    let burst = pb_edge::Limits::default().request_burst;
    for _ in 0..burst * 2 {
        assert_eq!(error_code(&raw(frame.clone())), Some(ErrorCode::Replay));
    }
    assert!(matches!(
        call(&mut clients[0], &Request::GetMembers),
        Response::Members(_)
    ));
    // A second submission with a fresh counter is "already done".
    assert_eq!(
        error_code(&call(&mut clients[0], &good0)),
        Some(ErrorCode::AlreadyDone)
    );
    assert_eq!(cycle_state(&mut op), (Round::Mask, 2, false));
    assert_eq!(
        call(&mut clients[0], &Request::GetBill { cycle: CycleId(1) }),
        Response::Pending {
            round: Round::Mask,
            waiting: 2,
        }
    );

    // 7. One member floods: beyond its burst it is answered RateLimited,
    // nothing changes, and the others are served as before.
    let limits = pb_edge::Limits::default();
    let mut limited = 0;
    for _ in 0..(limits.request_burst * 2) {
        match call(&mut clients[2], &Request::GetMembers) {
            Response::Members(_) => {}
            r => {
                assert_eq!(error_code(&r), Some(ErrorCode::RateLimited), "{r:?}");
                limited += 1;
            }
        }
    }
    assert!(
        limited > 0,
        "a flood of {} requests was never limited",
        limits.request_burst * 2
    );
    assert!(matches!(
        call(&mut clients[1], &Request::GetMembers),
        Response::Members(_)
    ));
    assert_eq!(cycle_state(&mut op), (Round::Mask, 2, false));
    // 8. A refused request's frame cannot be replayed later: a request
    // refused as rate limited is sent again once the bucket has refilled;
    // the old edge recorded counters of successful requests only and
    // would have served it then.
    let mut refused = None;
    for _ in 0..(limits.request_burst * 2) {
        let frame = Envelope::seal_request(
            &members[2].key,
            pb_net::now_counter(0),
            &audience,
            &Request::GetMembers,
        );
        if error_code(&raw_as(&members[2].key, frame.clone())) == Some(ErrorCode::RateLimited) {
            refused = Some(frame);
            break;
        }
    }
    let refused = refused.expect("the flood was never limited");
    // The bucket refills at the sustained rate.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        error_code(&raw_as(&members[2].key, refused)),
        Some(ErrorCode::Replay)
    );

    // The edge still serves: the others submit, everyone confirms and
    // reveals, and everyone is billed exactly (once the flooder's bucket
    // has refilled).
    std::thread::sleep(Duration::from_secs(1));
    for i in 1..3 {
        let h = hidden(i, &all[i], &context(1));
        let r = common::masked(&call, &mut clients[i], &mut secagg[i], h, 1);
        assert_eq!(call(&mut clients[i], &r), Response::Ok);
    }
    common::wait_round(&call, &mut op, 1, Round::Confirm);
    for i in 0..3 {
        let r = common::confirm(
            &call,
            &mut clients[i],
            &mut secagg[i],
            &signed,
            &members[i].key,
            1,
        );
        assert_eq!(r, Response::Ok);
    }
    for i in 0..3 {
        let r = common::reveal(&call, &mut clients[i], &mut secagg[i], 1);
        assert!(
            matches!(r, Response::Ok) || error_code(&r) == Some(ErrorCode::AlreadyDone),
            "{r:?}"
        );
    }
    let want = reference::bills(&context(1), &all).unwrap();
    for i in 0..3 {
        let bill = common::bill(&call, &mut clients[i], 1);
        assert_eq!(
            members[i].hiding.as_ref().unwrap().decrypt(&bill).unwrap(),
            want[i]
        );
    }
    // Data for a billed cycle is refused.
    let again = hidden(1, &all[1], &context(1));
    assert_eq!(
        error_code(&call(&mut clients[1], &submit(again))),
        Some(ErrorCode::AlreadyDone)
    );
    drop(good0);
    stop.store(true, Ordering::Relaxed);
    let counters = edge.join();
    assert_eq!(counters.billed, 1);
    assert!(counters.refused >= 14, "{counters:?}");
    assert!(counters.rate_limited > 0, "{counters:?}");
}
