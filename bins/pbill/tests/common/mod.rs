//! What the process-level tests share: the `pbill` binary, daemons that
//! die with the test, node keys.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The `pbill` binary under test.
pub fn pbill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pbill"))
}

/// Kills its process when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pbill edge` or `pbill core` with `config`, its log in `log`;
/// returns it and its bound endpoint.
pub fn start(role: &str, config: &Path, log: &Path) -> (Daemon, String) {
    let mut child = pbill()
        .args([role, "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("listening "),
        "{role} did not start: {line:?} {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    (
        Daemon(child),
        line.trim_start_matches("listening ").trim().to_string(),
    )
}

/// `pbill keygen` into `dir/name`; the node id it prints.
pub fn keygen(dir: &Path, name: &str) -> String {
    let out = pbill()
        .args(["keygen", "--out"])
        .arg(dir.join(name))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The households of the process tests, in order.
pub const HOUSEHOLDS: [&str; 3] = ["alice", "bob", "carol"];

/// Keys for an edge (`edge.key`), an operator (`operator.key`) and one
/// core per name of [`HOUSEHOLDS`] (`NAME.key`) in `dir`: their node ids,
/// as `(edge, operator, households)`.
pub fn community_keys(dir: &Path) -> (String, String, Vec<String>) {
    let edge = keygen(dir, "edge.key");
    let operator = keygen(dir, "operator.key");
    let nodes = HOUSEHOLDS
        .iter()
        .map(|n| keygen(dir, &format!("{n}.key")))
        .collect();
    (edge, operator, nodes)
}
