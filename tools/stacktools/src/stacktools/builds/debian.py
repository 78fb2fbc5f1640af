"""Debian packages the set-up step installs when they are missing (``apt-get``, as root).

Only what a build or the node needs from the system: a C compiler and libseccomp for runc,
``nft`` for kube-proxy's nftables mode and the CNI portmap plugin, util-linux's ``unshare`` and
``nsenter`` and iproute2's ``ip`` for the node's namespaces, ``wrk`` for load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from stacktools.builds.gobuild import BuildError

NODE_PACKAGES = (
    "gcc",
    "libc6-dev",
    "libseccomp-dev",
    "pkg-config",
    "nftables",
    "util-linux",
    "iproute2",
    # the HorizontalPodAutoscaler test's load generator
    "wrk",
)


def missing(packages: Sequence[str]) -> list[str]:
    """The packages that ``dpkg`` does not list as installed."""
    absent = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.stdout.strip() != "installed":
            absent.append(package)
    return absent


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def ensure_packages(packages: Sequence[str] = NODE_PACKAGES) -> list[str]:
    """Install the missing ``packages``; return the list of what was installed."""
    if shutil.which("dpkg-query") is None:
        msg = f"not a Debian system: install {', '.join(packages)} (or their equivalents)"
        raise BuildError(msg)
    absent = missing(packages)
    if not absent:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        msg = f"Debian packages missing: {' '.join(absent)} (apt-get install them as root)"
        raise BuildError(msg)
    print(f"installing Debian packages: {' '.join(absent)}", file=sys.stderr, flush=True)
    result = _apt("install", "-y", "--no-install-recommends", *absent)
    if result.returncode != 0:
        _apt("update")
        result = _apt("install", "-y", "--no-install-recommends", *absent)
    if result.returncode != 0:
        msg = f"apt-get install {' '.join(absent)} failed:\n{result.stderr[-2000:]}"
        raise BuildError(msg)
    return absent
