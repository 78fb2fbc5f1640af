"""Build (or reuse) etcd, kube-apiserver and kube-controller-manager from tools/controlplane.

The Go module in ``tools/controlplane`` pins Kubernetes and etcd (see its go.mod). The three
binaries go to ``cache_dir()/bin/controlplane-<kubernetes version>-<hash>/``, where the hash
covers go.mod, go.sum, the module's own Go sources and the build flags, so a change to any of
them builds afresh while unchanged clones share one build. A file lock keeps parallel test
runs from building twice.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from stacktools.build import BuildError, file_lock, go_build, require_go_version
from stacktools.paths import cache_dir

# Pinned in tools/controlplane/go.mod; repeated here for the cache key, the version stamp
# and messages. A test checks that both places agree.
KUBERNETES_VERSION = "v1.36.3"
# The minor that schema validation (kubernetes-validate) targets too.
KUBERNETES_MINOR = ".".join(KUBERNETES_VERSION.removeprefix("v").split(".")[:2])
ETCD_VERSION = "v3.6.8"
# k8s.io/kubernetes v1.36.3 declares `go 1.26.0` in its go.mod.
GO_MINIMUM = (1, 26)

PACKAGES = {
    "etcd": "./cmd/etcd",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
}


def _version_ldflags() -> str:
    """Stamp the release version the way Kubernetes' own build does (hack/lib/version.sh)."""
    major, minor, _ = KUBERNETES_VERSION.removeprefix("v").split(".")
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


BUILD_FLAGS = ("-mod=readonly", f"-ldflags={_version_ldflags()}")
BUILD_ENV = {"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-buildvcs=false"}


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path


def module_dir() -> Path:
    """tools/controlplane of this checkout (found from this file, else from the cwd)."""
    here = Path(__file__).resolve()
    for start in (here, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            module = candidate / "tools" / "controlplane"
            if (module / "go.mod").is_file():
                return module
    msg = "cannot find tools/controlplane/go.mod; run from a checkout of the repository"
    raise BuildError(msg)


def source_hash(module: Path) -> str:
    """Hash of everything that decides the binaries' content."""
    digest = hashlib.sha256()
    files = [module / "go.mod", module / "go.sum", *sorted(module.rglob("*.go"))]
    for path in files:
        digest.update(path.relative_to(module).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(repr((BUILD_FLAGS, sorted(BUILD_ENV.items()))).encode())
    return digest.hexdigest()[:16]


def binaries_dir(module: Path | None = None) -> Path:
    module = module or module_dir()
    return cache_dir() / "bin" / f"controlplane-{KUBERNETES_VERSION}-{source_hash(module)}"


def _binaries(directory: Path) -> Binaries:
    return Binaries(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=directory / "kube-controller-manager",
    )


def ensure_binaries() -> Binaries:
    """The cached binaries, building the missing ones first (cold: many minutes)."""
    module = module_dir()
    directory = binaries_dir(module)
    wanted = {name: directory / name for name in PACKAGES}
    if all(path.is_file() for path in wanted.values()):
        return _binaries(directory)
    with file_lock(cache_dir() / "locks" / "controlplane.lock"):
        missing = {name: path for name, path in wanted.items() if not path.is_file()}
        if missing:
            require_go_version(GO_MINIMUM, f"Kubernetes {KUBERNETES_VERSION}")
            for name, path in missing.items():
                go_build(module, PACKAGES[name], path, env=BUILD_ENV, flags=BUILD_FLAGS)
    return _binaries(directory)


def prune_old_builds(keep: Path) -> list[Path]:
    """Remove other controlplane-* build folders from the cache (they are ~300 MB each)."""
    removed = []
    for folder in (cache_dir() / "bin").glob("controlplane-*"):
        if folder.is_dir() and folder != keep:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
