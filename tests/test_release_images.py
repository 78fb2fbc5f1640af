"""`make release`'s image step (stacktools.release.build_images) on the real Docker engine."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stacktools import release
from stacktools.builds import docker, images

pytestmark = pytest.mark.images

REPO = Path(__file__).resolve().parents[1]


def test_the_release_tags_the_images_the_project_builds() -> None:
    """The release's image step on the real engine: the images `make prepare` built from the
    committed files (reused, FROM the same base), tagged with a version and a registry."""
    version = f"0.0.0-test{uuid.uuid4().hex[:8]}"
    wanted = release.images(version, "registry.example/owner")
    try:
        made = release.build_images(REPO, wanted, "auto", push=False)
        assert made == [tag for image in wanted for tag in image.tags]
        for image in wanted:
            built = images.image(image.service)
            for tag in image.tags:
                found = docker.inspect_image(tag)
                assert found is not None, tag
                assert found["Id"] == built.image_id, tag
    finally:
        for image in wanted:
            for tag in image.tags:
                docker.run(["rmi", tag], check=False)
