#!/usr/bin/env bash
# Runs every loom model (loom-tests/ and cfg(loom) tests beside the code).
# CI depth: LOOM_MAX_PREEMPTIONS=2. Deeper: LOOM_MAX_PREEMPTIONS=3 scripts/loom.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
# A separate target dir: --cfg loom rebuilds every crate.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --release -p loom-tests "$@"
