"""Benchmark of the main job (`make bench`; prints numbers, asserts nothing).

On one local control plane (the one of `make test`: etcd, kube-apiserver,
kube-controller-manager v1.36.3, istiod; no node; the five Helm releases installed from the
pinned local charts as in inventories/controlplane, with the set-up step's Helm 3 on PATH),
side by side in the same run:

1. `ansible-playbook playbooks/site.yml` on the empty cluster (converge), again (the no-op
   rerun), `--check --diff` on the converged cluster, and `playbooks/teardown.yml`;
2. `kubectl apply --server-side` of exactly the objects the roles render for the same
   inventory (tests/render/render.yml) and the CRD files the roles apply (the Gateway API
   experimental bundle, the MongoDBCommunity CRD, the ten prometheus-operator CRDs), a second
   apply (no-op), `kubectl diff --server-side` (the dry run), and `kubectl delete` of the
   rendered objects (the teardown keeps the CRDs; the roles' own objects only: the charts'
   objects are Helm's, which the site.yml side installs and the kubectl side does not).

It prints each pair and the ratio, and the slowest tasks of each playbook run (Ansible's
`ansible.posix.profile_tasks` callback). The objects differ only in the generated secrets'
values (render.yml gives test values where the roles generate them).

    .venv/bin/python bench/site.py [--rounds 1] [--top 8]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from stacktools.builds import controlplane, helm, istiod
from stacktools.cluster.crds import PINNED, PROMETHEUS_OPERATOR_ALL, crds_root
from stacktools.cluster.render import unpack
from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.istiod import Istiod

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventories" / "controlplane"
VENV_BIN = Path(sys.executable).parent
# Namespaced first and cluster-scoped last would not matter to kubectl; the order of the
# documents is the roles' order, as site.yml applies them.
ROLES = ("istio", "mongodb", "monitoring", "apiserver", "dagster", "gateway")
# --helm-off: the aim is stated with the Helm releases off (inventories/node's toggles;
# without their Services the routes to Grafana and Dagster get no verdict, so none is awaited).
HELM_OFF = (
    "-e",
    '{"istio_helm_enabled": false, "mongodb_operator_enabled": false,'
    ' "monitoring_helm_enabled": false, "dagster_helm_enabled": false,'
    ' "gateway_wait_routes": false}',
)
EXTRA: list[str] = []
TASK_LINE = re.compile(r"^(?P<task>.+?) -+ (?P<seconds>\d+\.\d+)s$")


@dataclass
class Timed:
    seconds: float
    output: str
    cpu: float  # user + system seconds of the command and everything it started and waited for
    load: float  # the 1-minute load average when the command ended


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], env: dict[str, str], *, check: bool = True, quiet: bool = False) -> Timed:
    if not quiet:
        shown = " ".join(Path(a).name if a.startswith("/") else a for a in argv[:6])
        print(f"  running: {shown}", flush=True)
    began, cpu_before = time.monotonic(), children_cpu()
    done = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=3600
    )
    seconds, cpu = time.monotonic() - began, children_cpu() - cpu_before
    load = os.getloadavg()[0]
    output = done.stdout + done.stderr
    if not quiet:
        print(
            f"    {seconds:.1f} s ({cpu:.1f} s CPU), load {load:.1f}, exit {done.returncode}",
            flush=True,
        )
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])}... failed ({done.returncode}):\n{output[-4000:]}")
    return Timed(seconds, output, cpu, load)


def ansible_env(cluster: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
        "PROFILE_TASKS_SORT_ORDER": "descending",
        "ANSIBLE_NOCOLOR": "1",
        "STACK_CONTROLPLANE_DIR": str(cluster),
        "K8S_AUTH_KUBECONFIG": str(cluster / "kubeconfig"),
        "PATH": os.pathsep.join((str(helm.bin_dir(3)), str(VENV_BIN), os.environ.get("PATH", ""))),
    }


def playbook(name: str, env: dict[str, str], *extra: str) -> Timed:
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), name, *EXTRA, *extra]
    return run(argv, env)


def slowest(output: str, top: int) -> list[tuple[str, float]]:
    """The profile_tasks summary at the end of a run: (task, seconds), slowest first."""
    tasks = []
    for line in output.splitlines():
        match = TASK_LINE.match(line.strip())
        if match:
            tasks.append((match["task"].strip(), float(match["seconds"])))
    return sorted(tasks, key=lambda item: -item[1])[:top]


def changed(output: str) -> str:
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", output)
    return f"ok={match[1]} changed={match[2]}" if match else "no recap"


def render(env: dict[str, str], out: Path) -> Path:
    """The roles' manifests for inventories/controlplane, as one multi-document file."""
    render_env = {**env, "RENDER_DIR": str(out)}
    render_env.pop("ANSIBLE_CALLBACKS_ENABLED")
    playbook("tests/render/render.yml", render_env)
    unpack(out)
    docs = [
        doc
        for role in ROLES
        for path in sorted((out / role).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    bundle = out / "all.yaml"
    bundle.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return bundle


def crd_files() -> list[Path]:
    """The CRD files inventories/controlplane has the roles apply (its *_crds_dir settings)."""
    root = crds_root()
    roles_files = [
        item for item in PINNED if item.path.startswith(("gateway-api-", "mongodb/"))
    ] + list(PROMETHEUS_OPERATOR_ALL)
    return [root / item.path for item in roles_files]


def kubectl(env: dict[str, str], *args: str, check: bool = True, quiet: bool = False) -> Timed:
    binary = controlplane.binaries().kubectl
    argv = [str(binary), "--kubeconfig", env["K8S_AUTH_KUBECONFIG"], *args]
    return run(argv, env, check=check, quiet=quiet)


def settle(env: dict[str, str], namespaces: list[str], timeout: float = 600) -> None:
    """Wait until none of these namespaces is Terminating (each gone, or kept and Active).

    `kubectl wait --for=delete` returned at once on a busy machine while the namespace
    controller was still finalizing; an apply then raced the deletion (namespaces not found).
    """
    deadline = time.monotonic() + timeout
    while True:
        listed = kubectl(
            env,
            "get",
            *namespaces,
            "--ignore-not-found",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{'\\n'}{end}",
            quiet=True,
        ).output.split()
        terminating = [entry for entry in listed if entry.endswith("=Terminating")]
        if not terminating:
            return
        if time.monotonic() > deadline:
            sys.exit(f"namespaces still terminating after {timeout:.0f} s: {terminating}")
        time.sleep(1)


def apply_until_done(env: dict[str, str], argv: tuple[str, ...], attempts: int = 5) -> Timed:
    """The first apply, repeated as a kubectl user would when it fails; every attempt counts.

    On a busy control plane, objects applied right after their namespace in the same command
    can be refused ("namespaces ... not found"): the admission check has not seen the new
    namespace yet. The roles apply the namespace in a call of its own first.
    """
    total = Timed(0.0, "", 0.0, 0.0)
    for attempt in range(1, attempts + 1):
        done = kubectl(env, *argv, check=attempt == attempts)
        total = Timed(total.seconds + done.seconds, done.output, total.cpu + done.cpu, done.load)
        if "Error from server" not in done.output and "error:" not in done.output:
            break
        print(f"    attempt {attempt} refused some objects; applying again", flush=True)
        time.sleep(1)
    return total


def prepare_cluster(env: dict[str, str]) -> None:
    """What molecule/controlplane/prepare.yml does: the istio role (CRDs, releases), istiod."""
    playbook("molecule/controlplane/prepare.yml", env)


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.1f}x" if b > 0 else "  n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=8, help="slowest tasks to list per run")
    parser.add_argument(
        "--kubectl-only",
        action="store_true",
        help="only the kubectl side (for a run whose kubectl side failed; not side by side)",
    )
    parser.add_argument(
        "--helm-off", action="store_true", help="the Helm releases off (the issue's aim)"
    )
    args = parser.parse_args()
    if args.helm_off:
        EXTRA.extend(HELM_OFF)
    controlplane.binaries()
    istiod.binary()
    helm.binary(3)
    print(f"load average at start: {' '.join(f'{n:.1f}' for n in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        cluster = Path(tmp) / "cluster"
        env = ansible_env(cluster)
        with ControlPlane(cluster):
            try:
                return measure(env, Path(tmp), args.top, kubectl_only=args.kubectl_only)
            finally:
                # prepare.yml starts istiod detached (it outlives a playbook run); stop it here.
                Istiod.attach(cluster / "istiod").stop()


def kubectl_side(env: dict[str, str], bundle: Path) -> dict[str, Timed]:
    # CRDs first, as the roles apply them; one kubectl command for everything.
    files = [arg for path in (*crd_files(), bundle) for arg in ("-f", str(path))]
    # --force-conflicts as the roles' server_side_apply.force_conflicts: istiod co-manages
    # the GatewayClass (.spec.description).
    server_side = ("apply", "--server-side", "--force-conflicts", "--field-manager=bench", *files)
    runs = {
        "apply": apply_until_done(env, server_side),
        "apply again": kubectl(env, *server_side),
        # kubectl diff exits 1 when it finds differences; none are expected after apply.
        "diff --server-side": kubectl(
            env,
            "diff",
            "--server-side",
            "--force-conflicts",
            "--field-manager=bench",
            *files,
            check=False,
        ),
        "delete": kubectl(env, "delete", "--wait=true", "-f", str(bundle)),
    }
    # kubectl diff's exit status 1 means differences; an error would make its time meaningless.
    if any(mark in runs["diff --server-side"].output for mark in ("Error from server", "error:")):
        sys.exit(f"kubectl diff failed:\n{runs['diff --server-side'].output[-4000:]}")
    return runs


def measure(env: dict[str, str], tmp: Path, top: int, *, kubectl_only: bool = False) -> int:
    prepare_cluster(env)
    bundle = render(env, tmp / "rendered")
    count = sum(1 for doc in yaml.safe_load_all(bundle.read_text()) if doc)
    print(
        f"objects: {count} rendered for inventories/controlplane, and the CRDs of "
        f"{len(crd_files())} files",
        flush=True,
    )

    if kubectl_only:
        for name, applied in kubectl_side(env, bundle).items():
            print(
                f"| {name} | {applied.seconds:.1f} s "
                f"({applied.cpu:.1f} s CPU, load {applied.load:.1f}) |"
            )
        return 0
    ansible_runs = {
        "converge": playbook("playbooks/site.yml", env),
        "no-op rerun": playbook("playbooks/site.yml", env),
        "check mode": playbook("playbooks/site.yml", env, "--check", "--diff"),
        "teardown": playbook("playbooks/teardown.yml", env),
    }
    # Printed before the kubectl side runs, so that its failure does not lose them.
    for name, played in ansible_runs.items():
        print(f"\nslowest tasks, {name} ({played.seconds:.1f} s):")
        for task, seconds in slowest(played.output, top):
            print(f"  {seconds:6.2f} s  {task}", flush=True)
    namespaces = [
        f"namespace/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(bundle.read_text())
        if doc and doc["kind"] == "Namespace"
    ]
    # Both sides start from the same state: the namespaces the teardown deleted are gone.
    settle(env, namespaces)
    kubectl_runs = kubectl_side(env, bundle)

    # Wall time depends on what else the machine runs; CPU seconds (the command and every
    # process it started: ansible-playbook, its workers and modules; kubectl) much less so.
    print("\n| step | site.yml s (CPU s, load) | kubectl, same objects s (CPU s) | ratio | recap |")
    print("|---|---|---|---|---|")
    for (name, played), (command, applied) in zip(
        ansible_runs.items(), kubectl_runs.items(), strict=True
    ):
        print(
            f"| {name} | {played.seconds:.1f} ({played.cpu:.1f}, {played.load:.1f}) "
            f"| {command}: {applied.seconds:.1f} ({applied.cpu:.1f}) "
            f"| {ratio(played.seconds, applied.seconds)} | {changed(played.output)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
