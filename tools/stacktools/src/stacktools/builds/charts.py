"""The Helm charts of the project's releases, pinned, and where the tests read them from.

Where the charts come from (:func:`charts_root`), the same order as the CRDs
(stacktools.cluster.crds):

1. ``CHARTS_DIR`` when set (an error if it is not a folder);
2. ``<repo>/../shared/charts``, the offline copies next to the repository, when it exists;
3. otherwise ``<cache>/charts``, which the set-up step fills once: from the ``shared/charts``
   beside the repository this clone was made from when its ``origin`` is a folder on this
   machine (``git clone /work/main /tmp/ci``), else by pulling the pinned upstream releases with
   the Helm built there (``helm pull <chart> --repo <url> --version <version>``, which resolves
   the chart through the repository's index as any Helm does).

Every file is checked before use: a gzipped chart archive whose ``Chart.yaml`` has the pinned
name and version. Chart files are read in place; nothing is copied into the repository.

The Dagster chart 1.13.27 is not in ``shared/charts``: it holds a stand-in reassembled from
upstream files of several dates (``dagster-0.0.1-dev.tgz``, see shared/charts/SOURCES.md).
It is used when the pinned file is absent, and every result obtained with it is reported as
indicative (:attr:`ChartFile.stand_in`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacktools.builds import helm
from stacktools.builds.gobuild import PREPARE_HINT, BuildError, BuildMissingError, file_lock
from stacktools.paths import cache_dir, origin_shared_dir, repo_root


@dataclass(frozen=True)
class PinnedChart:
    """One Helm release of the roles: its chart, pinned version and upstream repository."""

    role: str
    release: str
    name: str
    version: str
    repo_url: str
    # A stand-in file accepted in place of the pinned one (name-version.tgz), if any.
    stand_in_version: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"


# The versions and repositories of roles/*/defaults/main.yml (a test checks they agree).
PINNED: tuple[PinnedChart, ...] = (
    PinnedChart(
        "istio",
        "istio-base",
        "base",
        "1.30.3",
        "https://istio-release.storage.googleapis.com/charts",
    ),
    PinnedChart(
        "istio", "istiod", "istiod", "1.30.3", "https://istio-release.storage.googleapis.com/charts"
    ),
    PinnedChart(
        "mongodb",
        "mongodb-kubernetes",
        "mongodb-kubernetes",
        "1.10.0",
        "https://mongodb.github.io/helm-charts",
    ),
    PinnedChart(
        "monitoring",
        "kube-prometheus-stack",
        "kube-prometheus-stack",
        "88.5.3",
        "https://prometheus-community.github.io/helm-charts",
    ),
    PinnedChart(
        "dagster",
        "dagster",
        "dagster",
        "1.13.27",
        "https://dagster-io.github.io/helm",
        stand_in_version="0.0.1-dev",
    ),
)
BY_RELEASE = {chart.release: chart for chart in PINNED}
STAND_IN_NOTE = (
    "the Dagster chart in use is a stand-in reassembled from upstream files of several dates "
    "(shared/charts/SOURCES.md), not the published 1.13.27: Dagster results are indicative"
)


class ChartError(RuntimeError):
    """A chart cannot be found, pulled or read; the message says which and why."""


@dataclass(frozen=True)
class ChartFile:
    """A chart archive checked against its pin."""

    pinned: PinnedChart
    path: Path
    name: str
    version: str
    app_version: str
    sha256: str

    @property
    def stand_in(self) -> bool:
        return self.version != self.pinned.version

    def describe(self) -> str:
        what = f"{self.name} {self.version} ({self.path}, sha256 {self.sha256[:12]})"
        return f"{what} STAND-IN for {self.pinned.version}" if self.stand_in else what


def local_charts_dir() -> Path | None:
    """``CHARTS_DIR`` or ``<repo>/../shared/charts`` when that exists; None otherwise."""
    env = os.environ.get("CHARTS_DIR")
    if env:
        path = Path(env)
        if not path.is_dir():
            msg = f"CHARTS_DIR={env} is not a folder (laid out like shared/charts)"
            raise ChartError(msg)
        return path
    shared = repo_root().parent / "shared" / "charts"
    return shared if shared.is_dir() else None


def charts_root() -> Path:
    """The charts folder: CHARTS_DIR, else ../shared/charts, else the cache the set-up fills."""
    return local_charts_dir() or cache_dir() / "charts"


def chart_metadata(path: Path) -> dict[str, Any]:
    """``Chart.yaml`` of a chart archive (the file ``<top folder>/Chart.yaml``)."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        data = yaml.safe_load(handle.read())
                        if isinstance(data, dict):
                            return data
    except (OSError, tarfile.TarError) as exc:
        raise ChartError(f"{path} is not a readable chart archive: {exc}") from exc
    raise ChartError(f"{path} holds no <chart>/Chart.yaml")


def _checked(pinned: PinnedChart, path: Path) -> ChartFile:
    meta = chart_metadata(path)
    versions = {pinned.version, pinned.stand_in_version} - {""}
    if meta.get("name") != pinned.name or str(meta.get("version")) not in versions:
        msg = (
            f"{path} is chart {meta.get('name')} {meta.get('version')}, expected {pinned.name} "
            f"{pinned.version}"
        )
        raise ChartError(msg)
    return ChartFile(
        pinned,
        path,
        str(meta["name"]),
        str(meta["version"]),
        str(meta.get("appVersion", "")),
        hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def _candidates(pinned: PinnedChart, root: Path) -> list[Path]:
    names = [pinned.file_name]
    if pinned.stand_in_version:
        names.append(f"{pinned.name}-{pinned.stand_in_version}.tgz")
    return [root / name for name in names]


def chart(release: str) -> ChartFile:
    """The checked chart of ``release``; BuildMissingError when the set-up has not got it."""
    try:
        pinned = BY_RELEASE[release]
    except KeyError:
        msg = f"no pinned chart for release {release!r}; known: {sorted(BY_RELEASE)}"
        raise ChartError(msg) from None
    root = charts_root()
    for path in _candidates(pinned, root):
        if path.is_file():
            return _checked(pinned, path)
    msg = f"chart {pinned.file_name} is not in {root}: {PREPARE_HINT}"
    raise BuildMissingError(msg)


def charts() -> dict[str, ChartFile]:
    """Every pinned chart by release name (see :func:`chart`)."""
    return {pinned.release: chart(pinned.release) for pinned in PINNED}


def _pull(pinned: PinnedChart, dest: Path) -> None:
    """``helm pull`` the pinned chart from its repository into ``dest`` (atomically)."""
    partial = dest / f".{pinned.file_name}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    command = [
        str(helm.ensure_binary(3)),
        "pull",
        pinned.name,
        "--repo",
        pinned.repo_url,
        "--version",
        pinned.version,
        "--destination",
        str(partial),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    pulled = partial / pinned.file_name
    if result.returncode != 0 or not pulled.is_file():
        msg = (
            f"cannot pull chart {pinned.name} {pinned.version} from {pinned.repo_url} "
            f"({' '.join(command)}): {result.stderr.strip()}; set CHARTS_DIR to a folder with "
            f"{pinned.file_name} where the chart repositories are out of reach"
        )
        raise ChartError(msg)
    pulled.replace(dest / pinned.file_name)
    partial.rmdir()


def _from_mirror(pinned: PinnedChart, mirror: Path | None, dest: Path) -> bool:
    """Copy the chart (or its stand-in) from ``mirror`` into ``dest`` once it checks out."""
    for path in _candidates(pinned, mirror) if mirror is not None else []:
        if path.is_file():
            _checked(pinned, path)
            partial = dest / f".{path.name}.partial"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, partial)
            partial.replace(dest / path.name)
            return True
    return False


def ensure_charts() -> dict[str, ChartFile]:
    """Every pinned chart; when no local folder has them, into the cache first (set-up)."""
    local = local_charts_dir()
    if local is None:
        dest = cache_dir() / "charts"
        mirror = origin_shared_dir("charts")
        with file_lock(cache_dir() / "locks" / "charts.lock"):
            for pinned in PINNED:
                present = any(path.is_file() for path in _candidates(pinned, dest))
                if not present and not _from_mirror(pinned, mirror, dest):
                    _pull(pinned, dest)
    try:
        return charts()
    except BuildMissingError as exc:
        raise BuildError(f"{exc} (the folder is {local}: CHARTS_DIR or ../shared/charts)") from exc


def summary() -> str:
    """One line per chart, for the set-up step and test headers."""
    found = charts()
    lines = [f"{release}: {item.describe()}" for release, item in found.items()]
    if any(item.stand_in for item in found.values()):
        lines.append(STAND_IN_NOTE)
    return "\n".join(lines)
