"""containerd (the node's container runtime), its runc shim and ``ctr``, built from the Go
module ``github.com/containerd/containerd/v2`` at the version pinned here.

Built like containerd's own Makefile does for a release, without cgo (which leaves out only
the btrfs snapshotter; the node uses overlayfs).
"""

from __future__ import annotations

from pathlib import Path

from stacktools.builds.gobuild import ModuleBuild

MODULE = "github.com/containerd/containerd/v2"
# Pinned: the newest release on the Go module proxy (2026-11-29); it supports Kubernetes
# v1.36's CRI and, until May 2029, cgroup v1 (containerd's RELEASES.md). Its CI tests it with
# runc v1.5.2 (script/setup/runc-version), the runc pinned in stacktools.builds.runc.
VERSION = "v2.4.2"

BUILD = ModuleBuild(
    name="containerd",
    module=MODULE,
    version=VERSION,
    packages={
        "containerd": "./cmd/containerd",
        "containerd-shim-runc-v2": "./cmd/containerd-shim-runc-v2",
        "ctr": "./cmd/ctr",
    },
    env={"CGO_ENABLED": "0"},
    flags=(
        "-mod=readonly",
        "-tags=urfave_cli_no_docs",
        f"-ldflags=-s -w -X {MODULE}/version.Version={VERSION}"
        f" -X {MODULE}/version.Package=github.com/containerd/containerd",
    ),
)


def ensure_binaries() -> dict[str, Path]:
    return BUILD.ensure()


def binaries() -> dict[str, Path]:
    return BUILD.built()
