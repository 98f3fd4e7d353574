#!/usr/bin/env bash
# Runs the unit and integration tests of the crates with unsafe code
# (netbuf, allocators) under valgrind memcheck: any error, or a definite or
# indirect leak, fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (scripts/test-all.sh installs it)"; exit 1; }

# A separate target dir keeps these debug builds from invalidating the
# regular ones; no debug assertions are lost (dev profile).
export CARGO_TARGET_DIR=target/memcheck
mapfile -t bins < <(cargo test -p nbsuite-netbuf -p nbsuite-allocators --lib --tests --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')

[ "${#bins[@]}" -gt 0 ] || { echo "no test binaries found"; exit 1; }
# Tests whose subject is the scheduler moving a task between tokio's
# worker threads: valgrind runs one thread at a time, so the move may never
# happen there (they run in every other stage). The counting allocator's
# memory safety stays covered by the deterministic tests of the same binary.
skips=(--skip a_migrating_task_ --skip snapshots_across_a_migrating_await)
status=0
for b in "${bins[@]}"; do
  echo "--- valgrind $(basename "$b")"
  # Proptest cases are cut down under valgrind (it is ~30x slower).
  if ! PROPTEST_CASES="${PROPTEST_CASES:-16}" valgrind --quiet --error-exitcode=1 --leak-check=full \
      --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
      "$b" --test-threads=2 -q "${skips[@]}"; then
    echo "memcheck FAILED: $b"
    status=1
  fi
done
exit $status
