//! Every file the programs read goes through one bounded reader: `/dev/zero`
//! and oversized files get a clear error, and memory stays small. This is
//! its own test binary so that the peak memory of its children (measured
//! with `getrusage(RUSAGE_CHILDREN)`) is theirs alone.

use std::process::Command;

use nix::sys::resource::{UsageWho, getrusage};

/// Runs pbill, expects a clean failure (exit 1, or 2 for the daemons'
/// configuration errors; not a signal) whose message contains `says`.
fn refuses(args: &[&str], says: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pbill"))
        .args(args)
        .output()
        .expect("run pbill");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{args:?}: {:?} {err}",
        out.status
    );
    assert!(err.contains(says), "{args:?}: {err}");
}

#[test]
fn every_reader_is_bounded_in_size_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.csv");
    std::fs::write(&prices, "trading,retail,feed_in\n0.2,0.3,0.05\n").unwrap();
    let prices = prices.to_str().unwrap();
    let big = dir.path().join("big.json");
    // 100 MB, sparse: refused from its size before a byte is read.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let big = big.to_str().unwrap();
    let out = dir.path().join("out.json");
    let out = out.to_str().unwrap();

    let key = "bytes a key file may have";
    refuses(
        &[
            "context",
            "--edge",
            "tcp://127.0.0.1:1",
            "--edge-id",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "--community",
            "c",
            "--file",
            prices,
            "--key",
            "/dev/zero",
            "--cycle",
            "1",
        ],
        key,
    );
    refuses(
        &[
            "context",
            "--edge",
            "tcp://127.0.0.1:1",
            "--edge-id",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "--community",
            "c",
            "--file",
            "/dev/zero",
            "--key",
            "/dev/zero",
            "--cycle",
            "1",
        ],
        "bytes an input file may have",
    );
    refuses(
        &["simulate", "--input", "/dev/zero", "--output", out],
        "more than the 67108864 bytes an input file may have",
    );
    refuses(
        &["simulate", "--input", big, "--output", out],
        "104857600 bytes, more than the 67108864 bytes",
    );
    refuses(
        &[
            "submit",
            "--core",
            "tcp://127.0.0.1:1",
            "--cycle",
            "1",
            "--file",
            "/dev/zero",
        ],
        "bytes an input file may have",
    );
    refuses(
        &["edge", "--config", "/dev/zero"],
        "bytes the edge's configuration may have",
    );
    refuses(
        &["core", "--config", "/dev/zero"],
        "bytes a configuration file may have",
    );
    refuses(&["core", "--config", big], "104857600 bytes, more than");

    // Peak resident memory of any of these children, in KiB on Linux.
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak_kib < 100 * 1024, "a child reached {peak_kib} KiB");
    eprintln!("largest child peak: {} MiB", peak_kib / 1024);
}
