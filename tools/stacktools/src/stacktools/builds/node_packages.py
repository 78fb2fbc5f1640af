"""Debian packages the node needs from the system, installed by the set-up step through
:mod:`stacktools.builds.apt` (only as root on Debian or Ubuntu; elsewhere named as missing)."""

from __future__ import annotations

from stacktools.builds import apt
from stacktools.builds.gobuild import PREPARE_HINT

NODE_PACKAGES = {
    "gcc": "runc's build (cgo)",
    "libc6-dev": "runc's build (cgo)",
    "libseccomp-dev": "runc's build with seccomp",
    "pkg-config": "runc's build (finds libseccomp)",
    "nftables": "kube-proxy's nftables mode, the CNI portmap plugin",
    "util-linux": "unshare and nsenter (the node's namespaces)",
    "iproute2": "ip (the node's link and routes)",
    "wrk": "the HorizontalPodAutoscaler test's load",
}


def ensure() -> str:
    """The set-up step: install the missing packages where allowed, else fail naming them."""
    apt.require(NODE_PACKAGES, f"Install them, then {PREPARE_HINT}.")
    return ", ".join(NODE_PACKAGES)
