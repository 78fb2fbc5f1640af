#!/usr/bin/env bash
# `make test`: the whole proof ladder, each stage timed, then a table of where the time went.
#   set-up   Go check, uv, .venv, collections (tools/setup.sh test)
#   prepare  every binary, image and chart the tests use (python -m stacktools prepare):
#            built here, with progress, never inside a test's timeout
#   lint     ruff, mypy, yamllint, ansible-lint (make lint)
#   pytest   every level, one marker each (stacktools.ladder prints the per-level table); the
#            node level runs in a pytest of its own next to the other levels (STACK_SERIAL=1:
#            one after the other): most of its time is waiting for a real kubelet (image
#            imports, rollouts, the HPA's windows), which the other levels' CPU work fills
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

# Two pytest sessions at once: the node level (its own control plane and node, in the node's
# own namespaces, stacktools.servers.nodenet) and every other level. The node level's output
# is kept and printed after the other session's, so neither interleaves with the other.
pytest_levels() {
  if [[ ${STACK_SERIAL:-0} == 1 ]]; then
    .venv/bin/pytest
    return
  fi
  local node_log node_status=0 other_status=0
  node_log=$(mktemp "${TMPDIR:-/tmp}/ladder-node.XXXXXX")
  .venv/bin/pytest -p no:cacheprovider -m node >"$node_log" 2>&1 &
  local node_pid=$!
  .venv/bin/pytest -m "not node" || other_status=$?
  wait "$node_pid" || node_status=$?
  echo
  echo "==> the node level (pytest -m node), run alongside the levels above"
  cat "$node_log"
  rm -f "$node_log"
  ((other_status == 0 && node_status == 0))
}

status=0
{
  stage "set-up" bash tools/setup.sh test &&
    stage "prepare (builds)" .venv/bin/python -m stacktools prepare &&
    stage "L0 lint" make --no-print-directory lint-only &&
    stage "pytest" pytest_levels
} || status=$?
table >&2
exit "$status"
