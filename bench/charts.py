"""Benchmark of the Helm releases (`make bench`; prints numbers, asserts nothing).

For every release the roles install, with exactly what the role's Helm task passes for
inventories/controlplane, what the controlplane scenario installs (tests/render/render.yml:
values combined with ``*_helm_extra_values``, and the role's flags: there the chart's hooks are
off, because hook Jobs need running pods), from the pinned local charts
(stacktools.builds.charts):

1. ``helm template`` with Helm 3 and with Helm 4 (the set-up step's clients), the median of
   ``--rounds`` runs each;
2. on a fresh local control plane (etcd, kube-apiserver, kube-controller-manager v1.36.3; no
   node, so nothing waits for pods), ``helm install`` then ``helm uninstall`` with Helm 3, the
   release's namespace created first and the CRDs the roles apply themselves (prometheus-operator
   v0.93.1, for kube-prometheus-stack, which the role installs with ``--skip-crds``) applied
   beforehand, as the roles do.

    .venv/bin/python bench/charts.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds import charts, controlplane, helm
from stacktools.cluster.crds import crds_root
from stacktools.cluster.render import unpack
from stacktools.servers.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
INVENTORY = "controlplane"
ROLES = ("istio", "mongodb", "monitoring", "dagster")  # site.yml's order


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: Path
    values: Path
    flags: tuple[str, ...]


def render(workdir: Path) -> list[Release]:
    """What each role's Helm task passes for the inventory (tests/render/render.yml)."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "RENDER_DIR": str(workdir),
        # The roles read a local chart's Chart.yaml with `helm show chart`.
        "PATH": os.pathsep.join(
            (str(helm.bin_dir(3)), str(Path(sys.executable).parent), os.environ.get("PATH", ""))
        ),
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            f"inventories/{INVENTORY}",
            "tests/render/render.yml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        sys.exit(f"tests/render/render.yml failed:\n{(done.stdout + done.stderr)[-4000:]}")
    unpack(workdir)
    found = charts.charts()
    releases = []
    paths = sorted(
        workdir.glob("*/helm/*.release.json"),
        key=lambda path: (ROLES.index(path.parent.parent.name), path.name),
    )
    for path in paths:
        spec = json.loads(path.read_text())
        name = path.name.removesuffix(".release.json")
        flags = [] if spec["skip_crds"] else ["--include-crds"]
        flags += ["--skip-schema-validation"] if spec["skip_schema_validation"] else []
        flags += ["--no-hooks"] if spec["disable_hook"] else []
        releases.append(
            Release(
                name,
                spec["namespace"],
                found[name].path,
                path.with_name(f"{name}.values.yaml"),
                tuple(flags),
            )
        )
    return releases


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=900)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])}... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def template_seconds(binary: Path, release: Release, rounds: int) -> float:
    argv = [
        str(binary),
        "template",
        release.name,
        str(release.chart),
        "--namespace",
        release.namespace,
        "--values",
        str(release.values),
        *release.flags,
    ]
    return statistics.median(timed(argv) for _ in range(rounds))


def install_and_uninstall(releases: list[Release], workdir: Path) -> dict[str, tuple[float, float]]:
    helm3 = helm.binary(3)
    kubectl = str(controlplane.binaries().kubectl)
    found: dict[str, tuple[float, float]] = {}
    with ControlPlane(workdir / "cluster") as plane:
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        crds = crds_root() / "prometheus-operator-v0.93.1"
        timed([kubectl, "apply", "--server-side", "-f", str(crds)], env)
        for namespace in sorted({release.namespace for release in releases}):
            timed([kubectl, "create", "namespace", namespace], env)
        for release in releases:
            # --include-crds is a template flag; install applies crds/ unless --skip-crds.
            flags = [flag for flag in release.flags if flag != "--include-crds"]
            if "--include-crds" not in release.flags:
                flags.append("--skip-crds")
            common = ["--namespace", release.namespace]
            install = timed(
                [
                    str(helm3),
                    "install",
                    release.name,
                    str(release.chart),
                    *common,
                    "--values",
                    str(release.values),
                    *flags,
                ],
                env,
            )
            found[release.name] = (install, 0.0)
        for release in reversed(releases):
            uninstall = timed(
                [str(helm3), "uninstall", release.name, "--namespace", release.namespace], env
            )
            found[release.name] = (found[release.name][0], uninstall)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="helm template runs per client")
    args = parser.parse_args()
    clients = {major: helm.binary(major) for major in (3, 4)}
    with tempfile.TemporaryDirectory(prefix="bench-charts-") as tmp:
        workdir = Path(tmp)
        began = time.monotonic()
        releases = render(workdir / "rendered")
        seconds = time.monotonic() - began
        print(f"rendered the roles' values (inventories/{INVENTORY}): {seconds:.1f} s")
        for chart in charts.charts().values():
            print(f"  chart {chart.describe()}")
            if chart.stand_in:
                print(f"  NOTE: {charts.STAND_IN_NOTE}")
        templates = {
            release.name: {
                major: template_seconds(binary, release, args.rounds)
                for major, binary in clients.items()
            }
            for release in releases
        }
        installs = install_and_uninstall(releases, workdir)
    versions = {major: helm.binary_version(binary) for major, binary in clients.items()}
    print(
        f"\n{'release':<24} {'template ' + versions[3]:>16} {'template ' + versions[4]:>16}"
        f" {'install':>9} {'uninstall':>10}   (seconds; template: median of {args.rounds})"
    )
    for release in releases:
        install, uninstall = installs[release.name]
        helm3, helm4 = templates[release.name][3], templates[release.name][4]
        print(f"{release.name:<24} {helm3:16.2f} {helm4:16.2f} {install:9.2f} {uninstall:10.2f}")
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} cores while measuring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
