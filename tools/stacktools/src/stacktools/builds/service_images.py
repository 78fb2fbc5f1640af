"""The two services' images as archives the node imports: ``docker save`` of the images that
the image builds left in the Docker engine (``gateway-api-stack/<service>:<content tag>``, the
tag the roles deploy), written by the set-up step to
``cache_dir()/images/<service>-<tag>-<image id>.docker.tar``."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds.gobuild import PREPARE_HINT, BuildError, BuildMissingError, file_lock
from stacktools.paths import cache_dir, repo_root

SERVICES = ("apiserver", "pipeline")
REPOSITORY = "gateway-api-stack"
# The label the image builds put on an image: the base image it was built FROM.
BASE_LABEL = "io.github.gateway-api-stack.base"


@dataclass(frozen=True)
class ServiceImage:
    service: str
    ref: str  # as the roles write it: gateway-api-stack/<service>:<tag>
    tag: str
    base: str  # the image it was built FROM (the stand-in base, say)
    archive: Path


def content_tag(service: str) -> str:
    """The tag the roles deploy (playbooks/lookup_plugins/stack_image_tag.py)."""
    root = repo_root()
    path = root / "playbooks" / "lookup_plugins" / "stack_image_tag.py"
    spec = importlib.util.spec_from_file_location("stack_image_tag", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise BuildError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tag: str = module.source_tag(root, service)
    return tag


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        msg = f"`docker` is not on PATH; the services' images come from it: {PREPARE_HINT}"
        raise BuildMissingError(msg)
    return docker


def _inspect(ref: str) -> dict[str, object] | None:
    result = subprocess.run(
        [_docker(), "image", "inspect", ref], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found[0] if found else None


def _image(service: str) -> ServiceImage:
    tag = content_tag(service)
    ref = f"{REPOSITORY}/{service}:{tag}"
    inspected = _inspect(ref)
    if inspected is None:
        msg = f"image {ref} is not in the Docker engine: {PREPARE_HINT}"
        raise BuildMissingError(msg)
    image_id = str(inspected["Id"]).removeprefix("sha256:")[:12]
    config = inspected.get("Config") or {}
    labels = (config.get("Labels") if isinstance(config, dict) else None) or {}
    base = str(labels.get(BASE_LABEL, "unknown")) if isinstance(labels, dict) else "unknown"
    archive = cache_dir() / "images" / f"{service}-{tag}-{image_id}.docker.tar"
    return ServiceImage(service, ref, tag, base, archive)


def _metadata(archive: Path) -> Path:
    return archive.with_name(archive.name + ".json")


def ensure_archives() -> dict[str, ServiceImage]:
    """``docker save`` each service image whose archive is missing (set-up step)."""
    images = {}
    for service in SERVICES:
        image = _image(service)
        if not image.archive.is_file():
            with file_lock(cache_dir() / "locks" / f"save-{service}.lock"):
                if not image.archive.is_file():
                    image.archive.parent.mkdir(parents=True, exist_ok=True)
                    partial = image.archive.with_suffix(".partial")
                    result = subprocess.run(
                        [_docker(), "save", "-o", str(partial), image.ref],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if result.returncode != 0:
                        msg = f"docker save {image.ref} failed: {result.stderr.strip()}"
                        raise BuildError(msg)
                    _metadata(image.archive).write_text(
                        json.dumps({"ref": image.ref, "tag": image.tag, "base": image.base}) + "\n"
                    )
                    partial.replace(image.archive)
        images[service] = image
    return images


def archives() -> dict[str, ServiceImage]:
    """The archives of the images of this checkout's content tags (no Docker needed);
    :class:`BuildMissingError` when the set-up step has not written them."""
    images = {}
    for service in SERVICES:
        tag = content_tag(service)
        found = sorted(
            (cache_dir() / "images").glob(f"{service}-{tag}-*.docker.tar"),
            key=lambda p: p.stat().st_mtime,
        )
        if not found:
            msg = f"no image archive of {REPOSITORY}/{service}:{tag} in {cache_dir() / 'images'}"
            raise BuildMissingError(f"{msg}: {PREPARE_HINT}")
        meta = json.loads(_metadata(found[-1]).read_text())
        images[service] = ServiceImage(service, meta["ref"], tag, meta["base"], found[-1])
    return images
