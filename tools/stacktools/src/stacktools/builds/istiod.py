"""istiod (Istio's ``pilot-discovery``) built from tools/istiod: see the version note in its
go.mod (Istio master, because the Go module proxy here does not serve Istio 1.30.3)."""

from __future__ import annotations

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

# Pinned in tools/istiod/go.mod (where the reason is recorded); a test checks they agree.
ISTIO_MODULE_VERSION = "v0.0.0-20260827124520-eed52ebb66ad"
ISTIO_VERSION_LABEL = "1.31-dev"  # the module's VERSION file says 1.31
GATEWAY_API_BUNDLE = "v1.6.1"  # this istiod requires TCPRoute CRDs of bundle >= v1.6.0
GO_MINIMUM = (1, 26)
PACKAGE = "istio.io/istio/pilot/cmd/pilot-discovery"
BUILD_FLAGS = (
    "-mod=readonly",
    "-ldflags=-s -w"
    f" -X istio.io/istio/pkg/version.buildVersion={ISTIO_VERSION_LABEL}"
    f" -X istio.io/istio/pkg/version.buildGitRevision={ISTIO_MODULE_VERSION.rsplit('-', 1)[1]}"
    " -X istio.io/istio/pkg/version.buildStatus=Clean",
)
BUILD_ENV = {"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-buildvcs=false"}


def binary_path() -> Path:
    module = repo_go_module("istiod")
    key = source_hash(module, (BUILD_FLAGS, sorted(BUILD_ENV.items())))
    return cache_dir() / "bin" / f"istiod-{ISTIO_VERSION_LABEL}-{key}" / "pilot-discovery"


def ensure_binary() -> Path:
    """The cached pilot-discovery, building it first when missing (cold: several minutes)."""
    target = binary_path()
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "istiod.lock"):
        if not target.is_file():
            require_go_version(GO_MINIMUM, f"istiod ({ISTIO_VERSION_LABEL})")
            go_build(repo_go_module("istiod"), PACKAGE, target, env=BUILD_ENV, flags=BUILD_FLAGS)
    return target


def binary() -> Path:
    """The cached binary; :class:`BuildMissingError` when the set-up step has not built it."""
    target = binary_path()
    require_built([target], f"istiod ({ISTIO_VERSION_LABEL})")
    return target
