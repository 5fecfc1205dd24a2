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

/// `pbill-bench` (the load test and the drill) with `args`: whether it
/// succeeded, and its stderr.
fn bench(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pbill-bench"))
        .args(args)
        .output()
        .expect("run pbill-bench");
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
    cases.push((c, "households[1] (b).actual_kwh"));
    let mut c = community();
    c["households"][2]["promises_kwh"][1] = json!(1000.0);
    cases.push((
        c,
        "households[2] (c).promises_kwh[1]: 1000.0 kWh is beyond the limit of 100 kWh",
    ));
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
    c["households"][0]["actual_kwh"][0] = json!("one");
    cases.push((c, "\"one\" is not a decimal number"));
    let mut c = community();
    c["extra"] = json!(1);
    cases.push((c, "community file: unknown field `extra`"));
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
        assert!(!ok && stderr.contains("community file: "), "{stderr}");
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

/// The network commands check their input before sending anything (no
/// server listens at the addresses used here) and name what is wrong;
/// `keygen` never overwrites a key; the daemons refuse bad configuration.
#[test]
fn network_commands_refuse_bad_input_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();
    let key = path("op.key");
    assert!(pbill(&["keygen", "--out", &key]).0);
    let before = std::fs::read(&key).unwrap();
    let (ok, err) = pbill(&["keygen", "--out", &key]);
    assert!(!ok && err.contains("op.key"), "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "keygen overwrote a key"
    );

    let nowhere = "tcp://127.0.0.1:1";
    let context = |file: &str, text: &str, extra: &[&str]| {
        std::fs::write(d.join(file), text).unwrap();
        let f = path(file);
        let mut args = vec![
            "context",
            "--edge",
            nowhere,
            "--edge-id",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "--community",
            "c",
            "--key",
            &key,
            "--file",
            &f,
        ];
        args.extend_from_slice(extra);
        pbill(&args)
    };
    for (file, text, extra, expect) in [
        (
            "p.csv",
            "trading,retail\n0.1,0.2\n",
            &["--cycle", "1"][..],
            "missing column \"feed_in\"",
        ),
        (
            "p.csv",
            "trading,retail,feed_in\n0.1,0.2,0.05\n0.1,x,0.05\n",
            &["--cycle", "1"][..],
            "row 3, column retail",
        ),
        (
            "p.csv",
            "trading,retail,feed_in\n0.1,0.2,0.05\n",
            &[][..],
            "no cycle",
        ),
        (
            "p.csv",
            "trading,retail,feed_in\n1e9,0.2,0.05\n",
            &["--cycle", "1"][..],
            "trading[0]",
        ),
        (
            "p.json",
            r#"{"cycle_id": 1, "prices": {"trading": [0.1], "retail": [0.2]}}"#,
            &[][..],
            "feed_in",
        ),
        (
            "p.json",
            r#"{"cycle_id": 1, "model": "cheap", "prices": {"trading": [0.1], "retail": [0.2], "feed_in": [0.1]}}"#,
            &[][..],
            "model",
        ),
    ] {
        let (ok, err) = context(file, text, extra);
        assert!(!ok && err.contains(expect), "{text}: {err}");
    }

    let submit = |text: &str| {
        std::fs::write(d.join("h.csv"), text).unwrap();
        let f = path("h.csv");
        pbill(&["submit", "--core", nowhere, "--cycle", "1", "--file", &f])
    };
    for (text, expect) in [
        ("promise_kwh\n1\n", "missing column \"actual_kwh\""),
        ("promise_kwh,actual_kwh\n1,abc\n", "not a decimal number"),
        ("promise_kwh,actual_kwh\n1e9,1\n", "promises_kwh[0]"),
        ("promise_kwh,actual_kwh\n1,1\n2\n", "h.csv"),
    ] {
        let (ok, err) = submit(text);
        assert!(!ok && err.contains(expect), "{text}: {err}");
    }

    std::fs::write(
        d.join("edge.toml"),
        "community = \"c\"\ndata_dir = \"x\"\nkey_file = \"k\"\nmin_members = 1\n",
    )
    .unwrap();
    let (ok, err) = pbill(&["edge", "--config", &path("edge.toml")]);
    assert!(!ok && err.contains("min_members"), "{err}");
    std::fs::write(
        d.join("core.toml"),
        "member = \"a\"\ncommunity = \"c\"\nedge = \"tcp://127.0.0.1:1\"\nedge_node = \"00\"\noperator = \"00\"\ndata_dir = \"x\"\nkey_file = \"k\"\n",
    )
    .unwrap();
    let (ok, err) = pbill(&["core", "--config", &path("core.toml")]);
    assert!(!ok && err.contains("edge_node"), "{err}");
    assert!(
        !d.join("x").exists(),
        "a refused daemon created its data directory"
    );

    let (ok, err) = pbill(&["demo", "--households", "2"]);
    assert!(!ok && err.contains("--households"), "{err}");
    let (ok, err) = pbill(&["demo", "--dir", d.to_str().unwrap()]);
    assert!(!ok && err.contains("not empty"), "{err}");

    // The drill and the load test refuse bad options before starting
    // anything, and leave the given directory untouched.
    let before = std::fs::read_dir(d).unwrap().count();
    for (args, named) in [
        (vec!["drill", "--households", "2"], "--households"),
        (
            vec!["drill", "--min-gap-ms", "50", "--max-gap-ms", "10"],
            "--min-gap-ms",
        ),
        (vec!["drill", "--dir", d.to_str().unwrap()], "not empty"),
        (vec!["drill", "--kills", "many"], "--kills"),
        (vec!["load", "--members", "2"], "--members"),
        (vec!["load", "--window-secs", "0"], "--window-secs"),
        (vec!["load", "--dropout-rate", "0.7"], "--dropout-rate"),
    ] {
        let (ok, err) = bench(&args);
        assert!(!ok && err.contains(named), "{args:?}: {err}");
    }
    // They left the household's command line.
    let (ok, err) = pbill(&["load", "--members", "10"]);
    assert!(!ok && err.contains("unrecognized subcommand"), "{err}");
    assert_eq!(std::fs::read_dir(d).unwrap().count(), before);
}

#[test]
fn backend_choice_is_said_and_cuda_without_a_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Explicit CPU: same bills as the plaintext model, and the choice said.
    let (ok, err, cpu) = simulate(dir.path(), &community(), &["--backend", "cpu"]);
    assert!(ok, "{err}");
    assert!(err.contains("backend: cpu"), "{err}");
    let (_, _, plain) = simulate(dir.path(), &community(), &["--plaintext"]);
    assert_eq!(cpu, plain);
    // auto says what it chose and why.
    let (ok, err, auto) = simulate(dir.path(), &community(), &[]);
    assert!(ok, "{err}");
    assert!(err.contains("backend: "), "{err}");
    assert_eq!(auto, plain);
    // cuda: works where a device is usable, else a clear error and no output.
    let (ok, err, written) = simulate(dir.path(), &community(), &["--backend", "cuda"]);
    match pb_cuda::CudaBackend::new() {
        Ok(_) => {
            assert!(ok, "{err}");
            assert_eq!(written, plain);
        }
        Err(reason) => {
            assert!(!ok);
            assert!(err.contains("backend cuda:"), "{err}");
            assert!(err.contains(&reason.to_string()), "{err}");
            assert!(written.is_none(), "nothing may be written");
            eprintln!("no CUDA device here; checked the refusal: {err}");
        }
    }
    // A misspelt backend is a usage error naming the choices.
    let (ok, err, _) = simulate(dir.path(), &community(), &["--backend", "gpu"]);
    assert!(!ok);
    assert!(err.contains("auto, cpu or cuda"), "{err}");
}
