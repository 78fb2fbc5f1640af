"""Helm clients built from the Go module proxy: Helm 3 (what the roles are tested with) and
Helm 4 (what Homebrew installs today), each from its own module's go.mod and go.sum.

Each is built from the module archive (``go mod download helm.sh/helm/v<N>@<version>``) with
the ldflags of Helm's own Makefile (version stamp, and the Kubernetes version that ``helm
template``/``lint`` assume, taken from the module's k8s.io/client-go), into
``cache_dir()/bin/helm-<version>-<hash>/helm``. Tests put that folder on PATH for Ansible's
helm modules; they never build.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds.gobuild import (
    BuildError,
    file_lock,
    go_build,
    module_source,
    require_built,
    require_go_version,
)
from stacktools.paths import cache_dir


@dataclass(frozen=True)
class HelmClient:
    """One pinned Helm client: its major, Go module and version."""

    major: int
    module: str
    version: str

    @property
    def label(self) -> str:
        return f"Helm {self.version}"


# Pinned: the newest Helm 3 and Helm 4 releases the Go module proxy served on 2026-11-29
# (`go list -m -versions helm.sh/helm/v3` / `helm.sh/helm/v4`). Both need Go 1.26.
HELM3 = HelmClient(3, "helm.sh/helm/v3", "v3.22.0")
HELM4 = HelmClient(4, "helm.sh/helm/v4", "v4.3.2")
CLIENTS = {client.major: client for client in (HELM3, HELM4)}
GO_MINIMUM = (1, 26)
BUILD_ENV = {"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-buildvcs=false -mod=readonly"}
# Bump when _ldflags changes what goes into the binary (part of the cache key).
LDFLAGS_SCHEME = 1


def client(major: int) -> HelmClient:
    try:
        return CLIENTS[major]
    except KeyError:
        msg = f"no pinned Helm {major} client; known majors: {sorted(CLIENTS)}"
        raise BuildError(msg) from None


def _ldflags(helm: HelmClient, client_go: str) -> str:
    """The ldflags of Helm's Makefile: version stamp and the Kubernetes version Helm assumes
    offline (client-go v0.X.Y -> Kubernetes 1.X)."""
    match = re.fullmatch(r"v0\.(\d+)\.\d+", client_go)
    if match is None:
        msg = f"{helm.module}@{helm.version} requires k8s.io/client-go {client_go}, not v0.X.Y"
        raise BuildError(msg)
    package = f"{helm.module}/internal/version"
    flags = ["-s", "-w", f"-X {package}.version={helm.version}", f"-X {package}.gitTreeState=clean"]
    if helm.major == 3:  # Helm 4 derives these from client-go itself
        for target in ("pkg/lint/rules", "pkg/chartutil"):
            flags += [
                f"-X {helm.module}/{target}.k8sVersionMajor=1",
                f"-X {helm.module}/{target}.k8sVersionMinor={match.group(1)}",
            ]
    return "-ldflags=" + " ".join(flags)


def _client_go_version(source: Path) -> str:
    for line in (source / "go.mod").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["k8s.io/client-go"] and len(parts) >= 2:
            return parts[1]
    msg = f"{source}/go.mod requires no k8s.io/client-go"
    raise BuildError(msg)


def _key(helm: HelmClient) -> str:
    what = repr((helm.module, helm.version, sorted(BUILD_ENV.items()), LDFLAGS_SCHEME))
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def bin_dir(major: int = 3) -> Path:
    """The folder holding the ``helm`` of that major (what tests put first on PATH)."""
    helm = client(major)
    return cache_dir() / "bin" / f"helm-{helm.version}-{_key(helm)}"


def ensure_binary(major: int) -> Path:
    """The cached ``helm`` of that major, building it first when missing (set-up step)."""
    helm = client(major)
    target = bin_dir(major) / "helm"
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / f"helm{major}.lock"):
        if not target.is_file():
            require_go_version(GO_MINIMUM, helm.label)
            source = module_source(helm.module, helm.version)
            flags = (_ldflags(helm, _client_go_version(source)),)
            go_build(source, "./cmd/helm", target, env=BUILD_ENV, flags=flags)
    return target


def ensure_binaries() -> list[Path]:
    """Both clients (the set-up step's entry)."""
    return [ensure_binary(major) for major in sorted(CLIENTS)]


def binary(major: int = 3) -> Path:
    """The cached ``helm``; :class:`BuildMissingError` when the set-up step has not built it."""
    target = bin_dir(major) / "helm"
    require_built([target], client(major).label)
    return target


def binary_version(path: Path) -> str:
    """What ``helm version --template {{.Version}}`` prints, e.g. ``v3.22.0``."""
    out = subprocess.run(
        [str(path), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools helm",
        description="Where the Helm clients of the set-up step are (put the folder first on PATH).",
    )
    parser.add_argument("command", choices=["path", "version"])
    parser.add_argument("--major", type=int, default=3, choices=sorted(CLIENTS))
    args = parser.parse_args(argv)
    try:
        path = binary(args.major)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path.parent if args.command == "path" else binary_version(path))
    return 0
