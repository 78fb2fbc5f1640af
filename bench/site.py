"""Benchmark of the main job (`make bench`; prints numbers, asserts nothing).

On one local control plane (the one of `make test`: etcd, kube-apiserver,
kube-controller-manager v1.36.3, istiod; no node; the five Helm releases installed from the
pinned local charts as in inventories/controlplane, with the set-up step's Helm 3 on PATH),
side by side in the same run:

1. `ansible-playbook playbooks/site.yml` on the empty cluster (converge), again (the no-op
   rerun), `--check --diff` on the converged cluster, and `playbooks/teardown.yml`;
2. `kubectl apply --server-side` of exactly the objects the roles render for the same
   inventory (tests/render/render.yml), a second apply (no-op), `kubectl diff --server-side`
   (the dry run), and `kubectl delete` of the same objects (the roles' own objects only: the
   charts' objects are Helm's, which the site.yml side installs and the kubectl side does not).

It prints each pair and the ratio, and the slowest tasks of each playbook run (Ansible's
`ansible.posix.profile_tasks` callback). The objects differ only in the generated secrets'
values (render.yml gives test values where the roles generate them).

    .venv/bin/python bench/site.py [--rounds 1] [--top 8]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from stacktools.builds import controlplane, helm, istiod
from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.istiod import Istiod

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventories" / "controlplane"
VENV_BIN = Path(sys.executable).parent
# Namespaced first and cluster-scoped last would not matter to kubectl; the order of the
# documents is the roles' order, as site.yml applies them.
ROLES = ("istio", "mongodb", "monitoring", "apiserver", "dagster", "gateway")
TASK_LINE = re.compile(r"^(?P<task>.+?) -+ (?P<seconds>\d+\.\d+)s$")


@dataclass
class Timed:
    seconds: float
    output: str


def run(argv: list[str], env: dict[str, str], *, check: bool = True) -> Timed:
    print(
        f"  running: {' '.join(Path(a).name if a.startswith('/') else a for a in argv[:6])}",
        flush=True,
    )
    began = time.monotonic()
    done = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=3600
    )
    seconds = time.monotonic() - began
    output = done.stdout + done.stderr
    print(f"    {seconds:.1f} s, exit {done.returncode}", flush=True)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])}... failed ({done.returncode}):\n{output[-4000:]}")
    return Timed(seconds, output)


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
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), name, *extra]
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


def kubectl(env: dict[str, str], *args: str, check: bool = True) -> Timed:
    binary = controlplane.binaries().kubectl
    return run([str(binary), "--kubeconfig", env["K8S_AUTH_KUBECONFIG"], *args], env, check=check)


def prepare_cluster(env: dict[str, str]) -> None:
    """What molecule/controlplane/prepare.yml does: the istio role (CRDs, releases), istiod."""
    playbook("molecule/controlplane/prepare.yml", env)


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.1f}x" if b > 0 else "  n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=8, help="slowest tasks to list per run")
    args = parser.parse_args()
    controlplane.binaries()
    istiod.binary()
    helm.binary(3)
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        cluster = Path(tmp) / "cluster"
        env = ansible_env(cluster)
        with ControlPlane(cluster):
            try:
                return measure(env, Path(tmp), args.top)
            finally:
                # prepare.yml starts istiod detached (it outlives a playbook run); stop it here.
                Istiod.attach(cluster / "istiod").stop()


def measure(env: dict[str, str], tmp: Path, top: int) -> int:
    prepare_cluster(env)
    bundle = render(env, tmp / "rendered")
    count = sum(1 for doc in yaml.safe_load_all(bundle.read_text()) if doc)
    print(f"objects: {count} rendered for inventories/controlplane", flush=True)

    ansible_runs = {
        "converge": playbook("playbooks/site.yml", env),
        "no-op rerun": playbook("playbooks/site.yml", env),
        "check mode": playbook("playbooks/site.yml", env, "--check", "--diff"),
        "teardown": playbook("playbooks/teardown.yml", env),
    }
    namespaces = [
        f"namespace/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(bundle.read_text())
        if doc and doc["kind"] == "Namespace"
    ]
    # Both sides start from the same state: the namespaces the teardown deleted are gone.
    kubectl(env, "wait", "--for=delete", "--timeout=600s", *namespaces, check=False)
    # --force-conflicts as the roles' server_side_apply.force_conflicts: istiod co-manages
    # the GatewayClass (.spec.description).
    server_side = (
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=bench",
        "-f",
        str(bundle),
    )
    kubectl_runs = {
        "apply": kubectl(env, *server_side),
        "apply again": kubectl(env, *server_side),
        # kubectl diff exits 1 when it finds differences; none are expected after apply.
        "diff --server-side": kubectl(env, "diff", "--server-side", "-f", str(bundle), check=False),
        "delete": kubectl(env, "delete", "--wait=true", "-f", str(bundle)),
    }

    print("\n| step | site.yml | kubectl (same objects) | ratio | Ansible recap |")
    print("|---|---|---|---|---|")
    for (name, played), (command, applied) in zip(
        ansible_runs.items(), kubectl_runs.items(), strict=True
    ):
        print(
            f"| {name} | {played.seconds:.1f} s | {command}: {applied.seconds:.1f} s "
            f"| {ratio(played.seconds, applied.seconds)} | {changed(played.output)} |"
        )
    for name, played in ansible_runs.items():
        print(f"\nslowest tasks, {name} ({played.seconds:.1f} s):")
        for task, seconds in slowest(played.output, top):
            print(f"  {seconds:6.2f} s  {task}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
