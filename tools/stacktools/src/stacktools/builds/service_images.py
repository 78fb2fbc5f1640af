"""The services' images as archives for the node's containerd.

The images themselves are the image builds' (:mod:`stacktools.builds.images`, the one build
path: the set-up step's ``images`` step builds ``gateway-api-stack/<service>:<content tag of
HEAD>`` from the real Dockerfiles, FROM the official base or the named stand-in). This step
only writes what the Docker engine holds into a file the node imports (``docker save``), at
``cache_dir()/images/<service>-<tag>-<image id>.docker.tar``: a rebuilt image has another ID,
so another archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stacktools.builds import docker, images
from stacktools.builds.gobuild import PREPARE_HINT, BuildMissingError, file_lock
from stacktools.paths import cache_dir


@dataclass(frozen=True)
class ServiceImage:
    service: str
    ref: str  # as the roles write it: gateway-api-stack/<service>:<tag>
    tag: str
    base: str  # what it was built FROM, as the image builds describe it (stand-in named)
    archive: Path


def _service_image(service: str) -> ServiceImage:
    image = images.image(service)  # BuildMissingError naming `make prepare` when not built
    image_id = image.image_id.removeprefix("sha256:")[:12]
    archive = cache_dir() / "images" / f"{service}-{image.tag}-{image_id}.docker.tar"
    kind = "STAND-IN base" if image.standin else "base"
    return ServiceImage(service, image.ref, image.tag, f"{kind} {image.base}", archive)


def ensure_archives() -> str:
    """The set-up step: ``docker save`` each service image whose archive is missing."""
    saved = []
    for service in images.SERVICES:
        image = _service_image(service)
        if not image.archive.is_file():
            with file_lock(cache_dir() / "locks" / f"save-{service}.lock"):
                if not image.archive.is_file():
                    image.archive.parent.mkdir(parents=True, exist_ok=True)
                    partial = image.archive.with_suffix(".partial")
                    docker.run(["save", "-o", str(partial), image.ref], timeout=900)
                    partial.replace(image.archive)
        saved.append(str(image.archive))
    return ", ".join(saved)


def archives() -> dict[str, ServiceImage]:
    """The archives of the images the set-up step built for HEAD; BuildMissingError naming
    ``make prepare`` when one is missing."""
    found = {}
    for service in images.SERVICES:
        image = _service_image(service)
        if not image.archive.is_file():
            msg = f"no image archive {image.archive} of {image.ref}: {PREPARE_HINT}"
            raise BuildMissingError(msg)
        found[service] = image
    return found
