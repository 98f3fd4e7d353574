#!/usr/bin/env bash
# The project's whole test suite, as README.md gives it and .ci/run calls it.
# Installs what it needs (valgrind) when missing. Stages print a banner; any
# failure stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
# Each banner says how long the run has taken so far, so a CI log shows
# which stage costs what.
stage() { printf '\n==== %s (at %d s) ====\n' "$*" "$(( $(date +%s) - started ))"; }

stage "prerequisites"
if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind missing: installing it from Debian's packages"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq valgrind
fi
# The ZMTP interop tests' libzmq (the zmq crate) is built from source with g++.
if ! command -v g++ >/dev/null 2>&1; then
  echo "g++ missing: installing it from Debian's packages (libzmq is built from source)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq g++
fi
cargo --version; valgrind --version; g++ --version | head -1

stage "cargo fmt --check"
cargo fmt --all --check

stage "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Tests under each global allocator. ALLOCATORS_EXPECT makes the allocators
# crate check that the feature wiring selects what it says. The system run
# also runs doc tests and a smoke pass of every criterion bench (criterion's
# test mode: each benchmark once, no timing).
stage "tests: system allocator (+ doc tests, bench smoke)"
ALLOCATORS_EXPECT=system cargo test --workspace --all-targets
ALLOCATORS_EXPECT=system cargo test --workspace --doc

stage "tests: netbuf with the leak-trace feature"
cargo test -p nbsuite-netbuf --features leak-trace --test leak_trace --test pool

# Under the other allocators: the library crates and the server (every test
# of theirs); the benches' peers and the loom crate do not depend on the
# global allocator's behaviour and would only add two more builds.
LIB_CRATES="-p nbsuite-allocators -p nbsuite-netbuf -p nbsuite-netbuf-tokio -p server-demo"

stage "tests: mimalloc"
ALLOCATORS_EXPECT=mimalloc cargo test $LIB_CRATES --lib --bins --tests --features allocators/mimalloc

stage "tests: jemalloc"
ALLOCATORS_EXPECT=jemalloc cargo test $LIB_CRATES --lib --bins --tests --features allocators/jemalloc

stage "tests: --all-features (precedence picks jemalloc)"
ALLOCATORS_EXPECT=jemalloc cargo test -p nbsuite-allocators --all-features

if [ -x scripts/soak.sh ]; then
  stage "soak / chaos: 60-second profile (release)"
  scripts/soak.sh
fi

if [ -x scripts/loom.sh ]; then
  stage "loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2})"
  scripts/loom.sh
fi

if [ -x scripts/memcheck.sh ]; then
  stage "valgrind memcheck on the unsafe paths"
  scripts/memcheck.sh
fi

stage "done in $(( $(date +%s) - started )) s"
