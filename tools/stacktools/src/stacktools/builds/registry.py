"""A container registry for the push path of the images level: ``crane registry serve`` from
go-containerregistry (Google's implementation of the OCI distribution API that ko and crane's
own tests push to), built from the Go module proxy like FerretDB."""

from __future__ import annotations

from pathlib import Path

from stacktools.builds.gobuild import file_lock, go_build, module_source, require_built
from stacktools.paths import cache_dir

MODULE = "github.com/google/go-containerregistry"
# Pinned: the newest release on the Go module proxy on 2026-11-29.
VERSION = "v0.22.1"
BUILD_ENV = {"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-buildvcs=false -mod=readonly"}


def binary_path() -> Path:
    return cache_dir() / "bin" / f"crane-{VERSION}"


def ensure_binary() -> Path:
    """The cached crane binary, building it first when missing (set-up step)."""
    target = binary_path()
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "crane.lock"):
        if not target.is_file():
            go_build(module_source(MODULE, VERSION), "./cmd/crane", target, env=BUILD_ENV)
    return target


def binary() -> Path:
    """The cached binary; :class:`BuildMissingError` when the set-up step has not built it."""
    target = binary_path()
    require_built([target], f"crane {VERSION} (the registry of the push test)")
    return target
