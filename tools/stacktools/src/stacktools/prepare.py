"""The set-up step of ``make test``: build everything the tests use, before any test runs.

Builds run here, with progress on stderr and no per-test timeout, so that a cold or busy
machine cannot fail a test by building inside it. Each step is cheap when its output is
cached already (keyed by what builds it). ``python -m stacktools prepare --list`` names them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stacktools.builds import (
    actionlint,
    ansible_matrix,
    charts,
    cni,
    collection,
    containerd,
    controlplane,
    coredns,
    diskspace,
    ferretdb,
    helm,
    images,
    istiod,
    kind,
    kubernetes_core,
    metrics_server,
    node_images,
    node_packages,
    pause,
    registry,
    runc,
    service_images,
    traefik,
)
from stacktools.builds.gobuild import BuildError
from stacktools.servers import dockerd, postgresql


@dataclass(frozen=True)
class Step:
    """One thing the set-up step builds: its name, what uses it, and how to build it."""

    name: str
    used_by: str
    ensure: Callable[[], object]


def _helm() -> str:
    return ", ".join(f"{helm.binary_version(path)} at {path}" for path in helm.ensure_binaries())


def _charts() -> str:
    found = charts.ensure_charts()
    stand_ins = [item.describe() for item in found.values() if item.stand_in]
    where = {str(item.path.parent) for item in found.values()}
    note = f"; {charts.STAND_IN_NOTE}: {stand_ins}" if stand_ins else ""
    return f"{len(found)} charts in {', '.join(sorted(where))}{note}"


STEPS: tuple[Step, ...] = (
    # First: a filesystem that fills half-way fails a build or the node level far from the cause.
    Step("disk-space", "every level: the caches and the tests' files", diskspace.check),
    Step("ferretdb", "L1 services, L4.5 backends", ferretdb.ensure_binary),
    Step(
        "controlplane", "L3 and above", lambda: controlplane.ensure_binaries().kube_apiserver.parent
    ),
    Step("istiod", "L4", istiod.ensure_binary),
    Step(
        "kind",
        "L0 deploy checks (kind version, node image pin)",
        lambda: ", ".join(str(path) for path in kind.ensure_binaries()),
    ),
    Step("helm", "L2 charts (Helm 3 and 4), L3 Helm releases", _helm),
    Step("charts", "L2 charts, L3 Helm releases", _charts),
    Step(
        "kubernetes.core",
        "L4.5 charts: Helm 4 installs (kubernetes.core 6.6.0 from ansible 14.5.0 on PyPI)",
        kubernetes_core.ensure_collection,
    ),
    Step("traefik", "L4.5 dataplane", traefik.ensure_binary),
    Step("engine", "L4.5 images: the Docker engine", dockerd.ensure_engine),
    Step("image-base", "L4.5 images: official or stand-in base", images.base_for_tests),
    Step("images", "L4.5 images: apiserver and pipeline", images.ensure_images),
    Step(
        "registry",
        "L4.5 images: the registry make push-images is tested with",
        registry.ensure_binary,
    ),
    Step("collection", "L0, L2 (the collection as users install it)", collection.ensure_collection),
    Step("actionlint", "L0 (the GitHub Actions workflows)", actionlint.ensure_binary),
    Step("ansible-core", "L2 (the collection's ansible-core range)", ansible_matrix.ensure_venvs),
    # Not built: the system's package, checked here so that a missing one is named up front.
    Step("postgresql", "L1 FerretDB --handler=pg, bench", postgresql.check_installed),
    Step("node-packages", "L4.5 node (Debian: nft, libseccomp, gcc)", node_packages.ensure),
    Step("containerd", "L4.5 node", containerd.ensure_binaries),
    Step("runc", "L4.5 node", runc.ensure_binary),
    Step("cni-plugins", "L4.5 node", cni.ensure_directory),
    Step("pause", "L4.5 node", pause.ensure_binary),
    Step("coredns", "L4.5 node", coredns.ensure_binary),
    Step("metrics-server", "L4.5 node", metrics_server.ensure_binary),
    Step("node-images", "L4.5 node", node_images.ensure_images),
    Step("node-service-images", "L4.5 node: the services' images", service_images.ensure_archives),
)


def _format(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def prepare(names: Sequence[str] = ()) -> list[tuple[str, float]]:
    """Run the steps named (all by default); return (name, seconds) for each."""
    unknown = set(names) - {step.name for step in STEPS}
    if unknown:
        msg = f"unknown step(s) {sorted(unknown)}; known: {[s.name for s in STEPS]}"
        raise BuildError(msg)
    timings: list[tuple[str, float]] = []
    selected = [step for step in STEPS if not names or step.name in names]
    for index, step in enumerate(selected, 1):
        print(
            f"prepare [{index}/{len(selected)}] {step.name} ({step.used_by}) ...",
            file=sys.stderr,
            flush=True,
        )
        began = time.monotonic()
        result = step.ensure()
        elapsed = time.monotonic() - began
        timings.append((step.name, elapsed))
        print(
            f"prepare [{index}/{len(selected)}] {step.name}: {result} ({_format(elapsed)})",
            file=sys.stderr,
            flush=True,
        )
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools prepare",
        description="Build (or reuse) everything the tests use. Runs before pytest.",
    )
    parser.add_argument("steps", nargs="*", help="only these steps (default: all)")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    args = parser.parse_args(argv)
    if args.list:
        for step in STEPS:
            print(f"{step.name:14} used by {step.used_by}")
        return 0
    try:
        timings = prepare(args.steps)
    except BuildError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    total = sum(seconds for _, seconds in timings)
    print(f"prepare: done in {_format(total)}", file=sys.stderr)
    return 0
