"""The ``docker`` client the image builds use: the first one on PATH that can build with
BuildKit (a client before 23.0 does with ``DOCKER_BUILDKIT=1``; a newer one needs the buildx
plugin, which a static client dropped into /usr/local/bin often lacks)."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stacktools.builds.gobuild import BuildError

# Clients from 23.0 on build with buildx only; older ones have BuildKit built in.
BUILDX_REQUIRED_FROM = (23, 0)
ENGINE_HINT = "run `make prepare` (it finds or starts the engine) or start Docker yourself"


def _clients() -> list[str]:
    seen: list[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / "docker"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = str(candidate.resolve())
            if real not in {str(Path(s).resolve()) for s in seen}:
                seen.append(str(candidate))
    return seen


def _client_version(docker: str) -> tuple[int, int] | None:
    result = subprocess.run(
        [docker, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    match = re.match(r"(\d+)\.(\d+)", result.stdout.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _has_buildx(docker: str) -> bool:
    result = subprocess.run(
        [docker, "buildx", "version"], capture_output=True, timeout=30, check=False
    )
    return result.returncode == 0


@functools.cache
def docker() -> str:
    """Path of a docker client that builds with BuildKit; BuildError naming the ones found."""
    clients = _clients()
    if not clients:
        msg = f"`docker` is not on PATH: {ENGINE_HINT}"
        raise BuildError(msg)
    for client in clients:
        version = _client_version(client)
        if version is not None and (version < BUILDX_REQUIRED_FROM or _has_buildx(client)):
            return client
    msg = (
        f"no docker client on PATH can build with BuildKit ({', '.join(clients)}: 23.0 or "
        "newer without the buildx plugin). Install the buildx plugin, or Debian's docker.io."
    )
    raise BuildError(msg)


def load_flags() -> list[str]:
    """``--load`` for a buildx client (its builder may keep the image out of the engine's
    image store otherwise); a client before 23.0 has no such flag and always loads."""
    version = _client_version(docker())
    return ["--load"] if version is not None and version >= BUILDX_REQUIRED_FROM else []


def run(
    args: Sequence[str], *, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``docker ARGS``; with ``check`` a failure raises BuildError with its output."""
    result = subprocess.run(
        [docker(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        msg = f"`docker {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}"
        raise BuildError(msg)
    return result


def inspect_image(ref: str) -> dict[str, Any] | None:
    """``docker image inspect`` of ``ref``, or None when the engine has no such image."""
    result = run(["image", "inspect", ref], check=False, timeout=60)
    if result.returncode != 0:
        if "No such image" in result.stderr or "No such object" in result.stderr:
            return None
        msg = f"`docker image inspect {ref}` failed: {result.stderr.strip()} ({ENGINE_HINT})"
        raise BuildError(msg)
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found[0]


def labels(image: dict[str, Any]) -> dict[str, str]:
    return dict((image.get("Config") or {}).get("Labels") or {})


def buildkit_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "1"}
