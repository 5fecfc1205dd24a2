//! Replays the kept fuzz corpus and every crash reproducer through the
//! checks the fuzzer runs (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_a_fuzz_binary_and_a_seed_corpus() {
    for (name, _) in pb_fuzz_checks::TARGETS {
        let bin = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.is_file(), "no fuzz target {}", bin.display());
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(!corpus.is_empty(), "no seed corpus for {name}");
    }
    // And no fuzz target without its check here.
    for file in files(&fuzz_dir().join("fuzz_targets")) {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        assert!(
            pb_fuzz_checks::TARGETS.iter().any(|(n, _)| *n == stem),
            "fuzz target {stem} is not in TARGETS"
        );
    }
}

#[test]
fn corpus_and_crash_reproducers_pass_every_check() {
    let mut replayed = 0;
    for (name, check) in pb_fuzz_checks::TARGETS {
        for dir in ["corpus", "regressions"] {
            for file in files(&fuzz_dir().join(dir).join(name)) {
                let bytes = std::fs::read(&file).expect("readable corpus file");
                let outcome = std::panic::catch_unwind(|| check(&bytes));
                assert!(
                    outcome.is_ok(),
                    "{name}: {} fails its check",
                    file.display()
                );
                replayed += 1;
            }
        }
    }
    eprintln!("{replayed} corpus and reproducer inputs replayed");
}
