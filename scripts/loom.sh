#!/usr/bin/env bash
# Runs every loom model: the crate-private ones beside the code
# (`loom.rs` in crates/netbuf/src/pool and src/send/queue, `#[cfg(all(test, loom))]`) and the
# public-API ones in loom-tests/. Debug assertions stay on (as sharded-slab's
# loom script does), so the queue's and pool's `debug_assert!`s run inside
# the models; --release only speeds up the exploration.
# CI depth: LOOM_MAX_PREEMPTIONS=2. Deeper: LOOM_MAX_PREEMPTIONS=3 scripts/loom.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
# A separate target dir: --cfg loom rebuilds every crate.
export RUSTFLAGS="--cfg loom -C debug-assertions=on"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
cargo test --release -p nbsuite-netbuf --lib "$@"
cargo test --release -p loom-tests "$@"
