"""``python -m stacktools <command> ...``: the harness's one command line.

Commands: ``prepare`` (build everything the tests use), ``controlplane``, ``istiod`` and
``traefik`` (start/stop/status/build one server; see each command's ``--help``), ``engine`` (the
Docker engine), ``images`` (build the service images), ``helm`` (where the Helm clients are),
``snapshot`` (every object of a cluster, to prove what a teardown leaves behind) and ``release``
(make release).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "prepare": ("stacktools.prepare", "build (or reuse) everything the tests use"),
    "controlplane": ("stacktools.servers.controlplane", "the local Kubernetes control plane"),
    "istiod": ("stacktools.servers.istiod", "istiod against a kubeconfig"),
    "node": ("stacktools.servers.node", "a node (kubelet, containerd) and its control plane"),
    "traefik": ("stacktools.servers.traefik", "Traefik, the Gateway API data plane of a cluster"),
    "helm": ("stacktools.builds.helm", "where the Helm 3 / Helm 4 clients are (path, version)"),
    "snapshot": ("stacktools.cluster.snapshot", "record a cluster's objects; compare two records"),
    "engine": ("stacktools.servers.dockerd", "the Docker engine of the images level"),
    "images": ("stacktools.builds.images", "build the service images (kind.yml, images.yml)"),
    "release": ("stacktools.release", "the collection tarball and both images, version-tagged"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print("usage: python -m stacktools <command> [options]\n\ncommands:", file=sys.stderr)
        for name, (_, what) in COMMANDS.items():
            print(f"  {name:14} {what}", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
