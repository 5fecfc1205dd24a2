//! Inputs as a new user writes them: exact decimals, integer ids, NaN,
//! limits in currency, output paths, refused connections (issue 18).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn pbill(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pbill"))
        .args(args)
        .output()
        .expect("run pbill");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pbill simulate` on `text` (written as is: the exact decimals matter).
fn simulate(dir: &Path, text: &str, extra: &[&str]) -> (bool, String, Option<serde_json::Value>) {
    let inp = dir.join("in.json");
    let out = dir.join("out.json");
    let _ = std::fs::remove_file(&out);
    std::fs::write(&inp, text).unwrap();
    let mut args = vec![
        "simulate",
        "--input",
        inp.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, _, stderr) = pbill(&args);
    let written = std::fs::read_to_string(&out)
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap());
    (ok, stderr, written)
}

const TIES: &str = r#"{"cycle_id": 1,
 "prices": {"trading": [0.2, 3.5e-5], "retail": [0.3, 0.35], "feed_in": [0.05, 0.05]},
 "households": [
  {"id": 1, "promises_kwh": [0.5005, 0.25], "actual_kwh": [0.5005, 0.25]},
  {"id": 2, "promises_kwh": [-0.5, 0.5], "actual_kwh": [-0.5, 0.5]},
  {"id": "three", "promises_kwh": [0.1, 0.1], "actual_kwh": [0.1, 0.1]}]}"#;

#[test]
fn decimal_ties_are_billed_as_their_decimal_value() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [&["--plaintext"][..], &[][..]] {
        let (ok, err, out) = simulate(dir.path(), TIES, extra);
        assert!(ok, "{err}");
        // 0.5005 kWh is 501 Wh (binary rounding gave 500), 3.5e-5 is 4
        // price units (binary gave 3): 501 * 20,000 + 250 * 4.
        let out = out.unwrap();
        assert_eq!(out["bills"][0]["bill"], "0.10021000");
        // Ids come back as given: integers stay integers.
        assert_eq!(out["bills"][0]["id"], 1);
        assert_eq!(out["bills"][2]["id"], "three");
        assert!(
            err.contains("warning: ") && err.contains("3 value(s) finer than the unit"),
            "{err}"
        );
    }
    let (ok, err, out) = simulate(dir.path(), TIES, &["--strict-units"]);
    assert!(!ok && out.is_none());
    assert!(
        err.contains("prices.trading[1]: 3.5e-5 currency/kWh is finer than the unit"),
        "{err}"
    );
}

#[test]
fn nan_and_infinity_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err, out) = simulate(
        dir.path(),
        &TIES.replace("0.5005, 0.25]", "NaN, 0.25]"),
        &[],
    );
    assert!(!ok && out.is_none());
    assert!(err.contains("NaN (not a number) is not a value"), "{err}");
    let (ok, err, _) = simulate(
        dir.path(),
        &TIES.replace("[-0.5, 0.5]", "[-Infinity, 0.5]"),
        &[],
    );
    assert!(!ok && err.contains("infinity is not a value"), "{err}");
}

#[test]
fn limits_are_the_same_for_both_paths_and_said_in_currency() {
    let dir = tempfile::tempdir().unwrap();
    // Inside the per-value limits, but 96 slots at 100 currency/kWh could
    // bill a household 960,000 currency: refused by both, in currency.
    let slots = 96;
    let v = |x: &str| format!("[{}]", vec![x; slots].join(","));
    let text = format!(
        r#"{{"cycle_id":1,"prices":{{"trading":{p},"retail":{p},"feed_in":{f}}},"households":[
        {{"id":"a","promises_kwh":{e},"actual_kwh":{e}}},{{"id":"b","promises_kwh":{e},"actual_kwh":{e}}},
        {{"id":"c","promises_kwh":{e},"actual_kwh":{e}}}]}}"#,
        p = v("100"),
        f = v("0.05"),
        e = v("1")
    );
    let (ok_p, err_p, _) = simulate(dir.path(), &text, &["--plaintext"]);
    let (ok_e, err_e, _) = simulate(dir.path(), &text, &[]);
    assert!(!ok_p && !ok_e);
    assert!(
        err_p.contains("960000.00000000 currency") && err_p.contains("slot 0"),
        "{err_p}"
    );
    assert_eq!(err_p.lines().last(), err_e.lines().last());
    // A value beyond its own limit names the household, slot and value.
    let (ok, err, _) = simulate(
        dir.path(),
        &TIES.replace("[-0.5, 0.5]", "[-0.5, 120.5]"),
        &["--plaintext"],
    );
    assert!(!ok);
    assert!(
        err.contains("households[1] (2).promises_kwh[1]: 120.5 kWh is beyond the limit of 100 kWh"),
        "{err}"
    );
    // One household: refused by both paths, whatever --min-members says
    // (never fewer than 3 are billed).
    let one = r#"{"cycle_id":1,"prices":{"trading":[1],"retail":[1],"feed_in":[1]},
      "households":[{"id":"a","promises_kwh":[1],"actual_kwh":[1]}]}"#;
    for extra in [
        &["--plaintext", "--min-members", "1"][..],
        &["--min-members", "0"][..],
    ] {
        let (ok, err, _) = simulate(dir.path(), one, extra);
        assert!(!ok && err.contains("at least 3 are required"), "{err}");
    }
}

#[test]
fn help_lists_the_models_one_line_each() {
    let (ok, out, _) = pbill(&["simulate", "--help"]);
    assert!(ok);
    for line in ["ucs:", "ucs-reference:", "proportional:"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("- {line}"))),
            "{line}\n{out}"
        );
    }
    assert!(out.contains("Python original's formula"), "{out}");
    let (ok, _, err) = pbill(&[
        "simulate", "--input", "x", "--output", "y", "--model", "ucs2",
    ]);
    assert!(
        !ok && err.contains("possible values: ucs, ucs-reference, proportional"),
        "{err}"
    );
}

#[test]
fn output_paths_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("c.json");
    std::fs::write(&inp, TIES).unwrap();
    let p = inp.to_str().unwrap();
    let (ok, _, err) = pbill(&["simulate", "--input", p, "--output", p, "--plaintext"]);
    assert!(!ok && err.contains("is the input file"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&inp).unwrap(),
        TIES,
        "input untouched"
    );
    let missing = dir.path().join("no/such/dir/bills.json");
    let (ok, _, err) = pbill(&[
        "simulate",
        "--input",
        p,
        "--output",
        missing.to_str().unwrap(),
        "--plaintext",
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot write {}", missing.display())),
        "{err}"
    );
    assert!(!err.contains("tmp-pbill"), "{err}");
}

#[test]
fn long_values_and_ids_are_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err, _) = simulate(
        dir.path(),
        &TIES.replace("0.5005, 0.25]", &format!("{}, 0.25]", "9".repeat(309))),
        &[],
    );
    assert!(
        !ok && err.len() < 400 && err.contains("309 characters"),
        "{err}"
    );
    let (ok, err, _) = simulate(
        dir.path(),
        &TIES.replace("\"three\"", &format!("\"{}\"", "x".repeat(100_000))),
        &[],
    );
    assert!(
        !ok && err.len() < 400,
        "{} bytes: {}",
        err.len(),
        &err[..err.len().min(500)]
    );
}

#[test]
fn a_refused_connection_is_reported_at_once() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let core = format!("tcp://127.0.0.1:{port}");
    let start = Instant::now();
    let (ok, _, err) = pbill(&["bill", "--core", &core, "--cycle", "1"]);
    assert!(!ok);
    assert!(err.contains("connection refused"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn long_work_reports_progress_in_lines_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.json");
    let (ok, _, err) = pbill(&[
        "generate",
        "--households",
        "250",
        "--slots",
        "4",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    // Not a terminal here: plain lines, no bar drawing characters.
    assert!(err.contains("generating households: 0/250"), "{err}");
    assert!(err.contains("generating households: 250/250 in "), "{err}");
    assert!(!err.contains('\r') && !err.contains("\u{1b}["), "{err:?}");
    // Small work shows none.
    let (ok, _, err) = pbill(&[
        "generate",
        "--households",
        "20",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok && !err.contains("generating"), "{err}");
}
