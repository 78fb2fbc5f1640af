"""The stand-in base image: Debian bookworm packages in place of ``python:3.11-slim-bookworm``
where no container registry can be reached (the only stand-in of the images level).

``debootstrap --variant=minbase bookworm`` plus CPython 3.11, pip and ``python`` (what the
Dockerfiles use of the official image), the machine's CA bundle (so pip and uv inside a build
trust what this machine trusts), documentation and apt caches removed, then ``docker import``
under ``gateway-api-stack/python-standin:3.11-bookworm-<key>``. The key hashes the recipe below
and the CA bundle, so the image is built once per machine and again only when either changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from stacktools.builds import apt, docker
from stacktools.builds.gobuild import BuildError, file_lock
from stacktools.paths import cache_dir

REPOSITORY = "gateway-api-stack/python-standin"
SUITE = "bookworm"
# Debian 12's python3.11 is the CPython minor of python:3.11-slim-bookworm. pip (the apiserver
# Dockerfile installs uv with it) and python-is-python3 (`python` in the ENTRYPOINTs and the
# HEALTHCHECK) complete what the Dockerfiles use of the official image.
PACKAGES = ("python3.11", "python3-pip", "python-is-python3", "ca-certificates")
# Dropped after the install, as the slim images do: nothing in the images reads them.
REMOVED = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
# PEP 668 allows a container image to drop this marker; the official image has none, so
# `pip install` works there as it does here.
PEP668_MARKER = "usr/lib/python3.11/EXTERNALLY-MANAGED"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The image's configuration (docker import --change), as the official image sets it; the
# CA variable makes uv (which otherwise trusts only its built-in roots) use the bundle.
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    f"ENV SSL_CERT_FILE={CA_BUNDLE}",
    'CMD ["python3"]',
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
TOOLS = {
    "debootstrap": "builds the stand-in base image from Debian packages",
    "debian-archive-keyring": "debootstrap's check of the Debian archive signature",
    "gpgv": "debootstrap's check of the Debian archive signature",
}


def _mirror() -> str:
    return os.environ.get("STACK_DEBIAN_MIRROR") or DEFAULT_MIRROR


def recipe() -> dict[str, object]:
    bundle = CA_BUNDLE.read_bytes() if CA_BUNDLE.is_file() else b""
    return {
        "suite": SUITE,
        "variant": "minbase",
        "packages": PACKAGES,
        "removed": REMOVED,
        "marker": PEP668_MARKER,
        "changes": CHANGES,
        "ca_bundle": hashlib.sha256(bundle).hexdigest(),
    }


def ref() -> str:
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return f"{REPOSITORY}:3.11-{SUITE}-{key}"


def _debootstrap(target: Path, log: Path) -> None:
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        _mirror(),
    ]
    print(f"stand-in base: {' '.join(argv)} (log {log})", file=sys.stderr, flush=True)
    with log.open("wb") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        msg = f"debootstrap failed ({result.returncode}); its log {log} ends:\n{tail}"
        raise BuildError(msg)


def _trim(root: Path) -> None:
    for relative in REMOVED:
        folder = root / relative
        if folder.is_dir():
            shutil.rmtree(folder)
            folder.mkdir()
    (root / PEP668_MARKER).unlink(missing_ok=True)
    if CA_BUNDLE.is_file():
        shutil.copyfile(CA_BUNDLE, root / CA_BUNDLE.relative_to("/"))


def _import(root: Path, image: str) -> None:
    changes = [arg for change in CHANGES for arg in ("--change", change)]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    )
    result = subprocess.run(
        [docker.docker(), "import", *changes, "-", image],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    if tar.stdout is not None:
        tar.stdout.close()
    if tar.wait() != 0 or result.returncode != 0:
        msg = f"`docker import` of the stand-in base failed: {result.stderr.strip()}"
        raise BuildError(msg)


def ensure() -> str:
    """The stand-in base's reference, building it first when the engine lacks it."""
    image = ref()
    if docker.inspect_image(image) is not None:
        return image
    with file_lock(cache_dir() / "locks" / "image-standin.lock"):
        if docker.inspect_image(image) is not None:
            return image
        if shutil.which("debootstrap") is None:
            apt.require(TOOLS, "Install debootstrap, or make python:3.11-slim-bookworm pullable.")
        if os.geteuid() != 0:
            msg = (
                "the stand-in base image needs debootstrap as root, and python:3.11-slim-"
                "bookworm cannot be had: run `make prepare` as root, or `docker pull` it."
            )
            raise BuildError(msg)
        work = cache_dir() / "images"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="standin-", dir=work) as tmp:
            root = Path(tmp) / "rootfs"
            _debootstrap(root, work / "standin-debootstrap.log")
            _trim(root)
            _import(root, image)
    return image
