"""The images the node needs besides the two services' images: one static binary each.

| image | what runs it |
|---|---|
| ``gateway-api-stack/pause`` | every pod sandbox (containerd's sandbox image) |
| ``gateway-api-stack/coredns`` | the cluster DNS (``kube-dns``) |
| ``gateway-api-stack/metrics-server`` | ``metrics.k8s.io`` for the HorizontalPodAutoscaler |
| ``gateway-api-stack/ferretdb`` | the stand-in for MongoDB behind ``mongodb-svc`` (no MongoDB |
|  | server image can be had here) |

Each is an OCI archive written by :mod:`stacktools.builds.oci` from the binary the set-up step
built, at ``cache_dir()/images/<name>-<tag>-<digest of the binary>.oci.tar``; the node imports
them into its containerd.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds import coredns, ferretdb, metrics_server, pause
from stacktools.builds.gobuild import file_lock, require_built
from stacktools.builds.oci import NONROOT, ImageSpec, write_archive
from stacktools.paths import cache_dir

REPOSITORY = "docker.io/gateway-api-stack"
# Bump when the archive layout of stacktools.builds.oci changes.
FORMAT = "1"


@dataclass(frozen=True)
class NodeImage:
    """An image archive on disk and the reference it is imported under."""

    name: str
    ref: str
    archive: Path


@dataclass(frozen=True)
class _Recipe:
    name: str
    tag: str
    binary: Callable[[], Path]  # the built binary (raises BuildMissingError)
    ensure: Callable[[], Path]  # builds it when missing (set-up step)
    user: int = NONROOT


RECIPES = (
    _Recipe("pause", pause.VERSION, pause.binary, pause.ensure_binary, user=65535),
    _Recipe("coredns", coredns.VERSION, coredns.binary, coredns.ensure_binary),
    _Recipe(
        "metrics-server",
        metrics_server.VERSION,
        metrics_server.binary,
        metrics_server.ensure_binary,
    ),
    _Recipe("ferretdb", ferretdb.FERRETDB_VERSION, ferretdb.binary, ferretdb.ensure_binary),
)


def _digest(path: Path) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _spec(recipe: _Recipe, binary: Path) -> ImageSpec:
    return ImageSpec(
        name=f"{REPOSITORY}/{recipe.name}",
        tag=recipe.tag,
        files={f"/{recipe.name}": binary},
        entrypoint=[f"/{recipe.name}"],
        user=recipe.user,
        labels={"org.opencontainers.image.version": recipe.tag},
    )


def _image(recipe: _Recipe, binary: Path) -> NodeImage:
    spec = _spec(recipe, binary)
    archive = cache_dir() / "images" / f"{recipe.name}-{recipe.tag}-{_digest(binary)}.oci.tar"
    return NodeImage(recipe.name, spec.ref, archive)


def ensure_images() -> dict[str, NodeImage]:
    """Build the binaries and write the archives that are missing (set-up step)."""
    images = {}
    for recipe in RECIPES:
        binary = recipe.ensure()
        image = _image(recipe, binary)
        if not image.archive.is_file():
            with file_lock(cache_dir() / "locks" / f"image-{recipe.name}.lock"):
                if not image.archive.is_file():
                    write_archive(_spec(recipe, binary), image.archive)
        images[recipe.name] = image
    return images


def images() -> dict[str, NodeImage]:
    """The archives; :class:`BuildMissingError` when the set-up step has not written them."""
    found = {recipe.name: _image(recipe, recipe.binary()) for recipe in RECIPES}
    require_built([image.archive for image in found.values()], "the node's images")
    return found
