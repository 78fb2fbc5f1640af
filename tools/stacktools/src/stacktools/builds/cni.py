"""The CNI plugins the node's pod network uses, built from
``github.com/containernetworking/plugins``: bridge (a Linux bridge with a veth per pod),
host-local (addresses from the node's pod CIDR), loopback (``lo`` in every pod) and portmap
(``hostPort``)."""

from __future__ import annotations

from pathlib import Path

from stacktools.builds.gobuild import ModuleBuild

MODULE = "github.com/containernetworking/plugins"
# Pinned: the newest release on the Go module proxy (2026-11-29).
VERSION = "v1.10.0"

BUILD = ModuleBuild(
    name="cni-plugins",
    module=MODULE,
    version=VERSION,
    packages={
        "bridge": "./plugins/main/bridge",
        "loopback": "./plugins/main/loopback",
        "host-local": "./plugins/ipam/host-local",
        "portmap": "./plugins/meta/portmap",
    },
    env={"CGO_ENABLED": "0"},
    flags=(
        "-mod=readonly",
        f"-ldflags=-s -w -X {MODULE}/pkg/utils/buildversion.BuildVersion={VERSION}",
    ),
)


def ensure_directory() -> Path:
    """The folder holding the plugins (containerd's CNI ``bin_dirs``)."""
    return BUILD.ensure()["bridge"].parent


def directory() -> Path:
    return BUILD.built()["bridge"].parent
