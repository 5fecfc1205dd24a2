//! The household API against hostile or mistaken input, over real
//! sockets: every bad request gets a clear JSON error naming the problem,
//! and nothing is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pb_core::CoreConfig;
use pb_edge::{EdgeConfig, Enrollment};
use pb_model::{BillingModel, CycleContext};
use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeKey, Request, Response};
use pb_shared_billing::CpuBackend;
use pb_units::{CycleId, PriceUnits};
use serde_json::{Value, json};

#[test]
fn bad_household_requests_get_clear_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let edge_key = NodeKey::from_bytes([9; 32]);
    edge_key.write_new(&d.join("edge.key")).unwrap();
    let operator = NodeKey::from_bytes([8; 32]);
    let names = ["a", "b", "c"];
    for (i, n) in names.iter().enumerate() {
        NodeKey::from_bytes([i as u8 + 1; 32])
            .write_new(&d.join(format!("{n}.key")))
            .unwrap();
    }
    let edge_config = EdgeConfig {
        community: "api".into(),
        listen: "tcp://127.0.0.1:0".into(),
        data_dir: d.join("edge"),
        key_file: d.join("edge.key"),
        limits: Default::default(),
        metrics: None,
        max_members: pb_edge::config::DEFAULT_MAX_MEMBERS,
        retention: Default::default(),
        store_cache_mib: pb_edge::config::DEFAULT_STORE_CACHE_MIB,
        min_members: 3,
        dropout_deadline_secs: 3600,
        round_secs: 3600,
        operators: vec![operator.id().to_hex()],
        members: names
            .iter()
            .enumerate()
            .map(|(i, n)| Enrollment {
                member: n.to_string(),
                node: NodeKey::from_bytes([i as u8 + 1; 32]).id().to_hex(),
            })
            .collect(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The edge stops after the cores, so no core waits on a stopped edge.
    let edge_stop = Arc::new(AtomicBool::new(false));
    let edge = pb_edge::spawn(
        rt.handle(),
        &edge_config,
        Box::new(CpuBackend::new()),
        edge_stop.clone(),
    )
    .unwrap();
    let mut cores = Vec::new();
    for n in names {
        let config = CoreConfig {
            member: n.into(),
            community: "api".into(),
            edge: edge.endpoint.clone(),
            edge_node: edge_key.id().to_hex(),
            listen: "tcp://127.0.0.1:0".into(),
            data_dir: d.join(format!("{n}-data")),
            key_file: d.join(format!("{n}.key")),
            secrets_passphrase_file: None,
            operator: operator.id().to_hex(),
            min_members: 3,
            drill_silent_after_mask: false,
            poll_millis: 50,
            request_timeout_millis: 10_000,
            metrics: None,
        };
        cores.push(pb_core::spawn(rt.handle(), &config, stop.clone()).unwrap());
    }
    let core_config_c = |pin: &NodeKey, data: &str| CoreConfig {
        member: "c".into(),
        community: "api".into(),
        edge: edge.endpoint.clone(),
        edge_node: edge_key.id().to_hex(),
        listen: "tcp://127.0.0.1:0".into(),
        data_dir: d.join(data),
        key_file: d.join("c.key"),
        secrets_passphrase_file: None,
        operator: pin.id().to_hex(),
        min_members: 3,
        drill_silent_after_mask: false,
        metrics: None,
        poll_millis: 50,
        request_timeout_millis: 10_000,
    };
    let mut conn = Connection::new(cores[0].endpoint.clone(), Duration::from_secs(20));
    let mut ask = |v: Value| -> Value { rt.block_on(conn.json(&v)).unwrap() };
    // Wait for the joins, then post a 4-slot context.
    let start = Instant::now();
    let operator = Arc::new(operator);
    let mut op = EdgeClient::new(
        Connection::new(edge.endpoint.clone(), Duration::from_secs(20)),
        operator.clone(),
        pb_protocol::Audience {
            edge: edge_key.id(),
            community: pb_units::CommunityId("api".into()),
        },
    );
    let ctx = CycleContext::new(
        CycleId(1),
        BillingModel::Ucs,
        vec![PriceUnits(100_000); 4],
        vec![PriceUnits(200_000); 4],
        vec![PriceUnits(50_000); 4],
    )
    .unwrap();
    let roster = pb_secagg::Roster::new(
        "api",
        1,
        names
            .iter()
            .enumerate()
            .map(|(i, n)| pb_secagg::RosterEntry {
                member: pb_units::MemberId::new(*n).unwrap(),
                identity: NodeKey::from_bytes([i as u8 + 1; 32]).id().0,
            })
            .collect(),
    )
    .unwrap();
    let signed = pb_secagg::SignedRoster::sign(roster, operator.signing_key());
    for page in pb_protocol::RosterPage::split(&signed) {
        assert_eq!(
            rt.block_on(op.call(&Request::PutRoster(page)))
                .unwrap()
                .response,
            Response::Ok
        );
    }
    loop {
        if rt
            .block_on(op.call(&Request::PutContext(ctx.clone())))
            .unwrap()
            .response
            == Response::Ok
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cores did not join"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status_before = ask(json!({"status": {}}));
    assert_eq!(status_before["status"]["joined"], json!(true));
    assert_eq!(status_before["status"]["cycles"], json!([]));

    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    let message = |v: &Value| v["error"]["message"].as_str().unwrap_or("").to_string();
    // Not JSON, not an object, unknown request, extra fields.
    let mut raw = Connection::new(cores[0].endpoint.clone(), Duration::from_secs(20));
    let answer: Value =
        serde_json::from_slice(&rt.block_on(raw.request(vec![0xff, 0x00, 0x13])).unwrap()).unwrap();
    assert_eq!(code(&answer), "bad_request");
    for bad in [
        json!([1, 2]),
        json!({"delete": {}}),
        json!({"get_bill": {"cycle_id": 1, "x": 2}}),
        json!({"submit": {"cycle_id": "one"}}),
    ] {
        assert_eq!(code(&ask(bad.clone())), "bad_request", "{bad}");
    }
    // Oversized: the socket guard cuts the connection at the frame header,
    // before the core buffers anything; the API goes on serving.
    let mut hostile = Connection::new(cores[0].endpoint.clone(), Duration::from_secs(2));
    let big = vec![b' '; 2 << 20];
    assert!(rt.block_on(hostile.request(big)).is_err());
    assert_eq!(code(&ask(json!({"delete": {}}))), "bad_request");
    // Wrong lengths, out-of-range values, unknown cycle: named.
    let r = ask(
        json!({"submit": {"cycle_id": 1, "promises_kwh": [1, 1, 1], "actual_kwh": [1, 1, 1, 1]}}),
    );
    assert_eq!(code(&r), "bad_request");
    assert!(
        message(&r).contains("promises_kwh has 3 values, expected 4"),
        "{r}"
    );
    let r = ask(
        json!({"submit": {"cycle_id": 1, "promises_kwh": [1, 1, 1, 1], "actual_kwh": [1, 1, 1e9, 1]}}),
    );
    assert!(message(&r).starts_with("actual_kwh[2]"), "{r}");
    let r = ask(
        json!({"submit": {"cycle_id": 7, "promises_kwh": [1, 1, 1, 1], "actual_kwh": [1, 1, 1, 1]}}),
    );
    assert_eq!(code(&r), "unknown_cycle", "{r}");
    assert_eq!(
        code(&ask(json!({"get_bill": {"cycle_id": 1}}))),
        "unknown_cycle"
    );
    // Nothing of the household's stored. (The core did fetch and check
    // the cycle's member list, which it now shows: its size and
    // fingerprint.)
    let after = ask(json!({"status": {}}));
    assert_eq!(after["status"]["cycles"], status_before["status"]["cycles"]);
    assert_eq!(after["status"]["community_size"], json!(3));
    assert_eq!(
        after["status"]["roster_fingerprint"].as_str().map(str::len),
        Some(19)
    );

    // Good data; the same again is fine; other data for the cycle conflicts.
    let good = json!({"submit": {"cycle_id": 1, "promises_kwh": [1, 0.5, -1, 0], "actual_kwh": [1.2, 0.5, -0.8, 0.1]}});
    assert_eq!(ask(good.clone())["accepted"]["slots"], json!(4));
    assert!(ask(good.clone())["accepted"].is_object());
    let r = ask(
        json!({"submit": {"cycle_id": 1, "promises_kwh": [1, 0.5, -1, 0], "actual_kwh": [1.2, 0.5, -0.8, 0.2]}}),
    );
    assert_eq!(code(&r), "conflict", "{r}");
    assert!(ask(json!({"get_bill": {"cycle_id": 1}}))["pending"].is_object());

    // A core that pins another operator key (as a household would whose
    // edge hands it a member list of the edge's own making) refuses the
    // list: nothing is stored, and the household is told why.
    let stranger = NodeKey::from_bytes([77; 32]);
    let misled = pb_core::spawn(
        rt.handle(),
        &core_config_c(&stranger, "c-misled"),
        stop.clone(),
    )
    .unwrap();
    let mut conn2 = Connection::new(misled.endpoint.clone(), Duration::from_secs(20));
    let r: Value = rt.block_on(conn2.json(&good)).unwrap();
    assert_eq!(code(&r), "edge_unavailable", "{r}");
    assert!(message(&r).contains("not signed by the operator"), "{r}");
    let status: Value = rt.block_on(conn2.json(&json!({"status": {}}))).unwrap();
    assert_eq!(status["status"]["cycles"], json!([]), "{status}");
    cores.push(misled);
    stop.store(true, Ordering::Relaxed);
    for c in cores {
        c.join();
    }
    edge_stop.store(true, Ordering::Relaxed);
    edge.join();
}
