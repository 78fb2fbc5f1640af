#!/usr/bin/env bash
# `make test`: the whole proof ladder, each stage timed, then a table of where the time went.
#   set-up   Go check, uv, .venv, collections (tools/setup.sh test)
#   prepare  every binary, image and chart the tests use (python -m stacktools prepare):
#            built here, with progress, never inside a test's timeout
#   lint     ruff, mypy, yamllint, ansible-lint (make lint-only), beside the pytest sessions
#   pytest   every level, one marker each (stacktools.ladder prints the per-level table), in
#            three sessions at once (see checks below; STACK_SERIAL=1: lint, then one session)
set -euo pipefail
cd "$(dirname "$0")/.."

timings=$(mktemp "${TMPDIR:-/tmp}/ladder-times.XXXXXX")
export STACK_TIMINGS="$timings"
# The Docker engine: the set-up step starts one where none runs (python -m stacktools engine)
# and writes its PID to STACK_ENGINE_OWNER; this run registers as a user of the engine
# (STACK_ENGINE_USER) and at the end stops it only if it started it and no other run uses it.
engine_owner=$(mktemp "${TMPDIR:-/tmp}/ladder-engine.XXXXXX")
export STACK_ENGINE_OWNER="$engine_owner" STACK_ENGINE_USER=$$
release_engine() {
  if [[ -x .venv/bin/python ]]; then
    .venv/bin/python -m stacktools engine release --owner-file "$engine_owner" --user $$ || true
  fi
}
trap 'release_engine; rm -f "$timings" "$engine_owner"' EXIT

stage() {
  local name=$1
  shift
  local began=$SECONDS status=0
  echo "==> $name" >&2
  "$@" || status=$?
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - began))" "$([[ $status == 0 ]] && echo ok || echo "FAILED ($status)")" >>"$timings"
  return "$status"
}

table() {
  echo
  echo "make test: time per stage and level"
  awk -F'\t' '{ m = int($2 / 60); s = $2 - 60 * m;
                printf "  %-22s %3d min %4.1f s   %s\n", $1, m, s, $3 }' "$timings"
  echo "  total                  $((SECONDS / 60)) min $((SECONDS % 60)) s"
}

# Three pytest sessions at once, and the linters beside them, on separate levels, each with its
# own servers (free loopback ports, own temporary folders; the node in its own network namespace,
# stacktools.servers.nodenet): the node level (mostly waiting for a real kubelet) after L4 istiod
# (its 35 s run first), the Ansible-heavy L3 controlplane and charts levels, and every other
# level in the foreground; measured so that none of the three is much longer than the others
# (the two cores are busy throughout). A background session's output is kept and printed after
# the foreground's, so none interleaves. STACK_SERIAL=1 runs the linters, then one pytest.
BACKGROUND=("node or istiod" "controlplane or charts")
FOREGROUND="not node and not istiod and not controlplane and not charts"

run_logged() { # <log> <command...>: run in the background, output to <log>
  local log=$1
  shift
  "$@" >"$log" 2>&1
}

checks() {
  if [[ ${STACK_SERIAL:-0} == 1 ]]; then
    make --no-print-directory lint-only && .venv/bin/pytest --durations=20
    return
  fi
  local -a pids=() logs=() names=()
  local log expr status=0
  log=$(mktemp "${TMPDIR:-/tmp}/ladder-lint.XXXXXX")
  run_logged "$log" stage "L0 lint" make --no-print-directory lint-only &
  pids+=($!) logs+=("$log") names+=("the linters (make lint-only)")
  for expr in "${BACKGROUND[@]}"; do
    log=$(mktemp "${TMPDIR:-/tmp}/ladder-pytest.XXXXXX")
    run_logged "$log" .venv/bin/pytest -p no:cacheprovider --durations=10 -m "$expr" &
    pids+=($!) logs+=("$log") names+=("pytest -m \"$expr\"")
  done
  .venv/bin/pytest --durations=10 -m "$FOREGROUND" || status=$?
  local i
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=1
    echo
    echo "==> ${names[$i]}, run alongside the levels above"
    cat "${logs[$i]}"
    rm -f "${logs[$i]}"
  done
  return "$status"
}

status=0
{
  stage "set-up" bash tools/setup.sh test &&
    stage "prepare (builds)" .venv/bin/python -m stacktools prepare &&
    stage "lint + pytest" checks
} || status=$?
table >&2
exit "$status"
