"""The base of the HTTP backends the dataplane level runs: a process started with a log, ready
once a URL answers 200, optionally inside a network namespace (:mod:`stacktools.netns`)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from abc import abstractmethod
from pathlib import Path

from stacktools.servers.process import ManagedServer, ServerProcess, start_process


class BackendError(RuntimeError):
    """A backend did not start; the message names it and ends with its log."""


class HttpBackend(ManagedServer):
    """One HTTP server process listening on ``host:port``; its output goes to :attr:`log`."""

    name = "backend"
    ready_path = "/"

    def __init__(self, directory: Path, host: str, port: int, netns: Path | None = None) -> None:
        self.directory = directory.resolve()
        self.host = host
        self.port = port
        self.netns = netns
        self.process: ServerProcess | None = None

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @abstractmethod
    def command(self) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment of the process."""

    def start(self, timeout: float = 120.0) -> None:
        if self.running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        argv, env = self.command()
        self.process = start_process(
            self.name, argv, self.log, detach=False, env=env, netns=self.netns
        )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.process.alive():
                tail = self.process.log_tail()
                self.stop()
                msg = f"{self.name} exited; end of {self.log}:\n{tail}"
                raise BackendError(msg)
            if time.monotonic() > deadline:
                tail = self.process.log_tail()
                self.stop()
                where = self.url + self.ready_path
                msg = f"{self.name} not ready at {where} after {timeout:.0f}s:\n{tail}"
                raise BackendError(msg)
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:  # noqa: S310 - test backends
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop(timeout)
