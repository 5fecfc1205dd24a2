//! `pbill report` on the store of a real (demo) edge.

use std::process::Command;

fn pbill(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pbill"))
        .args(args)
        .output()
        .expect("run pbill");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_billed_cycle_gets_a_self_contained_page_without_household_data() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let w = work.to_str().unwrap();
    let (ok, err) = pbill(&[
        "demo",
        "--households",
        "4",
        "--slots",
        "16",
        "--dropouts",
        "1",
        "--dir",
        w,
    ]);
    assert!(ok, "{err}");
    let edge = work.join("edge-data");
    let out = dir.path().join("report.html");
    let (ok, err) = pbill(&[
        "report",
        "--edge-dir",
        edge.to_str().unwrap(),
        "--cycle",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    for part in [
        "<h1>Cycle 1</h1>",
        "Participation",
        "Total deviation per slot",
        "Imbalance rates",
        "<svg",
    ] {
        assert!(html.contains(part), "{part} missing");
    }
    // 4 members, 3 submitted and billed, 1 dropped out.
    assert!(
        html.contains("<tr><td>4</td><td>3</td><td>1</td></tr>"),
        "participation"
    );
    // Self-contained: nothing fetched from elsewhere.
    assert!(!html.contains("src=\"http") && !html.contains("<script"));
    // Bad requests: clear errors, nothing written.
    let none = dir.path().join("none.html");
    let (ok, err) = pbill(&[
        "report",
        "--edge-dir",
        dir.path().to_str().unwrap(),
        "--cycle",
        "1",
        "--out",
        none.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no edge store here"), "{err}");
    let (ok, err) = pbill(&[
        "report",
        "--edge-dir",
        edge.to_str().unwrap(),
        "--cycle",
        "7",
        "--out",
        none.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no cycle 7"), "{err}");
    assert!(!none.exists());
}
