"""A container of a service image, run with the settings derived from its pod spec
(:mod:`stacktools.cluster.podspec`), its ports published on loopback, and its probes run the
way the kubelet runs them (HTTP GET: 200-399 passes; exec: exit code 0 passes).

Secret values never appear on a command line: ``docker run -e NAME`` takes each value from the
client's environment.
"""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from stacktools.builds import docker
from stacktools.cluster.podspec import Probe, RunSettings
from stacktools.net import free_port
from stacktools.servers.process import ManagedServer


@dataclass(frozen=True)
class ProbeResult:
    passed: bool
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Exit:
    seconds: float
    code: int


SIOCGIFADDR = 0x8915


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: where containers reach host servers.

    The bridge's IPAM gateway when the engine reports one, else the IPv4 address of the
    bridge's interface (docker0), which is that gateway."""
    found = docker.run(["network", "inspect", "bridge"]).stdout
    network = json.loads(found)[0]
    for config in (network.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
    name = (network.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode())
            )
        except OSError as exc:
            msg = f"Docker's bridge {name} has no IPv4 address: {exc}"
            raise RuntimeError(msg) from exc
    return socket.inet_ntoa(packed[20:24])


# An exec probe starts a process in the container (for the pipeline: a Python that imports
# dagster, 3 s on an idle core). On a machine shared by many test runs that alone took 21 s
# (load average 36 on 2 cores), so exec probes wait up to this long; HTTP probes keep their
# own timeouts. ProbeResult.seconds tells how long the command took.
EXEC_PROBE_TIMEOUT = 120.0


class Container(ManagedServer):
    """``docker run -d`` of ``image`` with ``settings``; removed again by :meth:`stop`."""

    def __init__(self, image: str, settings: RunSettings, name: str, args: Sequence[str] = ()):
        self.image = image
        self.settings = settings
        self.name = f"stack-{name}-{uuid.uuid4().hex[:8]}"
        self.args = tuple(args) or settings.args
        self.published = {port: free_port() for port in settings.ports.values()}
        self.started = False

    def argv(self) -> list[str]:
        run = ["run", "--detach", "--name", self.name, *self.settings.options]
        for name in sorted(self.settings.env):
            run += ["--env", name]
        for container_port, host_port in self.published.items():
            run += ["--publish", f"127.0.0.1:{host_port}:{container_port}"]
        args = list(self.args)
        if self.settings.entrypoint:
            run += ["--entrypoint", self.settings.entrypoint[0]]
            args = [*self.settings.entrypoint[1:], *args]
        return [*run, self.image, *args]

    def start(self, timeout: float = 120.0) -> None:
        """Run it and wait until its startup and readiness probes pass."""
        result = subprocess.run(
            [docker.docker(), *self.argv()],
            env={**docker.buildkit_env(), **self.settings.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            msg = f"docker run {self.image} failed: {result.stderr.strip()}"
            raise RuntimeError(msg)
        self.started = True
        for kind in ("startup", "readiness"):
            if kind in self.settings.probes:
                self.wait_for_probe(kind, timeout)

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.published[self.settings.ports[port]]}"

    def probe(self, kind: str) -> ProbeResult:
        """Run the pod's ``kind`` probe once, with its timeout."""
        spec = self.settings.probes[kind]
        return self._http(spec) if spec.kind == "http" else self._exec(spec)

    def _http(self, spec: Probe) -> ProbeResult:
        assert spec.port is not None
        url = f"http://127.0.0.1:{self.published[spec.port]}{spec.path}"
        began = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=spec.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, TimeoutError) as exc:
            return ProbeResult(False, f"{url}: {exc}", time.monotonic() - began)
        return ProbeResult(200 <= status < 400, f"{url}: {status}", time.monotonic() - began)

    def _exec(self, spec: Probe) -> ProbeResult:
        began = time.monotonic()
        timeout = max(spec.timeout, EXEC_PROBE_TIMEOUT)
        try:
            result = self.exec(list(spec.command), timeout=timeout)
        except subprocess.TimeoutExpired:
            return ProbeResult(False, f"{list(spec.command)}: timed out", time.monotonic() - began)
        output = (result.stdout + result.stderr).strip()
        seconds = time.monotonic() - began
        return ProbeResult(result.returncode == 0, f"exit {result.returncode}: {output}", seconds)

    def wait_for_probe(self, kind: str, timeout: float) -> ProbeResult:
        """Poll the probe (at most every second) until it passes; RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.probe(kind)
            if result.passed:
                return result
            if not self.running() or time.monotonic() > deadline:
                msg = (
                    f"{kind} probe of {self.image} did not pass ({result.detail}); "
                    f"container log:\n{self.logs()[-3000:]}"
                )
                raise RuntimeError(msg)
            time.sleep(min(1.0, self.settings.probes[kind].period))

    def exec(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``docker exec`` as the container's user (as an exec probe runs)."""
        return docker.run(["exec", self.name, *argv], check=False, timeout=timeout)

    def inspect(self) -> dict[str, object]:
        found: list[dict[str, object]] = json.loads(docker.run(["inspect", self.name]).stdout)
        return found[0]

    def running(self) -> bool:
        result = docker.run(
            ["inspect", "--format", "{{.State.Running}}", self.name], check=False, timeout=30
        )
        return result.stdout.strip() == "true"

    def logs(self) -> str:
        """stdout and stderr together (see :meth:`output` for them apart)."""
        out, err = self.output()
        return out + err

    def output(self) -> tuple[str, str]:
        result = docker.run(["logs", self.name], check=False, timeout=60)
        return result.stdout, result.stderr

    def wait(self, timeout: float) -> int:
        """Wait until it exits (a run to completion); its exit code."""
        result = docker.run(["wait", self.name], timeout=timeout)
        return int(result.stdout.strip())

    def terminate(self) -> Exit:
        """SIGTERM as the kubelet sends it; wait up to the grace period (+ 10 s) for the exit."""
        began = time.monotonic()
        docker.run(["kill", "--signal", "SIGTERM", self.name])
        deadline = began + self.settings.grace_seconds + 10
        while self.running():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        seconds = time.monotonic() - began
        code = docker.run(["inspect", "--format", "{{.State.ExitCode}}", self.name]).stdout
        return Exit(seconds, int(code.strip() or -1))

    def stop(self, timeout: float = 30.0) -> None:
        if self.started:
            docker.run(["rm", "--force", self.name], check=False, timeout=timeout + 30)
            self.started = False
