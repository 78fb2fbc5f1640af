"""Write OCI image archives (an OCI image layout in a tar) of a few files, for programs that
are one static binary: FerretDB, CoreDNS, metrics-server, pause.

The archive is what ``ctr images import`` reads; the node imports it into its containerd,
so nothing is pulled from a registry. One uncompressed layer, files owned by root with a fixed
modification time, so the same binary always gives the same image digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
# The unprivileged user of the images (distroless' "nonroot"); Kubernetes' runAsNonRoot needs
# a numeric user.
NONROOT = 65532
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
GROUP = f"root:x:0:\nnonroot:x:{NONROOT}:\n"


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image: files (path in the image -> file on disk), its entrypoint."""

    name: str  # fully qualified, e.g. docker.io/gateway-api-stack/ferretdb
    tag: str
    files: Mapping[str, Path]
    entrypoint: Sequence[str]
    user: int = NONROOT
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def _add(tar: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = mode
        tar.addfile(info)
        return
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _layer(spec: ImageSpec) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "etc", None, 0o755)
        _add(tar, "etc/passwd", PASSWD.encode(), 0o644)
        _add(tar, "etc/group", GROUP.encode(), 0o644)
        _add(tar, "tmp", None, 0o1777)
        _add(tar, "home", None, 0o755)
        directories: set[str] = {"etc", "tmp", "home"}
        for target in sorted(spec.files):
            parts = target.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in directories:
                    directories.add(folder)
                    _add(tar, folder, None, 0o755)
            source = spec.files[target]
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            _add(tar, "/".join(parts), source.read_bytes(), mode)
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_archive(spec: ImageSpec, target: Path) -> str:
    """Write the image to ``target`` (atomically); return the manifest digest."""
    layer = _layer(spec)
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{spec.user}:{spec.user}",
            "Entrypoint": list(spec.entrypoint),
            "Env": [f"{k}={v}" for k, v in {"PATH": SEARCH_PATH, **spec.env}.items()],
            "WorkingDir": "/",
            "Labels": dict(spec.labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        "history": [{"created_by": "stacktools.builds.oci", "comment": spec.ref}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": _digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [{"mediaType": MEDIA_LAYER, "digest": _digest(layer), "size": len(layer)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": _digest(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": spec.ref,
                    "org.opencontainers.image.ref.name": spec.tag,
                },
            }
        ],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "blobs", None, 0o755)
        _add(tar, "blobs/sha256", None, 0o755)
        for blob in (layer, config_bytes, manifest_bytes):
            _add(tar, "blobs/sha256/" + _digest(blob).removeprefix("sha256:"), blob, 0o644)
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        _add(tar, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644)
    partial.replace(target)
    return _digest(manifest_bytes)
