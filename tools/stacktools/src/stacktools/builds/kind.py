"""kind (``sigs.k8s.io/kind``) built from the Go module proxy: the release `make deploy` needs at
least, and one older release that the deploy checks must refuse.

No cluster is created with these binaries (that needs Docker); they answer ``kind version`` for
the checks of tools/check-deploy-prereqs.sh and playbooks/kind.yml. Next to each binary the
build records the default node image of that release (``pkg/apis/config/defaults/image.go`` of
the module), the source of the digest pinned in inventories/local (kind_node_image).
"""

from __future__ import annotations

import re
from pathlib import Path

from stacktools.builds.gobuild import (
    BuildError,
    file_lock,
    go_build,
    module_source,
    require_built,
    writable_copy,
)
from stacktools.paths import cache_dir

KIND_MODULE = "sigs.k8s.io/kind"
# The oldest kind that supports the pinned node image kindest/node:v1.36.1 (the image kind
# v0.32.0 was released with: its default node image); playbooks and scripts require it.
KIND_MINIMUM = "v0.32.0"
# A release older than that (the newest before it on the Go module proxy on 2026-11-26).
KIND_TOO_OLD = "v0.30.0"
VERSIONS = (KIND_MINIMUM, KIND_TOO_OLD)
IMAGE_SOURCE = "pkg/apis/config/defaults/image.go"
IMAGE_CONST = re.compile(r'^const Image = "([^"]+)"$', re.MULTILINE)


def folder(version: str) -> Path:
    return cache_dir() / "bin" / f"kind-{version}"


def default_image(module_dir: Path) -> str:
    """The default node image a kind release creates clusters with (its image.go)."""
    match = IMAGE_CONST.search((module_dir / IMAGE_SOURCE).read_text())
    if match is None:
        msg = f"no `const Image = ...` in {module_dir / IMAGE_SOURCE}"
        raise BuildError(msg)
    return match.group(1)


def ensure_binaries() -> list[Path]:
    """Build every kind of VERSIONS that is missing (set-up step); return the binaries."""
    built = []
    for version in VERSIONS:
        target = folder(version) / "kind"
        with file_lock(cache_dir() / "locks" / f"kind-{version}.lock"):
            if not target.is_file():
                source = module_source(KIND_MODULE, version)
                (folder(version)).mkdir(parents=True, exist_ok=True)
                (folder(version) / "node-image").write_text(default_image(source) + "\n")
                with writable_copy(source) as workdir:
                    go_build(Path(workdir), ".", target, env={"GOFLAGS": "-mod=mod"})
        built.append(target)
    return built


def binary(version: str) -> Path:
    """The cached kind ``version``; :class:`BuildMissingError` when it is not built."""
    target = folder(version) / "kind"
    require_built([target, folder(version) / "node-image"], f"kind {version}")
    return target


def node_image(version: str) -> str:
    """The default node image of kind ``version``, recorded when it was built."""
    binary(version)
    return (folder(version) / "node-image").read_text().strip()
