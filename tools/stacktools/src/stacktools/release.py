"""``make release``: the collection tarball and both images, tagged with the version of galaxy.yml.

    python -m stacktools release [--dist DIR] [--registry HOST/OWNER [--push]] [--no-images]
                                 [--dry-run]

The version lives in galaxy.yml only. A release needs its changelog first: the version must be
a release of ``changelogs/changelog.yaml`` and no fragment may be pending (``make changelog``
makes both true); otherwise nothing is built and the message says so. Then:

* ``<dist>/<namespace>-<name>-<version>.tar.gz``, the collection (the set-up step's build);
* ``<repository>:<version>`` for the apiserver and the pipeline image, where the repositories are
  the role defaults the collection deploys (``apiserver_image_repository``,
  ``dagster_pipeline_image_repository``), each also tagged ``<registry>/<repository>:<version>``
  with ``--registry``, and pushed there with ``--push`` (what the release workflow does).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from stacktools.builds import collection
from stacktools.builds.gobuild import BuildError
from stacktools.paths import repo_root

# service -> (role, variable): the role default that names the image's repository.
IMAGE_REPOSITORIES = {
    "apiserver": ("apiserver", "apiserver_image_repository"),
    "pipeline": ("dagster", "dagster_pipeline_image_repository"),
}


class ReleaseError(BuildError):
    """The release cannot be made as things are; the message says what to do."""


@dataclass(frozen=True)
class Image:
    service: str
    dockerfile: Path
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


def images(root: Path, release: str, registry: str | None = None) -> list[Image]:
    """The released images: each service's repository (its role default) tagged ``release``."""
    found = []
    for service, (role, variable) in IMAGE_REPOSITORIES.items():
        defaults = yaml.safe_load((root / "roles" / role / "defaults" / "main.yml").read_text())
        repository = str(defaults[variable])
        tags = [f"{repository}:{release}"]
        if registry:
            tags.append(f"{registry.rstrip('/')}/{repository}:{release}")
        found.append(Image(service, root / "services" / service / "Dockerfile", tuple(tags)))
    return found


def docker_build_command(image: Image, root: Path) -> list[str]:
    """How one image is built: its Dockerfile, the repository root as the context (as
    playbooks/kind.yml builds them).

    The hook for stacktools.builds.images: once the image builds of the test set-up (a context
    of the committed files, BuildKit, the per-Dockerfile ignore files) land, the release builds
    through them instead of this command."""
    command = ["docker", "build", "--file", str(image.dockerfile)]
    for tag in image.tags:
        command += ["--tag", tag]
    return [*command, str(root)]


def _docker(command: list[str]) -> None:
    if shutil.which("docker") is None:
        msg = "docker is needed to build the images (or run with --no-images)"
        raise ReleaseError(msg)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        msg = f"`{' '.join(command)}` failed with exit code {result.returncode}"
        raise ReleaseError(msg)


def release(
    root: Path,
    dist: Path,
    *,
    registry: str | None,
    with_images: bool,
    dry_run: bool,
    push: bool = False,
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
        for image in images(root, release_version, registry):
            if not dry_run:
                _docker(docker_build_command(image, root))
            made.extend(image.tags)
            if push:  # the registry's tag: the last one
                if not dry_run:
                    _docker(["docker", "push", image.tags[-1]])
                made.append(f"pushed {image.tags[-1]}")
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
        )
    except BuildError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    verb = "would make" if args.dry_run else "made"
    print(f"release {version(root)}: {verb}")
    for item in made:
        print(f"  {item}")
    return 0
