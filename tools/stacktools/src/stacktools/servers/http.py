"""The base of the HTTP backends the dataplane level runs: a process started with a log, ready
once a URL answers 200, optionally inside a network namespace (:mod:`stacktools.netns`)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

from stacktools.servers.process import ProcessServer, ServerProcess, http_ok, start_process


class BackendError(RuntimeError):
    """A backend did not start; the message names it and ends with its log."""


class HttpBackend(ProcessServer):
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
        self.await_ready(timeout, BackendError, where=self.url + self.ready_path)

    def ready(self) -> bool:
        return http_ok(self.url + self.ready_path)
