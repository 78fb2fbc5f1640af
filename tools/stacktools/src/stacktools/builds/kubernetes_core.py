"""kubernetes.core with Helm 4 support, for the tests that install releases with Helm 4.

The project's pinned ``ansible`` package (12.3.0, pyproject.toml) bundles kubernetes.core
6.2.0, which works with Helm 3 only; a user's ``make setup`` installs >= 6.4.0 (Helm 4
support) from Galaxy, which is out of reach here. The same collection is published inside the
``ansible`` package on PyPI: ansible 14.5.0 carries kubernetes.core 6.6.0 (what
``collections/requirements.yml``'s ``>=6.4.0,<7.0.0`` resolves to on Galaxy today). The set-up
step downloads that wheel once (pinned by sha256), extracts only
``ansible_collections/kubernetes/core`` into ``cache_dir()/collections/<name>`` and deletes
the wheel. Tests point ``ANSIBLE_COLLECTIONS_PATH`` at :func:`collections_path`; they never
download. The collection runs on the project's ansible-core (it requires >= 2.16).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds.gobuild import PREPARE_HINT, BuildError, BuildMissingError, file_lock
from stacktools.paths import cache_dir


@dataclass(frozen=True)
class PinnedCollection:
    """A collection taken from a wheel of the ``ansible`` package on PyPI."""

    name: str
    version: str
    wheel_url: str
    wheel_sha256: str

    @property
    def folder(self) -> Path:
        """The collections path to give Ansible (it holds ``ansible_collections/``)."""
        return cache_dir() / "collections" / f"{self.name.replace('.', '-')}-{self.version}"

    @property
    def member(self) -> str:
        namespace, _, name = self.name.partition(".")
        return f"ansible_collections/{namespace}/{name}/"


# https://pypi.org/project/ansible/14.5.0/ (files: ansible-14.5.0-py3-none-any.whl).
KUBERNETES_CORE_HELM4 = PinnedCollection(
    "kubernetes.core",
    "6.6.0",
    "https://files.pythonhosted.org/packages/ee/aa/"
    "3ce05576b36ceb86591dc0ab3bb187b4333b65b6de3e64dae535fb7a1354/ansible-14.5.0-py3-none-any.whl",
    "245623ccc2d31d0f6f4bdb63168d550cad305fb032cc43d96e8f61ce8ab0ba84",
)


def _manifest(folder: Path, pinned: PinnedCollection) -> Path:
    return folder / pinned.member / "MANIFEST.json"


def installed_version(folder: Path, pinned: PinnedCollection) -> str | None:
    manifest = _manifest(folder, pinned)
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text())["collection_info"]["version"])


def collections_path(pinned: PinnedCollection = KUBERNETES_CORE_HELM4) -> Path:
    """The collections path holding the pinned collection; BuildMissingError before set-up."""
    found = installed_version(pinned.folder, pinned)
    if found != pinned.version:
        msg = f"{pinned.name} {pinned.version} is not in {pinned.folder}: {PREPARE_HINT}"
        raise BuildMissingError(msg)
    return pinned.folder


def _download(url: str, sha256: str, dest: Path) -> None:
    if not url.startswith("https://"):
        raise BuildError(f"{url}: only https downloads are pinned")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=120) as response, dest.open("wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise BuildError(f"cannot download {url}: {exc}") from exc
    if digest.hexdigest() != sha256:
        msg = f"{url}: sha256 {digest.hexdigest()}, pinned {sha256}"
        raise BuildError(msg)


def ensure_collection(pinned: PinnedCollection = KUBERNETES_CORE_HELM4) -> Path:
    """The collections path of ``pinned``, extracted from its wheel once (set-up step)."""
    with file_lock(cache_dir() / "locks" / f"collection-{pinned.name}.lock"):
        if installed_version(pinned.folder, pinned) == pinned.version:
            return pinned.folder
        pinned.folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=pinned.folder.parent) as work:
            wheel = Path(work) / "ansible.whl"
            _download(pinned.wheel_url, pinned.wheel_sha256, wheel)
            staged = Path(work) / "staged"
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if m.startswith(pinned.member)]
                archive.extractall(staged, members)
            found = installed_version(staged, pinned)
            if found != pinned.version:
                msg = f"{pinned.wheel_url} carries {pinned.name} {found}, pinned {pinned.version}"
                raise BuildError(msg)
            shutil.rmtree(pinned.folder, ignore_errors=True)
            staged.replace(pinned.folder)
    return pinned.folder
