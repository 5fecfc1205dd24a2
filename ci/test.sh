#!/usr/bin/env bash
# The project's test job: formatting, a build of every target (benches
# included), then the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo build --release --workspace --all-targets
cargo test --release --workspace
