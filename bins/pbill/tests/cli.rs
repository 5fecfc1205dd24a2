//! `pbill simulate` and `pbill generate` as a user runs them.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

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

fn community() -> Value {
    json!({
        "cycle_id": 3,
        "prices": {"trading": [0.2, 0.25], "retail": [0.3, 0.35], "feed_in": [0.05, 0.05]},
        "households": [
            {"id": "a", "promises_kwh": [1.0, -0.5], "actual_kwh": [1.2, -0.4]},
            {"id": "b", "promises_kwh": [0.5, 0.5], "actual_kwh": [0.7, 0.2]},
            {"id": "c", "promises_kwh": [-1.0, 0.0], "actual_kwh": [-1.1, 0.3]}
        ]
    })
}

fn simulate(dir: &Path, input: &Value, extra: &[&str]) -> (bool, String, Option<Value>) {
    let inp = dir.join("in.json");
    let out = dir.join("out.json");
    let _ = std::fs::remove_file(&out);
    std::fs::write(&inp, input.to_string()).unwrap();
    let mut args = vec![
        "simulate",
        "--input",
        inp.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, stderr) = pbill(&args);
    let written = std::fs::read_to_string(&out)
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap());
    (ok, stderr, written)
}

#[test]
fn encrypted_and_plaintext_runs_agree_for_every_model() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["ucs", "ucs-reference", "proportional"] {
        let (ok, err, enc) = simulate(dir.path(), &community(), &["--model", model]);
        assert!(ok, "{err}");
        let (ok, err, plain) =
            simulate(dir.path(), &community(), &["--model", model, "--plaintext"]);
        assert!(ok, "{err}");
        assert_eq!(enc, plain);
        let enc = enc.unwrap();
        assert_eq!(enc["model"], model);
        assert_eq!(enc["bills"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn amounts_are_exact_decimal_strings() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err, out) = simulate(dir.path(), &community(), &["--plaintext"]);
    assert!(ok, "{err}");
    let a = &out.unwrap()["bills"][0];
    // slot 0: 1200 Wh at 0.2/kWh within the promise of 1 kWh -> 0.24, plus the
    // over-consumption share; slot 1: supplies 0.4 of 0.5 promised at 0.25.
    assert_eq!(a["id"], "a");
    assert_eq!(a["reward"], "0.10000000");
    let bill = a["bill"].as_str().unwrap();
    assert!(bill.split('.').nth(1).unwrap().len() == 8, "{bill}");
}

#[test]
fn generated_communities_bill_identically_with_and_without_cryptography() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    let (ok, err) = pbill(&[
        "generate",
        "--households",
        "6",
        "--slots",
        "96",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let input: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let (ok1, _, enc) = simulate(dir.path(), &input, &[]);
    let (ok2, _, plain) = simulate(dir.path(), &input, &["--plaintext"]);
    assert!(ok1 && ok2);
    assert_eq!(enc, plain);
}

/// Each bad input: non-zero exit, a one-line message naming the field, and
/// no output file.
#[test]
fn bad_inputs_are_refused_with_the_field_named_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut c = community();
    c["prices"]["retail"] = json!([0.3]);
    cases.push((c, "prices.retail"));
    let mut c = community();
    c["households"][1]["actual_kwh"] = json!([0.1]);
    cases.push((c, "households[1].actual_kwh"));
    let mut c = community();
    c["households"][2]["promises_kwh"][1] = json!(1000.0);
    cases.push((c, "households[2].promises_kwh[1]"));
    let mut c = community();
    c["prices"]["feed_in"][0] = json!(-1.0e6);
    cases.push((c, "prices.feed_in[0]"));
    let mut c = community();
    c["households"][0]["id"] = json!("b");
    cases.push((c, "households[1].id: b appears twice"));
    let mut c = community();
    c["households"][0]["id"] = json!("has space");
    cases.push((c, "households[0].id"));
    let mut c = community();
    c["households"].as_array_mut().unwrap().pop();
    cases.push((c, "households"));
    let mut c = community();
    c["households"][0]["actual_kwh"][0] = json!("1.0");
    cases.push((c, "invalid community file"));
    let mut c = community();
    c["extra"] = json!(1);
    cases.push((c, "invalid community file"));
    let mut c = community();
    c["prices"]["trading"] = json!([]);
    cases.push((c, "prices.trading"));
    for (input, field) in cases {
        let (ok, stderr, written) = simulate(dir.path(), &input, &[]);
        assert!(!ok, "accepted: {input}");
        assert!(stderr.contains(field), "{field} not named in {stderr:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr:?}");
        assert!(written.is_none(), "output written for {field}");
    }
    // Not JSON at all, NaN (not JSON either) and a number beyond f64.
    for text in [
        "{",
        "{\"cycle_id\": NaN}",
        "{\"cycle_id\": 1, \"prices\": {\"trading\": [1e999]}}",
    ] {
        let inp = dir.path().join("raw.json");
        std::fs::write(&inp, text).unwrap();
        let out = dir.path().join("raw-out.json");
        let (ok, stderr) = pbill(&[
            "simulate",
            "-i",
            inp.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!ok && stderr.contains("invalid community file"), "{stderr}");
        assert!(!out.exists());
    }
    let (ok, stderr) = pbill(&[
        "simulate",
        "-i",
        "/nonexistent/x.json",
        "-o",
        "/tmp/never.json",
    ]);
    assert!(!ok && stderr.contains("/nonexistent/x.json"));
    let (ok, stderr) = pbill(&["simulate", "-i", "x", "-o", "y", "--model", "fair"]);
    assert!(!ok && stderr.contains("fair"));
}
