"""metrics-server (the ``metrics.k8s.io`` API the HorizontalPodAutoscaler reads), built from
``sigs.k8s.io/metrics-server``."""

from __future__ import annotations

from pathlib import Path

from stacktools.builds.gobuild import ModuleBuild

MODULE = "sigs.k8s.io/metrics-server"
# Pinned: the newest release on the Go module proxy (2026-11-29); built on the Kubernetes v0.36
# libraries, the cluster's minor.
VERSION = "v0.9.0"

BUILD = ModuleBuild(
    name="metrics-server",
    module=MODULE,
    version=VERSION,
    packages={"metrics-server": "./cmd/metrics-server"},
    env={"CGO_ENABLED": "0"},
    flags=(
        "-mod=readonly",
        f"-ldflags=-s -w -X k8s.io/client-go/pkg/version.gitVersion={VERSION}",
    ),
)


def ensure_binary() -> Path:
    return BUILD.ensure()["metrics-server"]


def binary() -> Path:
    return BUILD.built()["metrics-server"]
