"""A container registry on loopback (``crane registry serve``, blobs on disk): what the push
path (playbooks/images.yml, make push-images) pushes to in the tests. Docker treats registries
on 127.0.0.0/8 as insecure by default, so plain HTTP works without engine configuration."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from stacktools.builds import registry as build
from stacktools.net import free_port, wait_for_port
from stacktools.servers.process import ManagedServer, ServerProcess, start_process

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)


class Registry(ManagedServer):
    def __init__(self, data_dir: Path) -> None:
        self.binary = build.binary()
        self.data_dir = data_dir
        self.port = free_port()
        self._process: ServerProcess | None = None

    @property
    def host(self) -> str:
        """host:port, as an image reference names the registry."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        blobs = self.data_dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "registry", "serve", "--address", self.host, "--disk", str(blobs)]
        self._process = start_process(
            "registry", argv, self.data_dir / "registry.log", detach=False
        )
        try:
            wait_for_port(self.port, timeout)
        except TimeoutError:
            tail = self._process.log_tail(2000)
            self.stop()
            msg = f"the registry did not listen on {self.host} within {timeout}s; log:\n{tail}"
            raise RuntimeError(msg) from None

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop(timeout)

    def manifest(self, repository: str, reference: str) -> dict[str, object]:
        """The manifest of ``repository:reference`` through the distribution API."""
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            found: dict[str, object] = json.loads(response.read())
        return found
