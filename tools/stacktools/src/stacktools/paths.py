"""Where things live: the repository, the build cache, the upstream CRDs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def repo_root() -> Path:
    """The repository root: ``STACK_ROOT`` if set, else the folder holding ansible.cfg."""
    env = os.environ.get("STACK_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "ansible.cfg").is_file() and (candidate / "roles").is_dir():
                return candidate
    msg = "cannot find the repository root (a folder with ansible.cfg and roles/); set STACK_ROOT"
    raise RuntimeError(msg)


def cache_dir() -> Path:
    """Cache for built binaries, shared by every clone on this machine.

    ``STACK_CACHE_DIR`` overrides; the default is ``$XDG_CACHE_HOME/gateway-api-stack``.
    """
    env = os.environ.get("STACK_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(xdg) / "gateway-api-stack"
    path.mkdir(parents=True, exist_ok=True)
    return path


def crds_dir() -> Path:
    """Upstream CRDs for tests: ``CRDS_DIR`` if set, else ``<repo>/../shared/crds``.

    The folder layout is the one described in shared/crds/SOURCES.md
    (``gateway-api-v1.5.1/experimental/...``, ``istio/``, ``mongodb/``, ...).
    """
    env = os.environ.get("CRDS_DIR")
    path = Path(env) if env else repo_root().parent / "shared" / "crds"
    if not path.is_dir():
        msg = (
            f"the upstream CRDs folder {path} does not exist; set CRDS_DIR to a folder laid out "
            "like shared/crds (e.g. gateway-api-v1.5.1/experimental/*.yaml)"
        )
        raise FileNotFoundError(msg)
    return path


def origin_shared_dir(name: str) -> Path | None:
    """``shared/<name>`` beside the repository this clone was made from, when its ``origin`` is
    a folder on this machine (``git clone /work/main /tmp/ci``): the offline copies the clone's
    own ``../shared`` would hold. Callers verify what they take from it."""
    try:
        origin = subprocess.run(
            ["git", "-C", str(repo_root()), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return None
    path = Path(origin)
    folder = path.resolve().parent / "shared" / name if path.is_absolute() else None
    return folder if folder is not None and folder.is_dir() else None
