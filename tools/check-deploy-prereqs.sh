#!/usr/bin/env bash
# Fails at once, naming every missing piece, when this machine cannot deploy to kind.
# Runs before anything is installed (bash 3.2 and a stock macOS or Debian are enough).
set -uo pipefail
# The oldest kind that supports the pinned node image (inventories/local: kind_node_image,
# the default image of kind v0.32.0); stacktools.builds.kind.KIND_MINIMUM, checked by tests.
KIND_MINIMUM=v0.32.0
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2"); }
need docker "container engine that runs the kind nodes and builds the service images (https://docs.docker.com/engine/install/)"
need kind "creates the local cluster, $KIND_MINIMUM or newer (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need helm "installs the Istio, MongoDB operator, kube-prometheus-stack, Dagster and metrics-server charts (https://helm.sh/docs/intro/install/)"
need kubectl "talks to the cluster (https://kubernetes.io/docs/tasks/tools/)"
if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine: \`docker info\` cannot reach one (start Docker, or check DOCKER_HOST)")
fi
if command -v kind >/dev/null 2>&1; then
  found=$(kind version 2>&1 | sed -n 1p)
  if [[ "$found" =~ v([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
    have=("${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}")
    [[ "$KIND_MINIMUM" =~ v([0-9]+)\.([0-9]+)\.([0-9]+) ]]
    want=("${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}")
    older=0
    for i in 0 1 2; do
      if ((have[i] != want[i])); then
        ((have[i] < want[i])) && older=1
        break
      fi
    done
    if ((older)); then
      missing+=("kind $KIND_MINIMUM or newer: found v${have[0]}.${have[1]}.${have[2]}; the node image kindest/node:v1.36.1 is built for kind $KIND_MINIMUM and older releases cannot load images into it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
    fi
  else
    missing+=("kind $KIND_MINIMUM or newer: \`kind version\` printed '$found'")
  fi
fi
if ((${#missing[@]})); then
  echo "deploy: cannot deploy to kind on this machine; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "deploy: to test without a cluster, run \`make test\`." >&2
  exit 1
fi
echo "deploy: docker, kind ($found), helm and kubectl found"
