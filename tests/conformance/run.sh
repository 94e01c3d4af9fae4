#!/usr/bin/env bash
# The conformance suite: every scenario of scenarios.sh against one backend.
#   run.sh BACKEND [SCENARIO...]
# Sources fixture_BACKEND.sh, starts it once, runs each scenario (all when none is named) in its own
# temp dir, state dir and config, prints PASS/FAIL/SKIP/XFAIL NAME per scenario and ends with
# `N passed, N failed`. Exit 0 when nothing failed, 1 otherwise, 2 for bad usage.
# Under the test command (GPURUN_REQUIRE_TOOLS=1) a skipped scenario fails, and so does a scenario
# of KNOWN_FAILURES_<backend> that passes (so that list only ever shrinks).
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCENARIO_LIMIT_S=${GPURUN_CONFORMANCE_SCENARIO_LIMIT_S:-90}

usage() { echo "usage: $0 BACKEND [SCENARIO...]  (BACKEND: $(cd "$HERE" && ls fixture_*.sh | sed 's/fixture_\(.*\)\.sh/\1/' | tr '\n' ' '))" >&2; exit 2; }

# ---- helpers for scenarios (each runs in its own bash process, see run_one) ----
FAILURES=0
CHECKS=0
fail() { echo "  FAIL: $*" >&2; FAILURES=$((FAILURES + 1)); }
check() { CHECKS=$((CHECKS + 1)); }
# expect_eq WHAT EXPECTED ACTUAL
expect_eq() { check; [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"; }
# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() { check; case "$3" in *"$2"*) ;; *) fail "$1: [$2] not in [$3]" ;; esac; }
expect_not_contains() { check; case "$3" in *"$2"*) fail "$1: [$2] unexpectedly in [$3]" ;; *) ;; esac; }
# run_cmd ARGS...: runs gpurun; stdout in $OUT, stderr in $ERR, exit code in $RC.
run_cmd() {
  OUT=$("$GPURUN" "$@" 2>"$SCENARIO_DIR/.err"); RC=$?
  ERR=$(cat "$SCENARIO_DIR/.err")
}
# expect_code LABEL CODE ARGS...: `gpurun ARGS` exits CODE.
expect_code() {
  local label=$1 code=$2
  shift 2
  run_cmd "$@"
  expect_eq "$label: exit" "$code" "$RC"
}
# wait_until SECONDS COMMAND...: polls until the command succeeds; 1 when it never did.
wait_until() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while ! "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.05
  done
}
# skip REASON: the scenario cannot run here (a developer's partial run only; ctest fails it).
skip() { echo "  SKIP: $*" >&2; exit 77; }
# The run id printed by `run --detach --json` in $OUT.
detached_id() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["run_id"])' "$OUT"; }
# run_field ID FIELD: FIELD of run ID in `ps --all --json`.
run_field() {
  "$GPURUN" ps --all --json 2>/dev/null |
    python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["id"]==sys.argv[1]][0][sys.argv[2]])' "$1" "$2"
}
# last_run_id FUNCTION: the newest run of FUNCTION.
last_run_id() {
  "$GPURUN" ps --all --json 2>/dev/null |
    python3 -c 'import json,sys; print(sorted([r for r in json.load(sys.stdin) if r["function"]==sys.argv[1]], key=lambda r: r["created_at"])[-1]["id"])' "$1"
}

# run_one BACKEND NAME: one scenario in this process (called through `run.sh --one`), in
# $SCENARIO_DIR (made and removed by the runner).
run_one() {
  BACKEND=$1
  local name=$2
  export GPURUN_STATE_DIR="$SCENARIO_DIR/state" XDG_CONFIG_HOME="$SCENARIO_DIR/config" XDG_CACHE_HOME="$SCENARIO_DIR/cache"
  unset GPURUN_CONFIG
  cd "$SCENARIO_DIR" || exit 1
  mkdir -p "$XDG_CONFIG_HOME/gpurun"
  fixture_config > "$XDG_CONFIG_HOME/gpurun/config.yaml"
  "scenario_$name"
  [ "$FAILURES" -eq 0 ] || exit 1
  [ "$CHECKS" -gt 0 ] || { echo "  FAIL: the scenario checked nothing" >&2; exit 1; }
  exit 0
}
# scenario_cleanup DIR: ends what a scenario left running, also after it was killed at its time
# limit (its supervisors hold their run's lock open; the backend's own leftovers through the
# fixture), then removes its files.
scenario_cleanup() {
  fuser -k -KILL "$1"/state/runs/*/lock >/dev/null 2>&1 || true
  fixture_scenario_cleanup
  rm -rf "$1"
}

# known_failure BACKEND NAME: prints the reason when NAME is a known failure on BACKEND.
known_failure() {
  local -n list="KNOWN_FAILURES_$1"
  local entry
  for entry in "${list[@]}"; do
    [ "${entry%%:*}" = "$2" ] && { echo "${entry#*:}"; return 0; }
  done
  return 1
}

# ---- the runner ----
if [ "${1:-}" = --one ]; then
  [ $# -eq 3 ] || usage
  source "$HERE/fixture_$2.sh"
  source "$HERE/scenarios.sh"
  run_one "$2" "$3"
fi

[ $# -ge 1 ] || usage
BACKEND=$1; shift
[ -f "$HERE/fixture_$BACKEND.sh" ] || { echo "$0: no fixture for backend '$BACKEND' (tests/conformance/fixture_$BACKEND.sh)" >&2; usage; }
: "${GPURUN:?GPURUN must point at the gpurun binary}"
source "$HERE/fixture_$BACKEND.sh"
source "$HERE/scenarios.sh"
declare -p "KNOWN_FAILURES_$BACKEND" >/dev/null 2>&1 || eval "KNOWN_FAILURES_$BACKEND=()"
if [ $# -gt 0 ]; then NAMES=("$@"); else NAMES=("${SCENARIOS[@]}"); fi
for name in "${NAMES[@]}"; do
  declare -F "scenario_$name" >/dev/null || { echo "$0: no scenario '$name'; scenarios: ${SCENARIOS[*]}" >&2; exit 2; }
done

trap 'fixture_stop' EXIT
fixture_start
passed=0 failed=0 xfailed=0 skipped=0
for name in "${NAMES[@]}"; do
  log=$(mktemp "${TMPDIR:-/tmp}/gpurun-conf-log-XXXXXX")
  SCENARIO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-conf-$name-XXXXXX")
  start=$SECONDS
  SCENARIO_DIR=$SCENARIO_DIR timeout -k 5 "$SCENARIO_LIMIT_S" bash "$HERE/run.sh" --one "$BACKEND" "$name" >"$log" 2>&1
  rc=$?
  scenario_cleanup "$SCENARIO_DIR"
  took="$((SECONDS - start))s"
  reason=$(known_failure "$BACKEND" "$name") && known=1 || known=0
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "  FAIL: did not finish within ${SCENARIO_LIMIT_S}s" >>"$log"; rc=1
  fi
  if [ $rc -eq 77 ]; then
    if [ "${GPURUN_REQUIRE_TOOLS:-}" = 1 ]; then
      echo "FAIL $name (skipped, and GPURUN_REQUIRE_TOOLS=1 forbids skips) [$took]"; cat "$log"; failed=$((failed + 1))
    else
      echo "SKIP $name [$took]"; cat "$log"; skipped=$((skipped + 1))
    fi
  elif [ $known = 1 ]; then
    if [ $rc -eq 0 ]; then
      echo "FAIL $name (passes now: remove it from KNOWN_FAILURES_$BACKEND in tests/conformance/scenarios.sh) [$took]"
      failed=$((failed + 1))
    else
      echo "XFAIL $name ($reason) [$took]"; xfailed=$((xfailed + 1))
      [ -n "${GPURUN_CONFORMANCE_VERBOSE:-}" ] && cat "$log"
    fi
  elif [ $rc -eq 0 ]; then
    echo "PASS $name [$took]"; passed=$((passed + 1))
  else
    echo "FAIL $name [$took]"; cat "$log"; failed=$((failed + 1))
  fi
  rm -f "$log"
done
[ $xfailed -gt 0 ] || [ $skipped -gt 0 ] && echo "($xfailed known failures, $skipped skipped on $BACKEND)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
