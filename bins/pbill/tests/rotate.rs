//! `pbill rotate` against an edge process over real sockets: the key file
//! is replaced only once the edge confirmed, the old key is kept, a
//! refused rotation leaves the key file alone, a running core is refused,
//! and the operator's next member list must name the new key.

use std::path::Path;
use std::process::Output;

mod common;

use common::{HOUSEHOLDS, community_keys, pbill, start};

fn pbill_out(args: &[&str], config: &Path) -> Output {
    pbill().args(args).arg(config).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn node_of(key: &Path) -> String {
    pb_protocol::NodeKey::read_file(key).unwrap().id().to_hex()
}

#[test]
fn pbill_rotate_replaces_the_key_file_once_the_edge_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (edge_id, operator, nodes) = community_keys(d);
    let names = HOUSEHOLDS;
    let edge_toml = |nodes: &[String]| {
        let mut t = format!(
            "community = \"rot\"\nlisten = \"tcp://127.0.0.1:0\"\ndata_dir = {:?}\nkey_file = {:?}\noperators = [{operator:?}]\n",
            d.join("edge-data"),
            d.join("edge.key")
        );
        for (n, node) in names.iter().zip(nodes) {
            t += &format!("[[members]]\nmember = {n:?}\nnode = {node:?}\n");
        }
        std::fs::write(d.join("edge.toml"), t).unwrap();
    };
    edge_toml(&nodes);
    let (_edge, edge_ep) = start("edge", &d.join("edge.toml"), &d.join("edge.log"));
    let core_toml = d.join("alice.toml");
    std::fs::write(
        &core_toml,
        format!(
            "member = \"alice\"\ncommunity = \"rot\"\nedge = {edge_ep:?}\nedge_node = {edge_id:?}\noperator = {operator:?}\nlisten = \"tcp://127.0.0.1:0\"\ndata_dir = {:?}\nkey_file = {:?}\npoll_millis = 100\n",
            d.join("alice-data"),
            d.join("alice.key")
        ),
    )
    .unwrap();
    let key = d.join("alice.key");
    let roster = |ok: bool| {
        let out = pbill_out(
            &[
                "roster",
                "--edge",
                &edge_ep,
                "--edge-id",
                &edge_id,
                "--community",
                "rot",
                "--key",
                d.join("operator.key").to_str().unwrap(),
                "--members",
            ],
            &d.join("edge.toml"),
        );
        assert_eq!(out.status.success(), ok, "{}", text(&out));
        text(&out)
    };
    roster(true);

    // A refused rotation (to bob's enrolled key) leaves alice.key alone.
    let out = pbill_out(
        &[
            "rotate",
            "--new-key",
            d.join("bob.key").to_str().unwrap(),
            "--config",
        ],
        &core_toml,
    );
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("already admitted"), "{said}");
    assert!(said.contains("nothing changed"), "{said}");
    assert_eq!(node_of(&key), nodes[0]);
    assert!(!d.join("alice.key.new").exists());

    // The rotation: a new key in alice.key, the old one in alice.key.old.
    let out = pbill_out(&["rotate", "--config"], &core_toml);
    assert!(out.status.success(), "{}", text(&out));
    let new = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(node_of(&key), new);
    assert_ne!(new, nodes[0]);
    assert_eq!(node_of(&d.join("alice.key.old")), nodes[0]);
    assert!(!d.join("alice.key.new").exists());

    // The operator's list from the old edge.toml is refused, naming the
    // rotation; with the new node id in edge.toml it is taken.
    let said = roster(false);
    assert!(said.contains("rotated to node"), "{said}");
    let mut updated = nodes.clone();
    updated[0] = new.clone();
    edge_toml(&updated);
    assert!(roster(true).contains("member list version 2"));

    // A running core is not rotated under its feet.
    let _core = start("core", &core_toml, &d.join("alice.log"));
    let out = pbill_out(&["rotate", "--config"], &core_toml);
    assert!(!out.status.success());
    assert!(text(&out).contains("stop the core"), "{}", text(&out));
    assert_eq!(node_of(&key), new);

    let help = pbill().args(["rotate", "--help"]).output().unwrap();
    let help = text(&help);
    assert!(
        help.contains("KEY.old") && help.contains("--new-key"),
        "{help}"
    );
}
