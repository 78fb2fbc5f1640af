"""Debian packages the set-up step may install itself: only as root on Debian or Ubuntu
(a CI machine is one); anywhere else a missing package is reported, never installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from stacktools.builds.gobuild import BuildError


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


def why_not_installable(release: dict[str, str], euid: int) -> str | None:
    """None when the set-up step may install packages here, else the reason it may not."""
    family = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
    if not family & {"debian", "ubuntu"}:
        name = release.get("PRETTY_NAME") or "this system"
        return f"{name} is not Debian or Ubuntu"
    if euid != 0:
        return "the set-up step is not running as root"
    if shutil.which("apt-get") is None:
        return "apt-get is not on PATH"
    return None


def here() -> str | None:
    """:func:`why_not_installable` for this machine and user."""
    return why_not_installable(os_release(), os.geteuid())


def missing(packages: Sequence[str]) -> list[str]:
    """The packages that dpkg does not list as installed (all of them without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    absent = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not result.stdout.endswith(" installed"):
            absent.append(package)
    return absent


def install(packages: Sequence[str]) -> None:
    """``apt-get update`` + ``apt-get install`` (no recommends), waiting for dpkg's lock."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    print(f"apt-get install {' '.join(packages)}", file=sys.stderr, flush=True)
    for argv in (
        ["apt-get", *lock, "update", "-q"],
        ["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-3000:]
            msg = f"`{' '.join(argv)}` failed with exit code {result.returncode}:\n{tail}"
            raise BuildError(msg)


def require(packages: dict[str, str], hint: str) -> None:
    """Install the missing ``packages`` (name -> what needs it) where allowed; elsewhere raise
    BuildError naming them, why they cannot be installed here, and ``hint``."""
    absent = missing(list(packages))
    if not absent:
        return
    reason = here()
    if reason is not None:
        wanted = "; ".join(f"{name} ({packages[name]})" for name in absent)
        msg = f"missing: {wanted}. The set-up step installs them only as root on Debian or "
        msg += f"Ubuntu, but {reason}. {hint}"
        raise BuildError(msg)
    install(absent)
