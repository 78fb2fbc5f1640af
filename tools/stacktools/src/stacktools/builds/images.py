"""The service images (apiserver, pipeline), built from their real Dockerfiles: the one build
path that ``make prepare`` (for the tests), ``playbooks/kind.yml`` and ``playbooks/images.yml``
(for users) all run, as ``python -m stacktools images build <service> ...``.

* Context: the committed files only (``git archive HEAD`` extracted into a temporary folder),
  built with BuildKit, which reads ``services/<service>/Dockerfile.dockerignore``.
* Tag: the content tag of that context, computed by the ``stack_image_tag`` lookup plugin
  (plugins/lookup), the same function the roles deploy with. Asked for another tag
  (kind.yml passes the working tree's), the build refuses and names the uncommitted files.
* Base: the ``PYTHON_IMAGE`` build argument. ``official`` is the Dockerfiles' default
  (``python:3.11-slim-bookworm``, pulled when missing); ``auto`` (the tests) falls back to the
  stand-in of :mod:`stacktools.builds.standin` when the official image cannot be pulled; any
  other value is an image reference (a mirror of the official image, say).
* Cache: an image ``gateway-api-stack/<service>:<tag>`` whose labels name the same base image
  ID is reused, so a warm run builds nothing.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from stacktools.builds import docker, standin
from stacktools.builds.gobuild import PREPARE_HINT, BuildError, BuildMissingError
from stacktools.paths import cache_dir, repo_root

SERVICES = ("apiserver", "pipeline")
REPOSITORY = "gateway-api-stack"
# The default of the Dockerfiles' PYTHON_IMAGE build argument (a test checks both agree).
OFFICIAL_BASE = "python:3.11-slim-bookworm"
LABEL = "io.github.gateway-api-stack"
BUILD_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Base:
    """The image a build starts FROM (its PYTHON_IMAGE) and the image ID behind it."""

    ref: str
    image_id: str
    standin: bool

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        if self.standin:
            return (
                f"STAND-IN base {self.ref} (Debian bookworm packages; "
                f"{OFFICIAL_BASE} cannot be pulled here)"
            )
        return f"base {self.ref}"


@dataclass(frozen=True)
class Image:
    """A built service image."""

    service: str
    ref: str
    tag: str
    base: str
    standin: bool
    image_id: str
    size: int

    def describe(self) -> str:
        kind = "STAND-IN base" if self.standin else "base"
        return f"{self.ref} ({self.size / 1e6:.0f} MB) FROM {kind} {self.base}"


@dataclass(frozen=True)
class Context:
    """A build context of the committed files and what the working tree adds to it."""

    directory: Path
    commit: str
    tags: dict[str, str]
    worktree_tags: dict[str, str]

    def dockerfile(self, service: str) -> Path:
        return self.directory / "services" / service / "Dockerfile"


def _tag_plugin(root: Path) -> ModuleType:
    """The stack_image_tag lookup plugin: the one definition of a content tag."""
    path = root / "plugins" / "lookup" / "stack_image_tag.py"
    spec = importlib.util.spec_from_file_location("stack_image_tag", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise BuildError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def content_tag(root: Path, service: str) -> str:
    """The content tag of ``services/<service>`` under ``root`` (a checkout or a context)."""
    tag: str = _tag_plugin(repo_root()).source_tag(root, service)
    return tag


def _git(root: Path, *args: str) -> bytes:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    if result.returncode != 0:
        msg = f"`git {' '.join(args)}` failed in {root}: {result.stderr.decode().strip()}"
        raise BuildError(msg)
    return result.stdout


@contextmanager
def committed_context(root: Path | None = None) -> Iterator[Context]:
    """``git archive HEAD`` extracted into a temporary folder, with its content tags."""
    root = root or repo_root()
    commit = _git(root, "rev-parse", "HEAD").decode().strip()
    archive = _git(root, "archive", "--format=tar", commit)
    with tempfile.TemporaryDirectory(prefix="image-context-") as tmp:
        directory = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        yield Context(
            directory,
            commit,
            {service: content_tag(directory, service) for service in SERVICES},
            {service: content_tag(root, service) for service in SERVICES},
        )


def uncommitted(root: Path, service: str) -> list[str]:
    """Files of the working tree that make its content tag differ from HEAD's."""
    paths = [f"services/{service}", "uv.lock", "pyproject.toml"]
    paths += ["tools/*/pyproject.toml", "services/*/pyproject.toml"]
    out = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return [line[3:] for line in out.decode().splitlines() if line.strip()]


def head_tag(service: str) -> str:
    """The content tag of ``service`` at HEAD: the tag ``make prepare`` builds."""
    with committed_context() as context:
        return context.tags[service]


def _official(pull: bool) -> Base | None:
    found = docker.inspect_image(OFFICIAL_BASE)
    if found is None and pull:
        result = docker.run(["pull", OFFICIAL_BASE], check=False, timeout=900)
        if result.returncode == 0:
            found = docker.inspect_image(OFFICIAL_BASE)
        else:
            print(
                f"images: cannot pull {OFFICIAL_BASE}: {result.stderr.strip()}",
                file=sys.stderr,
                flush=True,
            )
    return None if found is None else Base(OFFICIAL_BASE, str(found["Id"]), standin=False)


@functools.cache
def resolve_base(choice: str) -> Base:
    """The base of ``choice``: ``official``, ``auto`` (official, else the stand-in) or a ref."""
    if choice in ("official", "auto"):
        base = _official(pull=True)
        if base is not None:
            return base
        if choice == "official":
            msg = (
                f"the base image {OFFICIAL_BASE} is not here and cannot be pulled; pull it, "
                "or pass the reference of a copy you can reach (stack_image_base in Ansible)"
            )
            raise BuildError(msg)
        image = standin.ensure()
        found = docker.inspect_image(image)
        if found is None:
            msg = f"the stand-in base {image} is missing right after its build"
            raise BuildError(msg)
        return Base(image, str(found["Id"]), standin=True)
    found = docker.inspect_image(choice)
    if found is None:
        docker.run(["pull", choice], timeout=900)
        found = docker.inspect_image(choice)
    if found is None:
        msg = f"the base image {choice} cannot be found or pulled"
        raise BuildError(msg)
    is_standin = choice.startswith(standin.REPOSITORY + ":")
    return Base(choice, str(found["Id"]), standin=is_standin)


def base_for_tests() -> Base:
    """The set-up step's base: the official image when it can be had, else the stand-in."""
    base = resolve_base("auto")
    print(f"images: FROM {base.describe()}", file=sys.stderr, flush=True)
    return base


def local_ref(service: str, tag: str) -> str:
    return f"{REPOSITORY}/{service}:{tag}"


def build_argv(context: Context, service: str, base: Base) -> list[str]:
    """The ``docker build`` arguments of a service image: the same for every caller."""
    tag = context.tags[service]
    return [
        "build",
        "--file",
        str(context.dockerfile(service)),
        "--tag",
        local_ref(service, tag),
        "--build-arg",
        f"PYTHON_IMAGE={base.ref}",
        "--label",
        f"{LABEL}.base={base.ref}",
        "--label",
        f"{LABEL}.base-id={base.image_id}",
        "--label",
        f"{LABEL}.content-tag={tag}",
        "--progress",
        "plain",
        *docker.load_flags(),
        str(context.directory),
    ]


def _image(service: str, ref: str) -> Image | None:
    found = docker.inspect_image(ref)
    if found is None:
        return None
    labels = docker.labels(found)
    base = labels.get(f"{LABEL}.base", "")
    return Image(
        service=service,
        ref=ref,
        tag=ref.rsplit(":", 1)[1],
        base=base,
        standin=base.startswith(standin.REPOSITORY + ":"),
        image_id=str(found["Id"]),
        size=int(found.get("Size") or 0),
    )


def _is_current(ref: str, base: Base) -> bool:
    found = docker.inspect_image(ref)
    return found is not None and docker.labels(found).get(f"{LABEL}.base-id") == base.image_id


def _run_build(argv: list[str], log: Path) -> None:
    """``docker build`` with BuildKit; step lines to stderr, everything to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [docker.docker(), *argv],
            env=docker.buildkit_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if line.startswith("#") and (" [" in line or "DONE" in line or "ERROR" in line):
                print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
        code = process.wait(timeout=BUILD_TIMEOUT)
    if code != 0:
        tail = log.read_text(errors="replace")[-4000:]
        msg = f"`docker {' '.join(argv[:3])} ...` failed ({code}); its log {log} ends:\n{tail}"
        raise BuildError(msg)


@dataclass(frozen=True)
class Built:
    image: Image
    built: bool
    seconds: float


def build(context: Context, service: str, base: Base) -> Built:
    """The service image of ``context`` FROM ``base``, built unless it is current already."""
    ref = local_ref(service, context.tags[service])
    began = time.monotonic()
    built = False
    if not _is_current(ref, base):
        print(f"images: building {ref} FROM {base.ref}", file=sys.stderr, flush=True)
        _run_build(build_argv(context, service, base), cache_dir() / "images" / f"{service}.log")
        built = True
    image = _image(service, ref)
    if image is None:
        msg = f"`docker build` ended without an image {ref} in the engine's image store"
        raise BuildError(msg)
    return Built(image, built, time.monotonic() - began)


def ensure_images(report: Callable[[str], None] | None = None) -> str:
    """The set-up step: both images of HEAD, FROM the official base or else the stand-in;
    returns one line naming them."""
    say = report or (lambda text: print(text, file=sys.stderr, flush=True))
    base = resolve_base("auto")
    built: list[Image] = []
    root = repo_root()
    with committed_context(root) as context:
        for service in SERVICES:
            result = build(context, service, base)
            built.append(result.image)
            what = "built" if result.built else "present"
            say(f"images: {service} {what} ({result.seconds:.0f} s): {result.image.describe()}")
            if context.tags[service] != context.worktree_tags[service]:
                changed = ", ".join(uncommitted(root, service)) or "untracked files"
                say(
                    f"images: NOTE {service} is built from HEAD ({context.commit[:12]}); "
                    f"uncommitted changes are not in it: {changed}"
                )
    return "; ".join(image.describe() for image in built)


def image(service: str) -> Image:
    """The image ``make prepare`` built for HEAD; BuildMissingError naming it otherwise."""
    ref = local_ref(service, head_tag(service))
    try:
        found = _image(service, ref)
    except BuildError as exc:
        msg = f"the {service} image {ref} cannot be inspected ({exc}): {PREPARE_HINT}"
        raise BuildMissingError(msg) from exc
    if found is None:
        msg = f"the {service} image {ref} is not built: {PREPARE_HINT}"
        raise BuildMissingError(msg)
    return found


def push(ref: str) -> bool:
    """``docker push`` ``ref``; whether anything changed in the registry: a layer uploaded, or
    the image not pushed to that repository before (its manifest is new there). A content tag
    always names the same content, so a repeated push changes nothing."""
    repository = ref.rsplit(":", 1)[0]
    before = docker.inspect_image(ref)
    known = before is not None and any(
        digest.startswith(repository + "@") for digest in before.get("RepoDigests") or []
    )
    result = docker.run(["push", ref], timeout=BUILD_TIMEOUT)
    uploaded = any(line.rstrip().endswith("Pushed") for line in result.stdout.splitlines())
    return uploaded or not known


def _requested(context: Context, service: str, ref: str | None) -> str:
    """The reference asked for, after checking that its tag is the committed content's."""
    tag = context.tags[service]
    if ref is None:
        return local_ref(service, tag)
    wanted = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else ""
    if wanted != tag:
        changed = uncommitted(repo_root(), service)
        msg = (
            f"{ref}: the committed files of {service} (HEAD {context.commit[:12]}) have the "
            f"content tag {tag}, not {wanted or '(none)'}. Images are built from committed "
            f"files only; commit or stash: {', '.join(changed) or '(no uncommitted file)'}. "
            "A tag of your own (apiserver_image_tag, dagster_pipeline_image_tag) means an "
            "image you build yourself."
        )
        raise BuildError(msg)
    return ref


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools images",
        description="Build the service images from the committed files (see stacktools.builds"
        ".images); kind.yml, images.yml and make prepare run this.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build (or reuse) one service image")
    build_cmd.add_argument("service", choices=SERVICES)
    build_cmd.add_argument(
        "--image", help="reference to tag it as (its tag must be the content tag)"
    )
    build_cmd.add_argument(
        "--base", default="official", help="official (default), auto, or an image reference"
    )
    build_cmd.add_argument("--push", action="store_true", help="docker push the --image")
    commands.add_parser("tags", help="print the content tags of HEAD as JSON")
    args = parser.parse_args(argv)
    try:
        with committed_context() as context:
            if args.command == "tags":
                print(json.dumps(context.tags))
                return 0
            ref = _requested(context, args.service, args.image)
            result = build(context, args.service, resolve_base(args.base))
            if ref != result.image.ref:
                docker.run(["tag", result.image.ref, ref])
            pushed = push(ref) if args.push else False
            print(json.dumps({"image": ref, "built": result.built, "pushed": pushed}))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
