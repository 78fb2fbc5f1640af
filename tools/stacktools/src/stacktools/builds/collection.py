"""The Galaxy collection built from this checkout: ``ansible-galaxy collection build``.

``galaxy.yml`` lists what the collection holds (its ``manifest`` directives, processed by distlib
exactly as ansible-galaxy processes them). The tarball is cached under
``cache_dir()/collections/<namespace>-<name>-<version>-<key>/``, where the key hashes galaxy.yml
and every file the directives select, so a changed role gives a new build while unchanged
clones share one; the getter computes the same key and so never hands out a stale tarball.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from distlib.manifest import Manifest

from stacktools.builds.gobuild import BuildError, file_lock, require_built
from stacktools.paths import cache_dir, repo_root

GALAXY_FILE = "galaxy.yml"


@dataclass(frozen=True)
class Collection:
    """A built collection tarball and the identity galaxy.yml gave it."""

    tarball: Path
    namespace: str
    name: str
    version: str

    @property
    def fqcn(self) -> str:
        return f"{self.namespace}.{self.name}"

    def __str__(self) -> str:
        return f"{self.fqcn} {self.version} at {self.tarball}"


def metadata(root: Path | None = None) -> dict[str, Any]:
    """galaxy.yml of the checkout, as a dict."""
    path = (root or repo_root()) / GALAXY_FILE
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        msg = f"{path} is not a mapping"
        raise BuildError(msg)
    return data


def included_files(root: Path | None = None) -> list[Path]:
    """Every file the collection holds, in order: galaxy.yml's ``manifest`` directives applied
    the way ansible-galaxy applies them (which requires ``omit_default_directives: true``, so
    the list in galaxy.yml is the whole list)."""
    root = root or repo_root()
    manifest = metadata(root).get("manifest") or {}
    if manifest.get("omit_default_directives") is not True or not manifest.get("directives"):
        msg = (
            f"{root / GALAXY_FILE} must list what the collection holds: manifest.directives "
            "with manifest.omit_default_directives: true"
        )
        raise BuildError(msg)
    selection = Manifest(str(root))
    for directive in manifest["directives"]:
        selection.process_directive(directive)
    return [Path(path) for path in selection.sorted(wantdirs=False)]


def content_key(root: Path | None = None) -> str:
    """Hash of galaxy.yml and of the path and content of every file the collection holds."""
    root = root or repo_root()
    digest = hashlib.sha256((root / GALAXY_FILE).read_bytes())
    for path in included_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _identity(root: Path) -> tuple[str, str, str]:
    data = metadata(root)
    return str(data["namespace"]), str(data["name"]), str(data["version"])


def tarball_path(root: Path | None = None) -> Path:
    root = root or repo_root()
    namespace, name, version = _identity(root)
    folder = f"{namespace}-{name}-{version}-{content_key(root)}"
    return cache_dir() / "collections" / folder / f"{namespace}-{name}-{version}.tar.gz"


def _collection(tarball: Path, root: Path) -> Collection:
    namespace, name, version = _identity(root)
    return Collection(tarball=tarball, namespace=namespace, name=name, version=version)


def build(root: Path, output_dir: Path) -> Path:
    """``ansible-galaxy collection build`` of ``root`` into ``output_dir``; the tarball's path."""
    namespace, name, version = _identity(root)
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    output_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(galaxy), "collection", "build", str(root), "--output-path", str(output_dir)],
        check=False,
        capture_output=True,
        text=True,
    )
    tarball = output_dir / f"{namespace}-{name}-{version}.tar.gz"
    if result.returncode != 0 or not tarball.is_file():
        msg = f"`ansible-galaxy collection build {root}` failed:\n{result.stdout}{result.stderr}"
        raise BuildError(msg)
    return tarball


def ensure_collection() -> Collection:
    """The tarball of this checkout's collection, building it first when missing (set-up)."""
    root = repo_root()
    target = tarball_path(root)
    if target.is_file():
        return _collection(target, root)
    with file_lock(cache_dir() / "locks" / "collection.lock"):
        if not target.is_file():
            target.parent.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent.parent) as scratch:
                built = build(root, Path(scratch) / "out")
                target.parent.mkdir(exist_ok=True)
                shutil.move(built, target)
    return _collection(target, root)


def collection() -> Collection:
    """The built tarball of this checkout; :class:`BuildMissingError` when the set-up step has
    not built it (or built it before the last change to the collection's files)."""
    root = repo_root()
    target = tarball_path(root)
    _, _, version = _identity(root)
    require_built([target], f"the collection {'.'.join(_identity(root)[:2])} {version}")
    return _collection(target, root)
