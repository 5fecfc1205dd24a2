#!/usr/bin/env bash
# Runs every cargo fuzz (libFuzzer, AddressSanitizer) target for a bounded
# time and prints a table of executions per target. Exits non-zero when any
# target finds a crash; its reproducer is left in fuzz/artifacts/<target>/
# (keep it under fuzz/regressions/<target>/ once fixed: the workspace tests
# replay that directory and the seed corpus).
#
#   ci/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, all)
#
# FUZZ_TARGET_DIR moves the (sanitizer-instrumented) build out of the tree;
# FUZZ_JOBS runs targets in parallel (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-20}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo fuzz passes -Z flags (sanitizers); this project builds on stable.
export RUSTC_BOOTSTRAP=1
target_dir=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
cd fuzz
echo "== building fuzz targets (release, ASan, into $target_dir)" >&2
cargo fuzz build -O --target-dir "$target_dir"
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
mkdir -p logs
summary=logs/summary.txt
: > "$summary"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    log="logs/$t.log"
    echo "== $t: ${budget}s" >&2
    set +e
    cargo fuzz run -O --target-dir "$target_dir" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$budget" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 > "$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    per_sec=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' | awk '{print $2}')
    units=$(find "work/$t" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        failed=1
        status="CRASH (see fuzz/$log and fuzz/artifacts/$t/)"
        tail -30 "$log" >&2
    else
        status="ok"
    fi
    printf '%-20s %6ss %12s execs %8s/s  cov %6s  corpus %5s  %s\n' \
        "$t" "$budget" "${execs:-?}" "${per_sec:-?}" "${cov:-?}" "$units" "$status" | tee -a "$summary"
done
echo "== summary in fuzz/$summary" >&2
exit "$failed"
