"""The changelog is made from fragments by antsibull-changelog: the fragments and
changelogs/changelog.yaml are valid, CHANGELOG.md is exactly what antsibull-changelog generates
from them, and galaxy.yml's version is not older than the newest release."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
CHANGELOG_TOOL = Path(sys.executable).with_name("antsibull-changelog")
# What antsibull-changelog reads: the collection's identity, plugins and roles, the changelog.
INPUTS = ("galaxy.yml", "meta", "plugins", "roles", "changelogs", "CHANGELOG.md")


def copy_of_the_collection(target: Path) -> Path:
    for name in INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns(".plugin-cache.*"))
        else:
            shutil.copy(source, target / name)
    return target


def changelog(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHANGELOG_TOOL), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": f"{CHANGELOG_TOOL.parent}:/usr/bin:/bin", "HOME": str(root)},
    )


def test_the_fragments_and_the_changelog_are_valid(tmp_path: Path) -> None:
    root = copy_of_the_collection(tmp_path)
    result = changelog(root, "lint")
    assert result.returncode == 0, result.stdout + result.stderr
    result = changelog(root, "lint-changelog-yaml", "changelogs/changelog.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    # The check bites: a fragment with a section the configuration does not know.
    (root / "changelogs" / "fragments" / "bad.yml").write_text("---\nnew_things:\n  - A.\n")
    result = changelog(root, "lint")
    assert result.returncode != 0
    assert "bad.yml" in result.stdout + result.stderr


def test_changelog_md_is_generated_from_the_changelog(tmp_path: Path) -> None:
    root = copy_of_the_collection(tmp_path)
    result = changelog(root, "generate", "--output", str(tmp_path / "generated.md"))
    assert result.returncode == 0, result.stdout + result.stderr
    generated = (tmp_path / "generated.md").read_text()
    assert (REPO / "CHANGELOG.md").read_text() == generated, "run `make changelog`"


def test_the_version_is_not_older_than_the_newest_release() -> None:
    releases = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())["releases"]
    version = Version(str(yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]))
    assert releases, "changelogs/changelog.yaml has no release"
    assert version >= max(Version(str(name)) for name in releases)
