"""``make release``: the collection tarball and both images, tagged with the version of galaxy.yml.

    python -m stacktools release [--dist DIR] [--registry HOST/OWNER [--push]] [--no-images]
                                 [--base official|REF] [--dry-run]

The version lives in galaxy.yml only. A release needs its changelog first: the version must be
a release of ``changelogs/changelog.yaml`` and no fragment may be pending (``make changelog``
makes both true); otherwise nothing is built and the message says so. Then:

* ``<dist>/<namespace>-<name>-<version>.tar.gz``, the collection (the set-up step's build);
* ``gateway-api-stack/<service>:<version>`` for the apiserver and the pipeline image (the
  repositories the roles deploy), built by the project's one image build
  (``stacktools.builds.images``: the committed files, FROM the official base unless ``--base``
  names another), each also tagged ``<registry>/gateway-api-stack/<service>:<version>`` with
  ``--registry``, and pushed there with ``--push`` (what the release workflow does).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from stacktools.builds import collection, docker
from stacktools.builds import images as service_images
from stacktools.builds.gobuild import BuildError
from stacktools.paths import repo_root


class ReleaseError(BuildError):
    """The release cannot be made as things are; the message says what to do."""


@dataclass(frozen=True)
class Image:
    """A released image: the service under services/ and its tags."""

    service: str
    tags: tuple[str, ...]


def version(root: Path) -> str:
    return str(collection.metadata(root)["version"])


def changelog_problems(root: Path, release: str) -> list[str]:
    """What keeps ``release`` from being released: no changelog entry, pending fragments."""
    problems = []
    changes = root / "changelogs" / "changelog.yaml"
    releases = (yaml.safe_load(changes.read_text()) or {}).get("releases") or {}
    if release not in {str(name) for name in releases}:
        problems.append(f"{changes.relative_to(root)} has no release {release}")
    pending = sorted(
        path.name
        for pattern in ("*.yml", "*.yaml")
        for path in (root / "changelogs" / "fragments").glob(pattern)
    )
    if pending:
        problems.append(f"changelog fragments not yet in a release: {', '.join(pending)}")
    return problems


def images(release: str, registry: str | None = None) -> list[Image]:
    """The released images: ``gateway-api-stack/<service>:<release>``, the repositories the roles
    deploy (``apiserver_image_repository``, ``dagster_pipeline_image_repository``, in
    ``<registry>/`` when ``stack_image_registry`` names one), tagged ``release``."""
    found = []
    for service in service_images.SERVICES:
        repository = f"{service_images.REPOSITORY}/{service}"
        tags = [f"{repository}:{release}"]
        if registry:
            tags.append(f"{registry.rstrip('/')}/{repository}:{release}")
        found.append(Image(service, tuple(tags)))
    return found


def build_images(root: Path, wanted: Sequence[Image], base: str, *, push: bool) -> list[str]:
    """Each image built by the one build path of the project (stacktools.builds.images: the
    committed files, BuildKit, FROM ``base``), then tagged with the release's tags; the last tag
    pushed with ``push``. What was made, one line each."""
    made = []
    with service_images.committed_context(root) as context:
        chosen = service_images.resolve_base(base)
        for image in wanted:
            built = service_images.build(context, image.service, chosen)
            for tag in image.tags:
                docker.run(["tag", built.image.ref, tag])
                made.append(tag)
            if push:  # the registry's tag: the last one
                service_images.push(image.tags[-1])
                made.append(f"pushed {image.tags[-1]}")
    return made


def release(
    root: Path,
    dist: Path,
    *,
    registry: str | None,
    with_images: bool,
    dry_run: bool,
    push: bool = False,
    base: str = "official",
) -> list[str]:
    """Make the release (or with ``dry_run`` only say what it would make); what it made."""
    release_version = version(root)
    problems = changelog_problems(root, release_version)
    if push and not (registry and with_images):
        problems.append("--push needs --registry and the images")
    if problems:
        msg = (
            f"cannot release {release_version}: {'; '.join(problems)}. Run `make changelog` "
            "(antsibull-changelog release) and commit changelogs/ and CHANGELOG.md first."
        )
        raise ReleaseError(msg)
    meta = collection.metadata(root)
    tarball = dist / f"{meta['namespace']}-{meta['name']}-{release_version}.tar.gz"
    if not dry_run:
        dist.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(collection.ensure_collection().tarball, tarball)
    made = [str(tarball)]
    if with_images:
        wanted = images(release_version, registry)
        if dry_run:
            for image in wanted:
                made.extend(image.tags)
                if push:
                    made.append(f"pushed {image.tags[-1]}")
        else:
            made.extend(build_images(root, wanted, base, push=push))
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools release",
        description="Build the collection tarball and both images with the version tag.",
    )
    parser.add_argument("--dist", type=Path, default=None, help="output folder (default: dist/)")
    parser.add_argument("--registry", help="also tag the images <registry>/<repository>:<version>")
    parser.add_argument("--push", action="store_true", help="push the images to --registry")
    parser.add_argument("--no-images", action="store_true", help="only the collection tarball")
    parser.add_argument("--dry-run", action="store_true", help="check and print, build nothing")
    parser.add_argument(
        "--base",
        default="official",
        help="the images' base: official (python:3.11-slim-bookworm, the default), or a reference",
    )
    args = parser.parse_args(argv)
    root = repo_root()
    try:
        made = release(
            root,
            args.dist or root / "dist",
            registry=args.registry,
            with_images=not args.no_images,
            dry_run=args.dry_run,
            push=args.push,
            base=args.base,
        )
    except BuildError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    verb = "would make" if args.dry_run else "made"
    print(f"release {version(root)}: {verb}")
    for item in made:
        print(f"  {item}")
    return 0
