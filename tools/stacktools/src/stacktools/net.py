"""Loopback networking helpers."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Sequence


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (loopback by default) that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                msg = f"nothing listens on {host}:{port} after {timeout:.0f}s"
                raise TimeoutError(msg) from None
            time.sleep(0.05)


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_loopback_address(ports: Sequence[int]) -> str:
    """An address in 127.0.0.0/8 (not 127.0.0.x) on which every one of ``ports`` is free.

    Lets a server listen on fixed, well-known ports (a Gateway's 8010, 27018, ...) without
    colliding with anything else on this machine that uses them on 127.0.0.1.
    """
    for _ in range(100):
        # Not security sensitive: spreading test servers over the loopback range.
        host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"  # noqa: S311
        if all(port_free(host, port) for port in ports):
            return host
    msg = f"no loopback address with ports {list(ports)} free"
    raise RuntimeError(msg)
