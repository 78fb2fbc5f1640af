"""The build contexts: the set-up step builds from the committed files only, and in a working
tree (with its multi-GB .venv and caches) even Docker's legacy builder, which reads only the
root .dockerignore, sends nothing but what the Dockerfiles copy."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from stacktools.builds import docker, images

pytestmark = pytest.mark.images

REPO = Path(__file__).resolve().parents[1]
# Everything the two Dockerfiles COPY from the context, and nothing else may arrive.
ADMITTED = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "tools/stacktools/pyproject.toml",
    "services/apiserver/pyproject.toml",
    "services/pipeline/pyproject.toml",
    "services/apiserver/src/",
    "services/pipeline/src/",
)


def test_legacy_builder_sends_only_what_the_dockerfiles_copy(tmp_path: Path) -> None:
    assert (REPO / ".venv").is_dir(), "the working tree this test guards has a .venv"
    image = f"stack-context-probe:{uuid.uuid4().hex[:12]}"
    result = subprocess.run(
        [docker.docker(), "build", "--file", "-", "--tag", image, str(REPO)],
        input="FROM scratch\nCOPY . /context/\n",
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        sent = next(line for line in result.stdout.splitlines() if "Sending build context" in line)
        print(sent)
        container = docker.run(["create", image, "none"]).stdout.strip()
        try:
            archive = tmp_path / "context.tar"
            docker.run(["export", "--output", str(archive), container])
        finally:
            docker.run(["rm", container], check=False)
    finally:
        docker.run(["rmi", "--force", image], check=False)
    with tarfile.open(archive) as tar:
        files = sorted(
            member.name.removeprefix("context/")
            for member in tar.getmembers()
            if member.isfile() and member.name.startswith("context/")
        )
    strays = [name for name in files if not name.startswith(ADMITTED)]
    assert not strays, f"the legacy builder sent files no Dockerfile copies: {strays[:20]}"
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    for needed in ("uv.lock", "services/apiserver/src/apiserver/app.py",
                   "services/pipeline/src/pipeline/definitions.py"):  # fmt: skip
        assert needed in files


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone of this repository's HEAD with an untracked file in the apiserver's source."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    (target / STRAY).write_text("raise SystemExit('never in an image')\n")
    return target


STRAY = "services/apiserver/src/apiserver/stray.py"


def test_the_context_holds_the_committed_files_only(clone: Path) -> None:
    with images.committed_context(clone) as context:
        assert not (context.directory / STRAY).exists()
        assert (context.directory / "services/apiserver/src/apiserver/app.py").is_file()
        assert not (context.directory / ".git").exists()
        assert context.worktree_tags["apiserver"] != context.tags["apiserver"]
        assert context.worktree_tags["pipeline"] == context.tags["pipeline"]
    assert images.uncommitted(clone, "apiserver") == [STRAY]


def test_a_build_for_the_working_trees_tag_names_the_uncommitted_files(clone: Path) -> None:
    """What kind.yml hits when the roles would deploy a tag the committed files do not have."""
    with images.committed_context(clone) as context:
        wanted = f"gateway-api-stack/apiserver:{context.worktree_tags['apiserver']}"
    result = subprocess.run(
        [sys.executable, "-m", "stacktools", "images", "build", "apiserver", "--image", wanted],
        env={**os.environ, "STACK_ROOT": str(clone)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert STRAY in result.stderr
    assert "commit or stash" in result.stderr
