//! Meter data as utilities export it (issue 16, item 5): `pbill submit
//! --forecast --actual` and `pbill simulate` with meter files, interval
//! CSV and Green Button (ESPI) XML; every bad file refused with its line
//! before anything is sent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
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

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

fn example(name: &str) -> String {
    examples().join(name).to_str().unwrap().to_string()
}

const START: &str = "2026-11-28T00:00:00+01:00";

/// A listener that stands for the core: after a refused submission, it
/// must not have seen a single connection.
struct Core {
    listener: TcpListener,
    endpoint: String,
}

impl Core {
    fn new() -> Core {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        Core { listener, endpoint }
    }

    fn contacted(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// `pbill submit` of a forecast and a meter file written to `dir`.
fn submit(
    core: &Core,
    dir: &Path,
    forecast: (&str, &str),
    actual: (&str, &str),
    extra: &[&str],
) -> (bool, String) {
    let f = dir.join(forecast.0);
    let a = dir.join(actual.0);
    std::fs::write(&f, forecast.1).unwrap();
    std::fs::write(&a, actual.1).unwrap();
    let mut args = vec![
        "submit",
        "--core",
        &core.endpoint,
        "--cycle",
        "1",
        "--forecast",
        f.to_str().unwrap(),
        "--actual",
        a.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    pbill(&args)
}

fn quarter_hours(header: &str, times: &[&str]) -> String {
    let mut t = format!("{header}\n");
    for time in times {
        t += &format!("2026-11-28T{time}+01:00,0.1\n");
    }
    t
}

#[test]
fn bad_meter_files_are_refused_by_line_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let core = Core::new();
    let good = std::fs::read_to_string(examples().join("meter-15min.csv")).unwrap();
    let espi = std::fs::read_to_string(examples().join("meter-espi.xml")).unwrap();
    let q = |times: &[&str]| quarter_hours("timestamp,energy_kwh", times);
    let eight = [
        "00:00:00", "00:15:00", "00:30:00", "00:45:00", "01:00:00", "01:15:00", "01:30:00",
        "01:45:00",
    ];
    let cut = espi.find("<value>240").unwrap();
    let mut cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "gap.csv",
            q(&["00:00:00", "00:15:00", "00:45:00", "01:00:00"]),
            "gap.csv: line 4: gap: no reading from 2026-11-28T00:30:00+01:00 to 2026-11-28T00:45:00+01:00",
            vec![],
        ),
        (
            "dup.csv",
            q(&["00:00:00", "00:15:00", "00:15:00", "00:30:00"]),
            "dup.csv: line 4: 2026-11-28T00:15:00+01:00 is a duplicate of line 3",
            vec![],
        ),
        (
            "overlap.csv",
            "timestamp,end,energy_kwh\n2026-11-28T00:00:00+01:00,2026-11-28T01:00:00+01:00,1\n\
             2026-11-28T00:45:00+01:00,2026-11-28T01:00:00+01:00,1\n"
                .into(),
            "overlap.csv: line 3: the interval starting 2026-11-28T00:45:00+01:00 overlaps line 2",
            vec![],
        ),
        (
            "misaligned.csv",
            q(&["00:00:00", "00:10:00", "00:25:00"]),
            "misaligned.csv: line 3: 2026-11-28T00:10:00+01:00 is misaligned",
            vec![],
        ),
        (
            "no-offset.csv",
            "timestamp,energy_kwh\n2026-11-28T00:00:00,1\n2026-11-28T00:15:00,1\n".into(),
            "no-offset.csv: line 2, column timestamp: \"2026-11-28T00:00:00\" is not an ISO 8601 time with an offset",
            vec![],
        ),
        (
            "unit.csv",
            quarter_hours("timestamp,energy (MWh)", &eight),
            "unit.csv: line 1, column 2 \"energy (MWh)\": unit \"MWh\" is not known",
            vec![],
        ),
        (
            "short.csv",
            q(&eight[..6]),
            "the cycle's 8 slots run to 2026-11-28T02:00:00+01:00",
            vec!["--slots", "8"],
        ),
        (
            "long.csv",
            q(&[&eight[..], &["02:00:00", "02:15:00"]].concat()),
            "long.csv: line 10: the interval to 2026-11-28T02:15:00+01:00 is past the cycle's end",
            vec!["--slots", "8"],
        ),
        (
            "page.xml",
            "<html><body>meter</body></html>".into(),
            "page.xml: not an ESPI document: the root element is <html>",
            vec![],
        ),
        (
            "cut.xml",
            espi[..cut].to_string(),
            "cut.xml: truncated: <IntervalReading> (line",
            vec![],
        ),
        (
            "bad.xml",
            espi.replace("<value>240</value>", "<value>2x</value>"),
            "<IntervalReading>: <value> \"2x\" is not an integer",
            vec![],
        ),
    ];
    // A daylight-saving change written without offsets is ambiguous.
    cases.push((
        "dst.csv",
        "timestamp,energy_kwh\n2026-10-25 02:45:00,1\n2026-10-25 02:00:00,1\n".into(),
        "dst.csv: line 2, column timestamp: \"2026-10-25 02:45:00\" is not an ISO 8601 time with an offset",
        vec![],
    ));
    for (name, text, want, extra) in &cases {
        let mut args = vec!["--cycle-start", START];
        args.extend_from_slice(extra);
        let (ok, err) = submit(&core, d, ("forecast.csv", &good), (name, text), &args);
        assert!(!ok && err.contains(want), "{name}: {err}");
        assert!(
            err.lines().count() == 1,
            "{name}: one line of error, got {err}"
        );
        // As a forecast too.
        let (ok, err) = submit(&core, d, (name, text), ("actual.csv", &good), &args);
        assert!(!ok && err.contains(want), "{name} as forecast: {err}");
    }
    // Without the cycle's start, or with an unknown extension.
    let (ok, err) = submit(&core, d, ("f.csv", &good), ("a.csv", &good), &[]);
    assert!(!ok && err.contains("--cycle-start is needed"), "{err}");
    let (ok, err) = submit(
        &core,
        d,
        ("f.csv", &good),
        ("a.txt", &good),
        &["--cycle-start", START],
    );
    assert!(
        !ok && err.contains("a.txt: cannot tell its format"),
        "{err}"
    );
    let (ok, err) = submit(
        &core,
        d,
        ("f.csv", &good),
        ("a.csv", &good),
        &["--cycle-start", "tomorrow"],
    );
    assert!(
        !ok && err.contains("--cycle-start: \"tomorrow\" is not an ISO 8601 time"),
        "{err}"
    );
    // An ESPI file given as the per-slot file.
    let x = d.join("m.xml");
    std::fs::write(&x, &espi).unwrap();
    let (ok, err) = pbill(&[
        "submit",
        "--core",
        &core.endpoint,
        "--cycle",
        "1",
        "--file",
        x.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("an ESPI file holds one meter series"),
        "{err}"
    );
    assert!(!core.contacted(), "a refused submission reached the core");
}

#[test]
fn good_meter_files_pass_the_checks_and_go_to_the_core() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens on port 1: the submission gets as far as the network.
    let nowhere = "tcp://127.0.0.1:1";
    for (forecast, actual, extra) in [
        ("forecast-hourly.csv", "meter-15min.csv", &[][..]),
        ("forecast-2.csv", "meter-espi.xml", &["--slots", "8"][..]),
        (
            "forecast-3.csv",
            "meter-hourly-espi.xml",
            &["--format", "espi"][..],
        ),
    ] {
        let (f, a) = (example(forecast), example(actual));
        let mut args = vec![
            "submit",
            "--core",
            nowhere,
            "--cycle",
            "1",
            "--forecast",
            &f,
            "--actual",
            &a,
            "--cycle-start",
            START,
        ];
        args.extend_from_slice(extra);
        if extra == ["--format", "espi"] {
            // --format applies to both files: the CSV forecast is then
            // not ESPI, and says so.
            let (ok, err) = pbill(&args);
            assert!(
                !ok && err.contains("forecast-3.csv: no XML element"),
                "{err}"
            );
            continue;
        }
        let (ok, err) = pbill(&args);
        assert!(
            !ok && err.contains("connection refused"),
            "{forecast}: {err}"
        );
    }
    // A daylight-saving change with offsets is read by instant.
    let dst = dir.path().join("dst.csv");
    let mut text = String::from("timestamp,energy_kwh\n");
    for t in [
        "02:00:00+02:00",
        "02:15:00+02:00",
        "02:30:00+02:00",
        "02:45:00+02:00",
        "02:00:00+01:00",
        "02:15:00+01:00",
        "02:30:00+01:00",
        "02:45:00+01:00",
    ] {
        text += &format!("2026-10-25T{t},0.1\n");
    }
    std::fs::write(&dst, text).unwrap();
    let p = dst.to_str().unwrap();
    let (ok, err) = pbill(&[
        "submit",
        "--core",
        nowhere,
        "--cycle",
        "1",
        "--forecast",
        p,
        "--actual",
        p,
        "--cycle-start",
        "2026-10-25T02:00:00+02:00",
        "--slots",
        "8",
    ]);
    assert!(!ok && err.contains("connection refused"), "{err}");
}

fn simulate(input: &Path, out: &Path, extra: &[&str]) -> (bool, String, Option<serde_json::Value>) {
    let _ = std::fs::remove_file(out);
    let mut args = vec![
        "simulate",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, err) = pbill(&args);
    let written = std::fs::read_to_string(out)
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap());
    (ok, err, written)
}

#[test]
fn simulate_bills_meter_files_as_the_same_values_per_slot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bills.json");
    // The example's values per slot, in kWh, as the meter files give them
    // (hourly values spread as documented, ESPI directions netted).
    let arrays = r#"{"cycle_id": 1,
 "prices": {"trading": [0.21, 0.21, 0.21, 0.21, 0.24, 0.24, 0.24, 0.24],
            "retail": [0.32, 0.32, 0.32, 0.32, 0.35, 0.35, 0.35, 0.35],
            "feed_in": [0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06]},
 "households": [
  {"id": "house-001", "promises_kwh": [0.125, 0.125, 0.125, 0.125, 0.237, 0.237, 0.237, 0.236],
   "actual_kwh": [0.132, 0.118, 0.121, 0.140, 0.310, 0.295, 0.180, 0.162]},
  {"id": "house-002", "promises_kwh": [0.08, 0.07, 0.05, 0.0, -0.12, -0.22, -0.3, -0.33],
   "actual_kwh": [0.08, 0.075, 0.06, 0.01, -0.13, -0.23, -0.31, -0.33]},
  {"id": "house-003", "promises_kwh": [0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2],
   "actual_kwh": [0.251, 0.251, 0.251, 0.25, 0.216, 0.216, 0.215, 0.215]}]}"#;
    let plain = dir.path().join("arrays.json");
    std::fs::write(&plain, arrays).unwrap();
    let (ok, err, want) = simulate(&plain, &out, &["--plaintext"]);
    assert!(ok, "{err}");
    let meters = examples().join("community-meters.json");
    let (ok, err, got) = simulate(&meters, &out, &["--plaintext"]);
    assert!(ok, "{err}");
    assert_eq!(got, want);
    // And through the encrypted pipeline.
    let (ok, err, got) = simulate(&meters, &out, &[]);
    assert!(ok, "{err}");
    assert_eq!(got, want);
}

#[test]
fn simulate_refuses_a_bad_meter_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in [
        "forecast-hourly.csv",
        "meter-15min.csv",
        "forecast-2.csv",
        "meter-espi.xml",
        "forecast-3.csv",
        "meter-hourly-espi.xml",
        "community-meters.json",
    ] {
        std::fs::copy(examples().join(name), d.join(name)).unwrap();
    }
    let input = d.join("community-meters.json");
    let out = d.join("bills.json");
    let (ok, err, _) = simulate(&input, &out, &["--plaintext"]);
    assert!(ok, "{err}");
    // Another cycle start: the files are an hour early for it.
    let (ok, err, written) = simulate(
        &input,
        &out,
        &["--plaintext", "--cycle-start", "2026-11-28T01:00:00+01:00"],
    );
    assert!(!ok && written.is_none(), "{err}");
    assert!(
        err.contains("households[0] (house-001): forecast-hourly.csv: line 2: 2026-11-28T00:00:00+01:00 is before the cycle start"),
        "{err}"
    );
    // A gap in one household's meter file.
    let meter = std::fs::read_to_string(d.join("meter-15min.csv")).unwrap();
    std::fs::write(
        d.join("meter-15min.csv"),
        meter.replace("2026-11-28T00:30:00+01:00,0.121\n", ""),
    )
    .unwrap();
    let (ok, err, written) = simulate(&input, &out, &["--plaintext"]);
    assert!(!ok && written.is_none(), "{err}");
    assert!(
        err.contains("households[0] (house-001): meter-15min.csv: line 4: gap"),
        "{err}"
    );
    // A missing file, a cycle of another length, a forced wrong format.
    std::fs::remove_file(d.join("meter-15min.csv")).unwrap();
    let (ok, err, _) = simulate(&input, &out, &["--plaintext"]);
    assert!(!ok && err.contains("meter-15min.csv"), "{err}");
    let (ok, err, _) = simulate(
        &examples().join("community-meters.json"),
        &out,
        &["--plaintext", "--format", "csv"],
    );
    assert!(
        !ok && err
            .contains("households[1] (house-002): meter-espi.xml: line 1: no timestamp column"),
        "{err}"
    );
    let text = std::fs::read_to_string(examples().join("community-meters.json")).unwrap();
    std::fs::copy(
        examples().join("meter-15min.csv"),
        d.join("meter-15min.csv"),
    )
    .unwrap();
    std::fs::write(
        &input,
        text.replace("0.06, 0.06]}", "0.06, 0.06, 0.06]}")
            .replace("0.24, 0.24]", "0.24, 0.24, 0.24]")
            .replace("0.35, 0.35]", "0.35, 0.35, 0.35]"),
    )
    .unwrap();
    let (ok, err, _) = simulate(&input, &out, &["--plaintext"]);
    assert!(!ok && err.contains("the cycle's 9 slots"), "{err}");
}
