"""Traefik Proxy (``github.com/traefik/traefik/v3``), the Gateway API data plane of the
``dataplane`` level, built from tools/traefik.

Why Traefik: it builds from the Go module proxy alone (Istio's proxy is Envoy, C++, which no
registry here serves), and its Gateway API conformance report for v3.6
(kubernetes-sigs/gateway-api, conformance/reports/v1.4.0/traefik-traefik,
experimental-v3.6.0-default-report.yaml) passes the GATEWAY-HTTP core profile (33 tests: path
prefix and header matches, weighted backendRefs, cross-namespace backends through
ReferenceGrant) and the extended ``HTTPRoutePathRewrite`` feature (``URLRewrite`` with
``ReplacePrefixMatch``). TCPRoute has no conformance profile; Traefik serves it with
``experimentalChannel``, and the dataplane tests prove it with the MongoDB wire protocol.

Pinned: v3.6.12, the newest v3.6 on the Go module proxy (2026-11-29); v3.7.x pulls dependency
versions the proxy here refuses. ``go install`` refuses modules with ``replace`` lines, so
tools/traefik is a wrapper module that repeats Traefik's own ``replace`` and ``exclude`` lines.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stacktools.builds.gobuild import (
    file_lock,
    go_build,
    repo_go_module,
    require_built,
    require_go_version,
    source_hash,
)
from stacktools.paths import cache_dir

# Pinned in tools/traefik/go.mod; a test checks that both places agree.
TRAEFIK_VERSION = "v3.6.12"
GO_MINIMUM = (1, 25)  # Traefik v3.6.12 declares `go 1.25.0`
PACKAGE = "github.com/traefik/traefik/v3/cmd/traefik"
BUILD_FLAGS = (
    "-mod=readonly",
    f"-ldflags=-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK_VERSION}",
)
BUILD_ENV = {"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-buildvcs=false"}


def module_dir() -> Path:
    return repo_go_module("traefik")


def binary_path() -> Path:
    key = source_hash(module_dir(), (BUILD_FLAGS, sorted(BUILD_ENV.items())))
    return cache_dir() / "bin" / f"traefik-{TRAEFIK_VERSION}-{key}" / "traefik"


def ensure_binary() -> Path:
    """The cached traefik, building it first when missing (set-up step; cold: minutes)."""
    target = binary_path()
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "traefik.lock"):
        if not target.is_file():
            require_go_version(GO_MINIMUM, f"Traefik {TRAEFIK_VERSION}")
            go_build(module_dir(), PACKAGE, target, env=BUILD_ENV, flags=BUILD_FLAGS)
    return target


def binary() -> Path:
    """The cached binary; :class:`BuildMissingError` when the set-up step has not built it."""
    target = binary_path()
    require_built([target], f"Traefik {TRAEFIK_VERSION}")
    return target


def binary_version(path: Path) -> str:
    """The version ``traefik version`` prints, e.g. ``v3.6.12``."""
    out = subprocess.run([str(path), "version"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.strip().startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return out.stdout.strip()
