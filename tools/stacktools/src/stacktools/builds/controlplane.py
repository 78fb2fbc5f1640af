"""Build (or reuse) the Kubernetes binaries from tools/controlplane: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler (the control plane), kubelet and kube-proxy (the
node, stacktools.servers.node) and kubectl (the node tests drain with it).

The Go module in ``tools/controlplane`` pins Kubernetes and etcd (see its go.mod). The
binaries go to ``cache_dir()/bin/controlplane-<kubernetes version>-<hash>/``, where the hash
covers go.mod, go.sum, the module's own Go sources and the build flags, so a change to any of
them builds afresh while unchanged clones share one build. A file lock keeps parallel test
runs from building twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stacktools.builds.gobuild import (
    file_lock,
    go_build,
    repo_go_module,
    require_built,
    require_go_version,
    source_hash,
)
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
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    # The client the benchmarks compare Ansible with (`kubectl apply --server-side`), the node
    # tests' drain, and a way for a person to look at the test cluster.
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
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
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    kubectl: Path


def module_dir() -> Path:
    return repo_go_module("controlplane")


def binaries_dir(module: Path | None = None) -> Path:
    module = module or module_dir()
    key = source_hash(module, (BUILD_FLAGS, sorted(BUILD_ENV.items())))
    return cache_dir() / "bin" / f"controlplane-{KUBERNETES_VERSION}-{key}"


def _binaries(directory: Path) -> Binaries:
    return Binaries(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=directory / "kube-controller-manager",
        kube_scheduler=directory / "kube-scheduler",
        kubelet=directory / "kubelet",
        kube_proxy=directory / "kube-proxy",
        kubectl=directory / "kubectl",
    )


def binaries() -> Binaries:
    """The cached binaries; :class:`BuildMissingError` when the set-up step has not built them."""
    directory = binaries_dir()
    require_built([directory / name for name in PACKAGES], f"Kubernetes {KUBERNETES_VERSION}")
    return _binaries(directory)


def ensure_binaries() -> Binaries:
    """The cached binaries, building the missing ones first (set-up step; cold: minutes)."""
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
