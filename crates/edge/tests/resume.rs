//! An edge stopped in the middle of billing a cycle resumes, after a
//! restart on the same store, from its last committed batch: the cycle is
//! billed once, with every bill exact, and the bills stored before the
//! stop are not computed again (the store refuses a bill before its
//! progress marker; the seed and the aggregates were stored when billing
//! began).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Member, context, data, edge_config};
use pb_glwe::SecretKey;
use pb_glwe::seeding::deterministic;
use pb_model::{Data, reference};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeKey, Request, Response, StatusReport};
use pb_przs::IdentityKey;
use pb_shared_billing::{ComputeBackend, CpuBackend, EvalJob};
use pb_units::{CycleId, MemberId};

/// The CPU backend, one household per batch and slow: billing spans many
/// ticks, so the edge can be stopped in the middle of it.
struct Slow(CpuBackend);

impl ComputeBackend for Slow {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn sum_masked(&self, len: usize, vectors: &[&[u64]]) -> Vec<u64> {
        self.0.sum_masked(len, vectors)
    }
    fn evaluate(
        &self,
        weights: &pb_glwe::PreparedWeights,
        jobs: &[EvalJob<'_>],
    ) -> Result<Vec<pb_glwe::HiddenTotals>, pb_glwe::eval::EvalError> {
        std::thread::sleep(Duration::from_millis(300));
        self.0.evaluate(weights, jobs)
    }
    fn preferred_batch(&self) -> usize {
        1
    }
}

const N: usize = 5;

#[test]
fn an_edge_stopped_while_billing_resumes_from_its_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let edge_key = NodeKey::from_bytes([9; 32]);
    edge_key.write_new(&dir.path().join("edge.key")).unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let mut members: Vec<Member> = (0..N as u8)
        .map(|i| Member {
            key: NodeKey::from_bytes([i + 1; 32]),
            hiding: None,
            przs: IdentityKey::from_bytes([i + 90; 32]),
            glwe: SecretKey::generate(&mut deterministic(u128::from(i) + 90)).into(),
            id: MemberId::new(format!("b{i}")).unwrap(),
        })
        .collect();
    let config = edge_config(dir.path(), "resume", &operator, &members, 3600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let edge = pb_edge::spawn(
        rt.handle(),
        &config,
        Box::new(Slow(CpuBackend::new())),
        stop.clone(),
    )
    .unwrap();
    let endpoint = edge.endpoint.clone();
    let client = |key: &NodeKey| {
        EdgeClient::new(
            Connection::new(endpoint.clone(), Duration::from_secs(20)),
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
    let roster = common::signed_roster("resume", 1, &operator, &all);
    assert_eq!(common::post_roster(&call, &mut op, &roster), Response::Ok);
    let ctx = context(1);
    assert_eq!(
        call(&mut op, &Request::PutContext(ctx.clone())),
        Response::Ok
    );
    for m in &mut members {
        m.hiding = Some(common::hiding("resume", m));
    }
    let values: Vec<Data> = (0..N).map(|i| data(&members[i].id, i as i64 + 1)).collect();
    common::all_rounds(
        &call,
        &mut op,
        &mut clients,
        &members,
        &roster,
        &operator,
        &ctx,
        &values,
    );
    // Billing runs between requests: the edge keeps answering, and says how
    // far it is. Stop it once some but not all bills are stored.
    let status = |op: &mut EdgeClient| -> String {
        match call(
            op,
            &Request::Status {
                cycle: Some(CycleId(1)),
            },
        ) {
            Response::Status(StatusReport { mut cycles, .. }) => cycles.remove(0).phase,
            other => panic!("{other:?}"),
        }
    };
    let until = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let phase = status(&mut op);
        if phase.starts_with("billing ") && !phase.starts_with("billing 0 ") {
            break phase;
        }
        assert_ne!(phase, "billed", "billed before it could be stopped");
        assert!(Instant::now() < until, "billing never began: {phase}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(seen.ends_with(&format!("of {N}")), "{seen}");
    stop.store(true, Ordering::Relaxed);
    edge.join();

    // Restarted on the same store: billing resumes and completes.
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
    let mut op = client(&operator);
    let want = reference::bills(&ctx, &values).unwrap();
    for i in 0..N {
        let mut c = client(&members[i].key);
        let bill = common::bill(&call, &mut c, 1);
        assert_eq!(
            members[i].hiding.as_ref().unwrap().decrypt(&bill).unwrap(),
            want[i],
            "{}",
            members[i].id
        );
    }
    assert_eq!(status(&mut op), "billed");
    stop.store(true, Ordering::Relaxed);
    edge.join();
}
