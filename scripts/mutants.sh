#!/usr/bin/env bash
# Each mutant of tests/conformance/mutants/*.patch applied to a scratch copy of HEAD (a git
# worktree in /tmp), and the one test that must catch it run there: "caught" when it fails,
# "MISSED" when it passes. Run as root (the tests realise scenarios on the kernel). Not part
# of scripts/test.sh: each mutant rebuilds the crates it touches.
#
# CREDNS_CONFORMANCE_SCALE (default 0.05 here) scales the generated suites for these runs.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# patch -> the test that catches it: cargo test arguments.
declare -A catcher=(
  [01-open-unknown]="--test model generated_on_kernel_and_model"
  [02-disk-uid-renamed]="--test model generated_on_kernel_and_model"
  [03-si-uid-from-euid]="--test model generated_on_kernel_and_model"
  [04-key-read-always-possessed]="--test model corpus_on_kernel_and_model"
  [05-chmod-not-performed]="--test model generated_on_kernel_and_model"
  [06-executor-refuses-scenarios]="--test model corpus_on_kernel_and_model"
  [07-pwrite-is-a-write]="--test maps offsets_and_second_writes"
  [08-fixed-seed]="--test seed seed_is_new_each_run"
)

scratch=$(mktemp -d /tmp/credns-mutants.XXXXXX)
wt=$scratch/tree
git worktree add -q --detach "$wt" HEAD
cleanup() { git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1; rm -rf "$scratch"; }
trap cleanup EXIT
# Dependencies are shared with this checkout's build; the workspace's crates build apart.
export CARGO_TARGET_DIR=$root/target/mutants
export CREDNS_CONFORMANCE_SCALE=${CREDNS_CONFORMANCE_SCALE:-0.05}

missed=0
for patch in tests/conformance/mutants/*.patch; do
  name=$(basename "$patch" .patch)
  args=${catcher[$name]:-}
  if [ -z "$args" ]; then echo "$name: no test named for it in scripts/mutants.sh" >&2; missed=1; continue; fi
  git -C "$wt" checkout -q -- .
  git -C "$wt" apply "$root/$patch" || { echo "$name: does not apply" >&2; missed=1; continue; }
  log=$scratch/$name.log
  # shellcheck disable=SC2086
  if (cd "$wt" && cargo test -q -p credns-conformance $args -- --exact --test-threads=1) >"$log" 2>&1; then
    echo "$name: MISSED (cargo test -p credns-conformance $args passed)"
    missed=1
  elif grep -q "^error\[\|could not compile" "$log"; then
    echo "$name: does not compile (see below)"; tail -20 "$log"; missed=1
  else
    why=$(grep -m1 -E "panicked at|assertion" -A1 "$log" | tail -1 | cut -c1-150)
    echo "$name: caught by $args — $why"
  fi
done
exit "$missed"
