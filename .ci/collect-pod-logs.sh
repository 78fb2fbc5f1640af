#!/usr/bin/env bash
# After a failed kind job: what a maintainer needs to see why, written under OUT_DIR for the
# workflow to upload as an artifact. Uses kubectl's current kubeconfig (KUBECONFIG) and, when
# KUBE_CONTEXT is set, that context; never fails itself (a half-created cluster still gives
# whatever it can).
#   .ci/collect-pod-logs.sh OUT_DIR [KIND_CLUSTER_NAME]
# Writes: pods.txt, events.txt, nodes.txt; for every pod that is not Running with all
# containers ready (and not Succeeded) or that restarted: <namespace>/<pod>.describe.txt,
# <namespace>/<pod>.log (all containers) and <namespace>/<pod>.previous.log; with a kind
# cluster name, `kind export logs` (node, kubelet and containerd logs) under kind/.
set -uo pipefail

out=${1:?usage: collect-pod-logs.sh OUT_DIR [KIND_CLUSTER_NAME]}
cluster=${2:-}
mkdir -p "$out"
kube=(kubectl)
if [[ -n "${KUBE_CONTEXT:-}" ]]; then
  kube+=(--context "$KUBE_CONTEXT")
fi

"${kube[@]}" get pods --all-namespaces -o wide >"$out/pods.txt" 2>&1
"${kube[@]}" get events --all-namespaces --sort-by=.lastTimestamp >"$out/events.txt" 2>&1
"${kube[@]}" describe nodes >"$out/nodes.txt" 2>&1

# namespace<TAB>pod of every pod that is neither Succeeded nor Running with every container
# ready (Pending, Failed, crash-looping, unready), or that restarted.
# shellcheck disable=SC2016 # a Go template for kubectl, not a shell expression
template='{{range .items}}{{$ok := eq .status.phase "Running"}}{{$restarts := 0}}{{range .status.containerStatuses}}{{if not .ready}}{{$ok = false}}{{end}}{{if .restartCount}}{{$restarts = 1}}{{end}}{{end}}{{if or (and (ne .status.phase "Succeeded") (not $ok)) $restarts}}{{.metadata.namespace}}{{"\t"}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}'
failed=$("${kube[@]}" get pods --all-namespaces -o go-template="$template" 2>>"$out/errors.txt")
count=0
while IFS=$'\t' read -r namespace pod; do
  [[ -n "$pod" ]] || continue
  count=$((count + 1))
  mkdir -p "$out/$namespace"
  "${kube[@]}" -n "$namespace" describe pod "$pod" >"$out/$namespace/$pod.describe.txt" 2>&1
  "${kube[@]}" -n "$namespace" logs "$pod" --all-containers --prefix --timestamps \
    >"$out/$namespace/$pod.log" 2>&1
  "${kube[@]}" -n "$namespace" logs "$pod" --all-containers --prefix --timestamps --previous \
    >"$out/$namespace/$pod.previous.log" 2>&1
done <<<"$failed"
echo "collect-pod-logs: $count failed or restarted pod(s); logs in $out"

if [[ -n "$cluster" ]] && command -v kind >/dev/null 2>&1; then
  kind export logs "$out/kind" --name "$cluster" >/dev/null 2>&1 ||
    echo "collect-pod-logs: kind export logs for $cluster failed" >>"$out/errors.txt"
fi
exit 0
