#!/usr/bin/env bash
# Installs NVRTC (no GPU needed) from PyPI's nvidia-cuda-nvrtc-cu12 wheel
# into a cache directory and prints the directory holding libnvrtc, for
# LD_LIBRARY_PATH. With it the test suite compiles every kernel in kernels/
# (crates/cuda/tests/nvrtc.rs) even on machines without CUDA.
# Usage: export LD_LIBRARY_PATH="$(bash ci/nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
set -euo pipefail
dest="${PBILL_NVRTC_DIR:-$HOME/.cache/private-billing/nvrtc}"
lib="$dest/nvidia/cuda_nvrtc/lib"
if ! ls "$lib"/libnvrtc.so.* >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$dest" \
        "nvidia-cuda-nvrtc-cu12>=12.4" >&2
fi
ls "$lib"/libnvrtc.so.* >/dev/null
echo "$lib"
