#!/usr/bin/env bash
# The Python package private_billing: a fresh virtual environment,
# `pip install ./python` (maturin from PyPI builds the extension in release
# into CARGO_TARGET_DIR, reusing the workspace's dependency builds), then
# pytest on python/tests. Any failure, a skipped test or no test at all
# fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "./python[test]"
# Run from the repository root with the pytest script, so that the
# installed package (not the source folder) is imported.
PB_NO_SKIPS=1 "$venv/bin/pytest" -q python/tests
echo "python package: built, installed and tested in $(( $(date +%s) - start )) s"
