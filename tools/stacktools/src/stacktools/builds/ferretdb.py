"""FerretDB (a real MongoDB wire-protocol server) built from the Go module proxy.

The binary is built once (``github.com/FerretDB/FerretDB``, the version pinned below) and
cached. FerretDB embeds its version from a file that the module archive lacks, so the build
writes that file into a temporary copy of the module source.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stacktools.builds.gobuild import (
    file_lock,
    go_build,
    module_source,
    require_built,
    writable_copy,
)
from stacktools.paths import cache_dir

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
# Pinned: the newest v1 release on the Go module proxy (2026-11-26) with the SQLite backend.
FERRETDB_VERSION = "v1.24.2"


def binary_path() -> Path:
    return cache_dir() / "bin" / f"ferretdb-{FERRETDB_VERSION}"


def ensure_binary() -> Path:
    """Path of the cached FerretDB binary, building it first when missing (set-up step)."""
    target = binary_path()
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "ferretdb.lock"):
        if target.is_file():
            return target
        source = module_source(FERRETDB_MODULE, FERRETDB_VERSION)
        with writable_copy(source) as workdir:
            version_file = Path(workdir) / "build" / "version" / "version.txt"
            version_file.write_text(FERRETDB_VERSION + "\n")
            go_build(Path(workdir), "./cmd/ferretdb", target)
    return target


def binary() -> Path:
    """The cached binary; :class:`BuildMissingError` when the set-up step has not built it."""
    target = binary_path()
    require_built([target], f"FerretDB {FERRETDB_VERSION}")
    return target


def binary_version(path: Path) -> str:
    """The version line the binary prints, e.g. ``v1.24.2``."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip()
    return out.stdout.strip()
