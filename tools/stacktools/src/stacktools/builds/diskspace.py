"""Free disk space, checked first in the set-up step, before anything is built.

A filesystem that fills during a run fails far from the cause: a Go build half-way, or the
node level's kubelet, which taints its node for DiskPressure and evicts pods. So the set-up step
adds up what this run still has to write on each filesystem and stops, naming the folders and
the sizes, when one of them has too little free.

What a run writes (measured with an empty cache on 2026-11-30, docs/benchmarks.md):

* the stack's cache (built binaries, image archives, venvs): what it does not hold yet;
* when that cache is cold, Go's build and module caches and the Docker engine's images;
* always, the tests' temporary files (control planes, the node's containerd, clones).

``STACK_DISK_CHECK=off`` skips the check (for a filesystem whose free space is reported wrong).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds.gobuild import BuildError
from stacktools.paths import cache_dir

GIB = 1024**3
# Sizes measured after a cold run (docs/benchmarks.md, "Disk space"), rounded up.
STACK_CACHE_GIB = 3.0  # 2.7 GB: binaries, image archives, ansible-core venvs
GO_BUILD_CACHE_GIB = 12.5  # 12 GB after building everything once
GO_MODULE_CACHE_GIB = 7.0  # 6.8 GB: every module version the project has pinned so far
DOCKER_GIB = 4.0  # the stand-in base, both service images, BuildKit's cache
TEMPORARY_GIB = 8.0  # pytest's folders: control planes, the node's containerd, clones
# A cache holding less than its full size by more than this is treated as cold.
COLD_MISSING_GIB = 1.0
# Left free after the run: the node's kubelet evicts pods below 1 % free (nodeconfig.py).
MARGIN_FRACTION = 0.02
DOCKER_ROOT_DEFAULT = Path("/var/lib/docker")


@dataclass(frozen=True)
class Use:
    """Space this run still writes under one folder."""

    what: str
    path: Path
    size: int


@dataclass(frozen=True)
class Filesystem:
    """One filesystem, found through a folder on it."""

    device: int
    mount: Path
    free: int
    total: int


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor: the filesystem it will be written on."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def filesystem_of(path: Path) -> Filesystem:
    where = _existing(path)
    usage = shutil.disk_usage(where)
    mount = where.resolve()
    device = mount.stat().st_dev
    while mount != mount.parent and mount.parent.stat().st_dev == device:
        mount = mount.parent
    return Filesystem(device=device, mount=mount, free=usage.free, total=usage.total)


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when missing); symlinks not followed."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


def _remaining(full_gib: float, path: Path) -> int:
    return max(0, round(full_gib * GIB) - folder_size(path))


def _output(command: list[str], timeout: float) -> str:
    """What ``command`` prints, or "" when it cannot run or does not answer in time."""
    try:
        return subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=timeout
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _go_caches() -> list[tuple[str, Path, float]]:
    go = shutil.which("go")
    out = _output([go, "env", "GOCACHE", "GOMODCACHE"], 60).split() if go else []
    if len(out) != 2:
        return []
    return [
        ("Go's build cache (GOCACHE)", Path(out[0]), GO_BUILD_CACHE_GIB),
        ("Go's module cache (GOMODCACHE)", Path(out[1]), GO_MODULE_CACHE_GIB),
    ]


def _docker_root() -> Path:
    docker = shutil.which("docker")
    out = _output([docker, "info", "--format", "{{.DockerRootDir}}"], 20) if docker else ""
    return Path(out) if out.startswith("/") else DOCKER_ROOT_DEFAULT


def planned_uses() -> list[Use]:
    """What this run still writes, folder by folder (see the module's docstring)."""
    cache = cache_dir()
    missing = _remaining(STACK_CACHE_GIB, cache)
    uses = [Use("the stack's build cache", cache, missing)]
    if missing > COLD_MISSING_GIB * GIB:
        uses += [Use(what, path, _remaining(gib, path)) for what, path, gib in _go_caches()]
        uses.append(Use("the Docker engine's images", _docker_root(), round(DOCKER_GIB * GIB)))
    uses.append(
        Use("the tests' temporary files", Path(tempfile.gettempdir()), round(TEMPORARY_GIB * GIB))
    )
    return uses


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"


def shortfalls(
    uses: Iterable[Use], locate: Callable[[Path], Filesystem] = filesystem_of
) -> list[str]:
    """One message per filesystem whose free space is less than what ``uses`` write there
    plus the margin; empty when every one has room."""
    by_device: dict[int, tuple[Filesystem, list[Use]]] = {}
    for use in uses:
        system = locate(use.path)
        by_device.setdefault(system.device, (system, []))[1].append(use)
    problems = []
    for system, here in by_device.values():
        needed = sum(use.size for use in here) + round(system.total * MARGIN_FRACTION)
        if system.free < needed:
            parts = "; ".join(f"{use.what} {_gib(use.size)} in {use.path}" for use in here)
            problems.append(
                f"the filesystem at {system.mount} has {_gib(system.free)} free, but this run "
                f"needs about {_gib(needed)} there ({parts}; and {MARGIN_FRACTION:.0%} of it left "
                "free, or the test node's kubelet evicts its pods)"
            )
    return problems


def check(uses: Sequence[Use] | None = None) -> str:
    """Raise BuildError naming each filesystem too full for ``uses`` (default: this run's
    :func:`planned_uses`); else say how much the run writes."""
    if os.environ.get("STACK_DISK_CHECK", "").lower() in {"off", "0", "no"}:
        return "skipped (STACK_DISK_CHECK=off)"
    if uses is None:
        uses = planned_uses()
    problems = shortfalls(uses)
    if problems:
        msg = (
            "not enough free disk space: "
            + "; ".join(problems)
            + ". Free some space, or point XDG_CACHE_HOME, GOCACHE, GOMODCACHE or TMPDIR at a "
            "filesystem with room (STACK_DISK_CHECK=off skips this check)."
        )
        raise BuildError(msg)
    total = sum(use.size for use in uses)
    return (
        f"room for the {_gib(total)} this run writes ("
        + ", ".join(f"{use.what} {_gib(use.size)}" for use in uses)
        + ")"
    )
