//! `pbill status` and the metrics endpoints against daemons started as
//! separate processes on loopback: the operator follows a cycle from
//! its rounds to billed, a household's key is refused, a core tells its
//! household its cycles, both daemons' counters move, and a daemon whose
//! metrics address is taken exits at once with a clear error.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::{HOUSEHOLDS, community_keys, keygen, pbill, start};

fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

fn scrape(addr: &str) -> String {
    ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn operator_and_household_status_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (edge_id, operator, nodes) = community_keys(d);
    let names = HOUSEHOLDS;
    let edge_metrics = free_addr();
    let mut edge_toml = format!(
        "community = \"st\"\nlisten = \"tcp://127.0.0.1:0\"\ndata_dir = {:?}\nkey_file = {:?}\noperators = [{operator:?}]\nmetrics = {edge_metrics:?}\n",
        d.join("edge-data"),
        d.join("edge.key")
    );
    for (n, node) in names.iter().zip(&nodes) {
        edge_toml += &format!("[[members]]\nmember = {n:?}\nnode = {node:?}\n");
    }
    std::fs::write(d.join("edge.toml"), edge_toml).unwrap();
    let (_edge, edge_ep) = start("edge", &d.join("edge.toml"), &d.join("edge.log"));
    let core_metrics = free_addr();
    let mut cores = Vec::new();
    for n in names {
        let metrics = if n == "alice" {
            format!("metrics = {core_metrics:?}\n")
        } else {
            String::new()
        };
        let toml = format!(
            "member = {n:?}\ncommunity = \"st\"\nedge = {edge_ep:?}\nedge_node = {edge_id:?}\noperator = {operator:?}\nlisten = \"tcp://127.0.0.1:0\"\ndata_dir = {:?}\nkey_file = {:?}\npoll_millis = 100\n{metrics}",
            d.join(format!("{n}-data")),
            d.join(format!("{n}.key"))
        );
        let path = d.join(format!("{n}.toml"));
        std::fs::write(&path, toml).unwrap();
        cores.push(start("core", &path, &d.join(format!("{n}.log"))));
    }
    let status = |key: &str, extra: &[&str]| {
        pbill()
            .args([
                "status",
                "--edge",
                &edge_ep,
                "--edge-id",
                &edge_id,
                "--community",
                "st",
                "--key",
            ])
            .arg(d.join(key))
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = |out: std::process::Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // A household's key is refused.
    let refused = status("alice.key", &[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Forbidden"), "{err}");
    let empty = ok(status("operator.key", &[]));
    assert!(empty.contains("no cycle yet"), "{empty}");

    // The member list, signed by the operator, then the context once the
    // three cores have joined.
    ok(pbill()
        .args([
            "roster",
            "--edge",
            &edge_ep,
            "--edge-id",
            &edge_id,
            "--community",
            "st",
            "--key",
        ])
        .arg(d.join("operator.key"))
        .arg("--members")
        .arg(d.join("edge.toml"))
        .output()
        .unwrap());
    // The context, once the three cores have joined.
    std::fs::write(
        d.join("prices.csv"),
        "trading,retail,feed_in\n0.2,0.3,0.05\n0.21,0.3,0.05\n0.22,0.3,0.05\n0.2,0.3,0.05\n",
    )
    .unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let out = pbill()
            .args([
                "context",
                "--edge",
                &edge_ep,
                "--cycle",
                "1",
                "--edge-id",
                &edge_id,
                "--community",
                "st",
                "--key",
            ])
            .arg(d.join("operator.key"))
            .arg("--file")
            .arg(d.join("prices.csv"))
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < give_up, "cores never joined");
        std::thread::sleep(Duration::from_millis(100));
    }
    let one = ok(status("operator.key", &["--cycle", "1"]));
    assert!(one.contains("cycle 1: advertise"), "{one}");
    assert!(
        one.contains("3 enrolled, 0 submitted, 3 missing, 0 dropped"),
        "{one}"
    );
    for node in &nodes {
        assert!(one.contains(node.as_str()), "{one}");
    }

    // Every household submits; the cycle is billed.
    for (i, (_, core_ep)) in cores.iter().enumerate() {
        let csv = d.join(format!("h{i}.csv"));
        std::fs::write(
            &csv,
            format!("promise_kwh,actual_kwh\n1,1.{i}\n-0.5,-0.4\n0.{i},0.2\n2,1.5\n"),
        )
        .unwrap();
        ok(pbill()
            .args(["submit", "--core", core_ep, "--cycle", "1", "--file"])
            .arg(&csv)
            .output()
            .unwrap());
    }
    let give_up = Instant::now() + Duration::from_secs(60);
    let json: serde_json::Value = loop {
        let out = ok(status("operator.key", &["--cycle", "1", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["cycles"][0]["phase"] == "billed" {
            break v;
        }
        assert!(Instant::now() < give_up, "never billed: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let c = &json["cycles"][0];
    assert_eq!(c["submitted"], 3);
    assert_eq!(c["missing"], 0);
    assert_eq!(c["bills"], 3);
    let mut want = nodes.clone();
    want.sort();
    assert_eq!(
        c["nodes"]["submitted"],
        serde_json::to_value(&want).unwrap()
    );
    let table = ok(status("operator.key", &[]));
    assert!(table.contains("billed"), "{table}");
    assert!(table.contains("3 members joined"), "{table}");

    // The household's side.
    let alice_ep = &cores[0].1;
    let give_up = Instant::now() + Duration::from_secs(60);
    while !pbill()
        .args(["bill", "--core", alice_ep, "--cycle", "1"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < give_up, "alice's bill never came");
        std::thread::sleep(Duration::from_millis(200));
    }
    let core = ok(pbill()
        .args(["status", "--core", alice_ep])
        .output()
        .unwrap());
    assert!(core.contains("member alice"), "{core}");
    assert!(core.contains("billed"), "{core}");
    let core_json: serde_json::Value = serde_json::from_str(&ok(pbill()
        .args(["status", "--core", alice_ep, "--json"])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(core_json["member"], "alice");

    // Both daemons' counters moved.
    let edge = scrape(&edge_metrics);
    assert_eq!(value(&edge, "pbill_submissions_total"), Some(3.0), "{edge}");
    assert_eq!(value(&edge, "pbill_bills_total"), Some(3.0), "{edge}");
    assert_eq!(
        value(&edge, "pbill_refusals_total{reason=\"Forbidden\"}"),
        Some(1.0),
        "{edge}"
    );
    let core = scrape(&core_metrics);
    assert_eq!(
        value(
            &core,
            "pbill_requests_total{kind=\"submit\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{core}"
    );
    assert_eq!(value(&core, "pbill_submissions_total"), Some(1.0), "{core}");
    assert_eq!(value(&core, "pbill_bills_total"), Some(1.0), "{core}");
    assert!(value(&core, "pbill_store_size_bytes").unwrap() > 0.0);
}

#[test]
fn a_daemon_whose_metrics_address_is_taken_exits_without_listening() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let edge_id = keygen(d, "edge.key");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    std::fs::write(
        d.join("edge.toml"),
        format!(
            "community = \"st\"\nlisten = \"tcp://127.0.0.1:0\"\ndata_dir = {:?}\nkey_file = {:?}\nmetrics = {taken:?}\n",
            d.join("edge-data"),
            d.join("edge.key")
        ),
    )
    .unwrap();
    keygen(d, "core.key");
    std::fs::write(
        d.join("core.toml"),
        format!(
            "member = \"alice\"\ncommunity = \"st\"\nedge = \"tcp://127.0.0.1:1\"\nedge_node = {edge_id:?}\noperator = {edge_id:?}\nlisten = \"tcp://127.0.0.1:0\"\ndata_dir = {:?}\nkey_file = {:?}\nmetrics = {taken:?}\n",
            d.join("core-data"),
            d.join("core.key")
        ),
    )
    .unwrap();
    for role in ["edge", "core"] {
        let out = pbill()
            .args([role, "--config"])
            .arg(d.join(format!("{role}.toml")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{role}");
        assert!(out.stdout.is_empty(), "{role} said it listens");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("metrics") && err.contains(&taken) && err.contains("in use"),
            "{role}: {err}"
        );
    }
    drop(busy);
}
