"""CoreDNS, the cluster DNS the node's pods use (``kube-dns`` in ``kube-system``), built from
``github.com/coredns/coredns`` at the version kubeadm v1.36.3 deploys."""

from __future__ import annotations

from pathlib import Path

from stacktools.builds.gobuild import ModuleBuild

MODULE = "github.com/coredns/coredns"
# Pinned: CoreDNSVersion of kubeadm v1.36.3 (cmd/kubeadm/app/constants/constants.go).
VERSION = "v1.14.2"

BUILD = ModuleBuild(
    name="coredns",
    module=MODULE,
    version=VERSION,
    packages={"coredns": "."},
    env={"CGO_ENABLED": "0"},
    flags=(
        "-mod=readonly",
        f"-ldflags=-s -w -X github.com/coredns/coredns/coremain.GitCommit={VERSION}",
    ),
)


def ensure_binary() -> Path:
    return BUILD.ensure()["coredns"]


def binary() -> Path:
    return BUILD.built()["coredns"]
