"""The older ansible-core releases of the collection's supported range, one virtualenv each.

meta/runtime.yml declares ``requires_ansible: >=2.16.0``; the project itself runs 2.19 (the
pinned ``ansible`` package). The tests install the collection with each release below as well
and check that it lists and renders the same (tests/test_collection_render.py). Each virtualenv
holds only ``ansible-core==<version>`` (kubernetes.core comes from the project's environment),
made with the interpreter that runs the set-up step, under
``cache_dir()/venvs/ansible-core-<version>-py<major><minor>/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds.gobuild import BuildError, file_lock, require_built
from stacktools.paths import cache_dir

# The newest patch release of each older minor on PyPI (2026-11-29). All three run on the
# Python versions the project supports (3.11; 3.12 on GitHub's runners). 2.20 and 2.21 need
# Python >= 3.12 and are not part of it.
VERSIONS = ("2.16.19", "2.17.14", "2.18.19")
# Written last: a virtualenv without it is an interrupted build.
COMPLETE = ".complete"


@dataclass(frozen=True)
class Venvs:
    paths: tuple[Path, ...]

    def __str__(self) -> str:
        return f"ansible-core {', '.join(VERSIONS)} in {self.paths[0].parent}"


def venv(version: str) -> Path:
    """The virtualenv of ``version``; :class:`BuildMissingError` when it is not built."""
    path = _venv_path(version)
    require_built([path / COMPLETE], f"the ansible-core {version} virtualenv")
    return path


def _venv_path(version: str) -> Path:
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache_dir() / "venvs" / f"ansible-core-{version}-{python}"


def _build(version: str, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    base = getattr(sys, "_base_executable", sys.executable)
    pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    steps = [
        [base, "-m", "venv", str(path)],
        [*pip, "install", "--quiet", f"ansible-core=={version}"],
    ]
    for step in steps:
        result = subprocess.run(step, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            msg = f"`{' '.join(step)}` failed:\n{result.stdout}{result.stderr}"
            raise BuildError(msg)
    (path / COMPLETE).write_text(version + "\n")


def ensure_venvs() -> Venvs:
    """Every virtualenv of the matrix, building the missing ones (set-up step)."""
    built = []
    for version in VERSIONS:
        path = _venv_path(version)
        if not (path / COMPLETE).is_file():
            with file_lock(cache_dir() / "locks" / f"ansible-core-{version}.lock"):
                if not (path / COMPLETE).is_file():
                    print(f"building {path} (pip install ansible-core=={version})", file=sys.stderr)
                    _build(version, path)
        built.append(path)
    return Venvs(tuple(built))
