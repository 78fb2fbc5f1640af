"""`make release` (python -m stacktools release): refuses a version without its changelog, names
the collection tarball and both images with the version of galaxy.yml, and ships the very
tarball `make prepare` built and the tests installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacktools import release
from stacktools.builds.collection import collection

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
VERSION = str(yaml.safe_load((REPO / "galaxy.yml").read_text())["version"])


def stacktools(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacktools", "release", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_dry_run_names_the_tarball_and_the_images_with_the_version() -> None:
    result = stacktools("--dry-run", "--registry", "ghcr.io/example")
    assert result.returncode == 0, result.stdout + result.stderr
    made = [line.strip() for line in result.stdout.splitlines()[1:]]
    assert made == [
        str(REPO / "dist" / f"gateway_api_stack-showcase-{VERSION}.tar.gz"),
        f"gateway-api-stack/apiserver:{VERSION}",
        f"ghcr.io/example/gateway-api-stack/apiserver:{VERSION}",
        f"gateway-api-stack/pipeline:{VERSION}",
        f"ghcr.io/example/gateway-api-stack/pipeline:{VERSION}",
    ]


def test_the_released_repositories_are_the_ones_the_roles_deploy() -> None:
    """With no registry the roles deploy gateway-api-stack/<service>; with one, under it: the
    tags make release gives (release.images), and kind.yml builds through the same build path."""
    for role, variable, service in (
        ("apiserver", "apiserver_image_repository", "apiserver"),
        ("dagster", "dagster_pipeline_image_repository", "pipeline"),
    ):
        defaults = (REPO / "roles" / role / "defaults" / "main.yml").read_text()
        value = str(yaml.safe_load(defaults)[variable])
        assert value.rstrip().endswith(f"}}}}gateway-api-stack/{service}"), (variable, value)
    (apiserver, pipeline) = release.images("1.2.3", "registry.example/owner/")
    assert apiserver.tags == (
        "gateway-api-stack/apiserver:1.2.3",
        "registry.example/owner/gateway-api-stack/apiserver:1.2.3",
    )
    assert pipeline.service == "pipeline"
    kind = (REPO / "playbooks" / "kind.yml").read_text()
    assert "ansible.builtin.include_tasks: tasks/build_images.yml" in kind


def test_a_version_without_its_changelog_is_refused(tmp_path: Path) -> None:
    for name in ("galaxy.yml", "roles"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "changelogs", tmp_path / "changelogs")
    galaxy = tmp_path / "galaxy.yml"
    galaxy.write_text(galaxy.read_text().replace(f"version: {VERSION}\n", "version: 99.0.0\n"))
    fragment = tmp_path / "changelogs" / "fragments" / "99-change.yml"
    fragment.write_text("---\nminor_changes:\n  - A change.\n")
    with pytest.raises(release.ReleaseError) as refused:
        release.release(tmp_path, tmp_path / "dist", registry=None, with_images=True, dry_run=True)
    message = str(refused.value)
    assert "changelogs/changelog.yaml has no release 99.0.0" in message
    assert "changelog fragments not yet in a release: 99-change.yml" in message
    assert "make changelog" in message
    assert not (tmp_path / "dist").exists()


def test_the_released_tarball_is_the_one_the_tests_installed(tmp_path: Path) -> None:
    result = stacktools("--no-images", "--dist", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    (tarball,) = tmp_path.iterdir()
    assert tarball.name == f"gateway_api_stack-showcase-{VERSION}.tar.gz"
    assert tarball.read_bytes() == collection().tarball.read_bytes()
