"""runc (the OCI runtime containerd's shim calls), built from ``github.com/opencontainers/runc``.

runc needs cgo (its nsexec code is C) and libseccomp for the ``RuntimeDefault`` seccomp profile
that the stack's pods ask for: the set-up step installs Debian's ``libseccomp-dev`` and a C
compiler (stacktools.builds.node_packages). Built as runc's Makefile does, without the ``libpathrs``
tag (that library is Rust, not in Debian 12).
"""

from __future__ import annotations

from pathlib import Path

from stacktools.builds.gobuild import ModuleBuild

MODULE = "github.com/opencontainers/runc"
# Pinned: the runc containerd v2.4.2's CI runs (its script/setup/runc-version); cgroup v1 is
# supported until May 2029 (runc's docs/deprecated.md).
VERSION = "v1.5.2"
# What the build needs from Debian (stacktools.builds.node_packages installs them).
DEBIAN_PACKAGES = ("gcc", "libc6-dev", "libseccomp-dev", "pkg-config")

BUILD = ModuleBuild(
    name="runc",
    module=MODULE,
    version=VERSION,
    packages={"runc": "."},
    env={"CGO_ENABLED": "1"},
    flags=("-mod=readonly", "-tags=seccomp urfave_cli_no_docs", "-ldflags=-s -w"),
)


def ensure_binary() -> Path:
    return BUILD.ensure()["runc"]


def binary() -> Path:
    return BUILD.built()["runc"]
