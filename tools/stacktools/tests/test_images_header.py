"""The test output says which base the images level ran on (issue 10): pytest's header names
each image with its base, and says in capitals when the base is the stand-in built from Debian
packages rather than the official python image. Checked in the header of a real pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacktools.builds import images

pytestmark = pytest.mark.images

REPO = Path(__file__).resolve().parents[3]


def test_the_header_names_each_image_and_its_base() -> None:
    built = [images.image(service) for service in images.SERVICES]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            "tests/test_dockerfiles.py",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    header = result.stdout.split("collected", 1)[0]
    for image in built:
        assert f"images: {image.describe()}" in header, header
        assert image.base in header
    standin_line = "images: the STAND-IN base was used"
    if any(image.standin for image in built):
        assert standin_line in header, header
        assert "FROM STAND-IN base gateway-api-stack/python-standin:" in header, header
    else:
        assert "STAND-IN" not in header, header
