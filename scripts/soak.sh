#!/usr/bin/env bash
# The 60-second soak / chaos profile (release build): server-demo's server
# in-process on loopback under 16 client threads that connect and
# disconnect at random, mix valid echo / room traffic with faults (garbage,
# oversize frames, slow readers, drops mid-frame), plus 6 ZMTP client
# threads (DEALER echo, PUB / SUB through the broker, peers that vanish
# mid-frame or send garbage), then check that nothing was lost, reordered
# or corrupted, that memory stayed bounded and that nothing leaked.
# Non-zero exit on any failed check.
#
#   SOAK_SECONDS=1800 scripts/soak.sh     # the long profile
#   SOAK_SEED=42 scripts/soak.sh          # replay a seed's choices
set -euo pipefail
cd "$(dirname "$0")/.."
args=(soak --seconds "${SOAK_SECONDS:-60}" --clients "${SOAK_CLIENTS:-16}")
[ -n "${SOAK_SEED:-}" ] && args+=(--seed "$SOAK_SEED")
# One log line per closed session would drown the summary.
RUST_LOG="${RUST_LOG:-warn}" cargo run --release -q -p server-demo -- "${args[@]}" "$@"
