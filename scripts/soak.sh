#!/usr/bin/env bash
# The 60-second soak / chaos run (release build), in two 30-second profiles
# (handlers inline, then on logic threads): server-demo's server
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
# Two profiles of half the time each: handlers inline on the IO threads
# (the server's default) and on two logic threads.
half=$(( (${SOAK_SECONDS:-60} + 1) / 2 ))
for logic in 0 2; do
  echo "-- soak profile: --logic-threads $logic ($([ "$logic" = 0 ] && echo "handlers inline, the default" || echo "logic threads")), $half s"
  args=(soak --seconds "$half" --clients "${SOAK_CLIENTS:-16}" --logic-threads "$logic")
  [ -n "${SOAK_SEED:-}" ] && args+=(--seed "$SOAK_SEED")
  # One log line per closed session would drown the summary.
  RUST_LOG="${RUST_LOG:-warn}" cargo run --release -q -p server-demo -- "${args[@]}" "$@"
done
