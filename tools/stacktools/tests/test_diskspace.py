"""The set-up step's disk-space check: what it adds up, and the error that names the folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stacktools.builds import diskspace
from stacktools.builds.diskspace import GIB, Filesystem, Use
from stacktools.builds.gobuild import BuildError

pytestmark = pytest.mark.lint


def _two_filesystems(path: Path) -> Filesystem:
    """Folders under /big are on a 100 GiB filesystem with 50 free; the rest on 10 with 3."""
    if path.is_relative_to("/big"):
        return Filesystem(device=1, mount=Path("/big"), free=50 * GIB, total=100 * GIB)
    return Filesystem(device=2, mount=Path("/"), free=3 * GIB, total=10 * GIB)


def test_uses_on_one_filesystem_are_added_up_with_the_margin() -> None:
    # 2 + 2 GiB fit in 50 free; 25 + 25 (+ 2 % of 100 GiB) do not, though each alone would.
    fits = [Use("cache", Path("/big/cache"), 2 * GIB), Use("tmp", Path("/big/tmp"), 2 * GIB)]
    assert diskspace.shortfalls(fits, _two_filesystems) == []
    alone = [Use("cache", Path("/big/cache"), 47 * GIB)]
    assert diskspace.shortfalls(alone, _two_filesystems) == []
    together = [Use("cache", Path("/big/cache"), 25 * GIB), Use("tmp", Path("/big/t"), 25 * GIB)]
    (problem,) = diskspace.shortfalls(together, _two_filesystems)
    assert "/big has 50.0 GiB free" in problem
    assert "needs about 52.0 GiB" in problem
    assert "cache 25.0 GiB in /big/cache" in problem
    assert "tmp 25.0 GiB in /big/t" in problem


def test_each_filesystem_is_judged_on_its_own_uses() -> None:
    uses = [Use("cache", Path("/big/cache"), 40 * GIB), Use("tmp", Path("/tmp/x"), 3 * GIB)]
    (problem,) = diskspace.shortfalls(uses, _two_filesystems)
    assert problem.startswith("the filesystem at / has 3.0 GiB free")
    assert "tmp 3.0 GiB in /tmp/x" in problem
    assert "/big/cache" not in problem


def test_check_names_the_folder_and_how_to_get_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACK_DISK_CHECK", raising=False)
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(BuildError, match="not enough free disk space") as raised:
        diskspace.check([Use("the tests' temporary files", tmp_path, free + 10 * GIB)])
    assert f"in {tmp_path}" in str(raised.value)
    assert "STACK_DISK_CHECK=off" in str(raised.value)
    assert "room for the 0.0 GiB" in diskspace.check([Use("nothing", tmp_path, 0)])
    monkeypatch.setenv("STACK_DISK_CHECK", "off")
    assert diskspace.check([Use("too much", tmp_path, free + 10 * GIB)]).startswith("skipped")


def test_the_filesystem_of_a_folder_not_made_yet_is_its_parents(tmp_path: Path) -> None:
    found = diskspace.filesystem_of(tmp_path / "not" / "yet")
    assert found.device == tmp_path.stat().st_dev
    assert found.total == shutil.disk_usage(tmp_path).total
    assert tmp_path.resolve().is_relative_to(found.mount)


def test_folder_size_counts_files_below_and_not_what_links_point_at(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("one", "a/two", "a/b/three"):
        (tmp_path / name).write_bytes(os.urandom(1024 * 1024))
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(4 * 1024 * 1024))
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    size = diskspace.folder_size(tmp_path)
    assert 3 * 1024 * 1024 <= size < 4 * 1024 * 1024
    assert diskspace.folder_size(tmp_path / "missing") == 0


def test_an_empty_cache_plans_the_cold_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GOCACHE", str(tmp_path / "go-build"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "go-mod"))
    (tmp_path / "go-mod").mkdir()
    (tmp_path / "go-mod" / "half").write_bytes(os.urandom(1024 * 1024))
    uses = {use.what: use for use in diskspace.planned_uses()}
    assert uses["the stack's build cache"].size == round(diskspace.STACK_CACHE_GIB * GIB)
    assert uses["the Docker engine's images"].size == round(diskspace.DOCKER_GIB * GIB)
    assert uses["the tests' temporary files"].size == round(diskspace.TEMPORARY_GIB * GIB)
    if shutil.which("go"):
        assert uses["Go's build cache (GOCACHE)"].size == round(diskspace.GO_BUILD_CACHE_GIB * GIB)
        module_cache = uses["Go's module cache (GOMODCACHE)"]
        assert module_cache.path == tmp_path / "go-mod"
        # What a cache holds already is not asked for again.
        assert module_cache.size == round(diskspace.GO_MODULE_CACHE_GIB * GIB) - 1024 * 1024
