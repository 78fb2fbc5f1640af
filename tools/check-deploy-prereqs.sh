#!/usr/bin/env bash
# Fails at once, naming every missing piece, when this machine cannot deploy to kind.
set -uo pipefail
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2"); }
need docker "container engine that runs the kind nodes and builds the service images (https://docs.docker.com/engine/install/)"
need kind "creates the local cluster (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need helm "installs the Istio, MongoDB operator, kube-prometheus-stack and Dagster charts (https://helm.sh/docs/intro/install/)"
need kubectl "talks to the cluster (https://kubernetes.io/docs/tasks/tools/)"
if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine: \`docker info\` cannot reach one (start Docker, or check DOCKER_HOST)")
fi
if ((${#missing[@]})); then
  echo "deploy: cannot deploy to kind on this machine; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "deploy: to test without a cluster, run \`make test\`." >&2
  exit 1
fi
echo "deploy: docker, kind, helm and kubectl found"
