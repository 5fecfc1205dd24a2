#!/usr/bin/env bash
# The crash-restart drill at full size: a community of processes on
# loopback, SIGKILL of the edge and of random cores at random moments until
# at least KILLS kills (default 200), every cycle checked billed exactly once
# with bills equal to the plaintext model. Prints the kills survived.
#
#   ci/drill.sh [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-200}
seed=${2:-$(date +%s)}
echo "== crash-restart drill: $kills kills, seed $seed" >&2
cargo run --release --quiet --bin pbill-bench -- drill --kills "$kills" --seed "$seed"
