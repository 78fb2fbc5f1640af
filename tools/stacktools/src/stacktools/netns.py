"""A network namespace for backends that a Kubernetes EndpointSlice can point at.

EndpointSlice validation refuses loopback addresses (127.0.0.0/8, ::1), so backends on
127.0.0.1 cannot be a Service's endpoints. :class:`BackendNetwork` makes a network namespace of
its own, joined to this one by a veth pair with a /30 from 198.18.0.0/15 (RFC 2544's range for
network tests; never routed beyond this machine): the namespace's end is the backends' address,
this end the route to it. Traffic to it stays on this machine, inside a namespace the test made.
Processes join it through :func:`stacktools.servers.process.start_process` (``netns=``).

Needs root (CAP_NET_ADMIN) and ``ip`` (iproute2). Namespaces are named
``stack-backends-<pid>-<n>``; one left behind by a process that no longer runs is deleted by
the next :meth:`BackendNetwork.create`.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from stacktools.servers.process import pid_running

PREFIX = "stack-backends-"
RANGE = ipaddress.ip_network("198.18.0.0/15")
NETNS_DIR = Path("/run/netns")
_counter = itertools.count()


class NetworkError(RuntimeError):
    """The namespace could not be made; the message names what is missing."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip")
    if ip is None:
        msg = "`ip` (iproute2) is not on PATH; install it (apt-get install iproute2)"
        raise NetworkError(msg)
    result = subprocess.run([ip, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        msg = f"`ip {' '.join(args)}` failed: {result.stderr.strip()}"
        raise NetworkError(msg)
    return result


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    found: list[ipaddress.IPv4Network] = []
    for word in out.split():
        try:
            found.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return found


def remove_stale() -> list[str]:
    """Delete the namespaces of this kind whose owner process is gone; return their names."""
    removed = []
    for path in NETNS_DIR.glob(PREFIX + "*"):
        try:
            owner = int(path.name.removeprefix(PREFIX).split("-")[0])
        except ValueError:
            continue
        if not pid_running(owner):
            _ip("netns", "delete", path.name, check=False)
            removed.append(path.name)
    return removed


class BackendNetwork:
    """A network namespace with one address (:attr:`address`) reachable from this one."""

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        tag = f"{os.getpid() % 100000:05d}{random.randrange(36**2):03x}"  # noqa: S311
        self.host_link = f"sb{tag}h"  # <= 15 characters (IFNAMSIZ)
        self.peer_link = f"sb{tag}n"
        self.network: ipaddress.IPv4Network | None = None

    @property
    def path(self) -> Path:
        """The namespace's file, for ``start_process(netns=...)``."""
        return NETNS_DIR / self.name

    @property
    def address(self) -> str:
        """The backends' address (inside the namespace)."""
        if self.network is None:
            msg = "the backend network is not created"
            raise NetworkError(msg)
        return str(self.network.network_address + 2)

    @property
    def host_address(self) -> str:
        """This side's address on the veth pair (the source of traffic to the backends)."""
        if self.network is None:
            msg = "the backend network is not created"
            raise NetworkError(msg)
        return str(self.network.network_address + 1)

    def _pick_network(self) -> ipaddress.IPv4Network:
        used = _used_networks()
        for _ in range(200):
            index = random.randrange(RANGE.num_addresses // 4)  # noqa: S311
            candidate = ipaddress.IPv4Network((int(RANGE.network_address) + 4 * index, 30))
            if not any(candidate.overlaps(other) for other in used):
                return candidate
        msg = f"no free /30 left in {RANGE}"
        raise NetworkError(msg)

    def create(self) -> None:
        if os.geteuid() != 0:
            msg = (
                "the dataplane backends need a network namespace (EndpointSlices refuse "
                "loopback addresses), which needs root (CAP_NET_ADMIN); run the dataplane "
                "level as root"
            )
            raise NetworkError(msg)
        remove_stale()
        network = self._pick_network()
        _ip("netns", "add", self.name)
        self.network = network
        try:
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.peer_link,
                "netns", self.name)  # fmt: skip
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.peer_link)
            _ip("-n", self.name, "link", "set", self.peer_link, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        """Delete the namespace (its veth end and so the pair go with it); harmless twice."""
        if self.network is None:
            return
        _ip("netns", "delete", self.name, check=False)
        _ip("link", "delete", self.host_link, check=False)
        self.network = None

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.delete()
