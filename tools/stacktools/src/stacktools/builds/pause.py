"""The ``pause`` program: the init process of every pod sandbox (and of the node's own PID
namespace, stacktools.servers.node), compiled from ``build/pause/linux/pause.c`` of the
``k8s.io/kubernetes`` module the control plane is built from, as Kubernetes' own build does
(a static binary, ``-Os -Wall -Werror -static``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from stacktools.builds.controlplane import KUBERNETES_VERSION
from stacktools.builds.gobuild import BuildError, file_lock, module_source, require_built
from stacktools.paths import cache_dir

# Pinned: PauseVersion of kubeadm v1.36.3 (cmd/kubeadm/app/constants/constants.go); pause.c
# itself comes from k8s.io/kubernetes at KUBERNETES_VERSION.
VERSION = "3.10.2"
DEBIAN_PACKAGES = ("gcc", "libc6-dev")
SOURCE = Path("build/pause/linux/pause.c")


def binary_path() -> Path:
    return cache_dir() / "bin" / f"pause-{VERSION}-k8s-{KUBERNETES_VERSION}" / "pause"


def ensure_binary() -> Path:
    """The cached static pause binary, compiling it first when missing (set-up step)."""
    target = binary_path()
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "pause.lock"):
        if target.is_file():
            return target
        compiler = shutil.which("gcc")
        if compiler is None:
            msg = "gcc is required to compile pause (Debian: apt-get install gcc libc6-dev)"
            raise BuildError(msg)
        source = module_source("k8s.io/kubernetes", KUBERNETES_VERSION) / SOURCE
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        print(f"compiling {source} -> {target}", file=sys.stderr, flush=True)
        result = subprocess.run(
            [
                compiler,
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{VERSION}",
                "-o",
                str(partial),
                str(source),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            msg = f"compiling {source} failed:\n{result.stderr}"
            raise BuildError(msg)
        partial.replace(target)
    return target


def binary() -> Path:
    target = binary_path()
    require_built([target], f"pause {VERSION}")
    return target
