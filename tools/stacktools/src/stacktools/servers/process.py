"""Start long-running server processes with a log file, and stop them by PID.

A process is identified by its PID *and* its executable, so a PID recorded in a state file
is never signalled after the kernel has reused it for something else.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (no orphaned servers).

    SIGKILL, not SIGTERM: all servers get the signal at once, and kube-apiserver's graceful
    shutdown waits for an etcd that is already gone.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _enter_netns(path: Path) -> None:
    """In the child before exec: join the network namespace at ``path`` (setns(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class ServerProcess:
    """One server process: its name, executable, PID and log file."""

    name: str
    executable: Path
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _alive(self.pid, self.executable)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once the process is gone."""
        if not self.alive():
            self._reap()
            return
        os.kill(self.pid, signal.SIGTERM)
        if not self._wait_gone(timeout):
            os.kill(self.pid, signal.SIGKILL)
            self._wait_gone(10.0)
        self._reap()

    def kill(self) -> None:
        """SIGKILL at once, as a crash would; returns once the process is gone."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self._wait_gone(10.0)
        self._reap()

    def _wait_gone(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _alive(self.pid, self.executable):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _reap(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"


def pid_running(pid: int) -> bool:
    """True when a process ``pid`` exists and is not a zombie."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return state != "Z"


# The task flag of a process that has begun to exit (include/linux/sched.h).
PF_EXITING = 0x4


def _alive(pid: int, executable: Path) -> bool:
    """True when ``pid`` runs ``executable`` and is not a zombie, or is still exiting.

    A process that has begun to exit releases its memory map, and with it its ``exe`` link,
    before it becomes a zombie; a big one (kube-apiserver) on a busy machine can spend a while in
    between. Until then it still runs: a caller waiting for it to be gone keeps waiting.
    """
    proc = Path("/proc") / str(pid)
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state, flags = fields[0], int(fields[6])
    if state in {"Z", "X"}:
        return False
    try:
        exe = os.readlink(proc / "exe")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return bool(flags & PF_EXITING)
    return Path(exe.removesuffix(" (deleted)")) == executable.resolve()


def start_process(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    detach: bool,
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    user: str | None = None,
    netns: Path | None = None,
) -> ServerProcess:
    """Start ``argv`` with stdout and stderr appended to ``log``.

    ``detach=True`` puts it in its own session so it outlives the caller (the CLI);
    otherwise it is killed when the caller dies (the pytest fixture). ``user`` (only as
    root) runs it as that account, with that account's group and no other groups. ``netns``
    (a file such as ``/run/netns/NAME``) runs it in that network namespace; not with ``user``
    (the hook below runs after the switch of account, and entering a namespace needs root).
    ``pass_fds`` stay open in the child (a lock it holds for its lifetime).
    """
    if user is not None and netns is not None:
        raise ValueError(f"{name}: start_process takes user or netns, not both")
    log.parent.mkdir(parents=True, exist_ok=True)
    account = None if user is None else pwd.getpwnam(user)

    def preexec() -> None:
        if not detach:
            _die_with_parent()
        if netns is not None:
            _enter_netns(netns)

    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=detach,
            # Runs after the switch to ``user``: a change of credentials clears PDEATHSIG.
            preexec_fn=preexec,  # noqa: PLW1509 - only prctl and setns, safe before exec
            pass_fds=tuple(pass_fds),
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
        )
    return ServerProcess(name, Path(argv[0]).resolve(), popen.pid, log, popen)


class ManagedServer(ABC):
    """Base of the server classes: ``with Server(...) as server`` starts it and always stops it."""

    @abstractmethod
    def start(self, timeout: float = ...) -> None:
        """Start and wait until ready; each server has its own default timeout."""

    @abstractmethod
    def stop(self, timeout: float = ...) -> None:
        """Stop (SIGTERM, then SIGKILL after ``timeout`` seconds); harmless when stopped."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET of ``url`` (a local server's readiness endpoint) answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local test servers
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class ProcessServer(ManagedServer):
    """A server made of one process (:attr:`process`, logging to :attr:`log`) that is ready
    once :meth:`ready` says so. Subclasses start the process, then call :meth:`await_ready`."""

    name = "server"
    process: ServerProcess | None

    @property
    @abstractmethod
    def log(self) -> Path:
        """The process's log file."""

    @abstractmethod
    def ready(self) -> bool:
        """True once the server answers."""

    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop(timeout)
        self.forget()

    def forget(self) -> None:
        """Drop what a stopped server leaves behind (a state file); nothing by default."""

    def await_ready(
        self, timeout: float, error: type[Exception], *, interval: float = 0.2, where: str = ""
    ) -> None:
        """Wait until :meth:`ready`; if the process dies or ``timeout`` passes, stop it and
        raise ``error`` naming the server (and ``where`` it was asked) with its log's end."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            process = self.process
            if process is None or not process.alive():
                tail = process.log_tail() if process else "(not started)"
                self.stop()
                msg = f"{self.name} exited; end of {self.log}:\n{tail}"
                raise error(msg)
            if time.monotonic() > deadline:
                tail = process.log_tail()
                self.stop()
                at = f" at {where}" if where else ""
                msg = f"{self.name} not ready{at} after {timeout:.0f}s; end of {self.log}:\n{tail}"
                raise error(msg)
            time.sleep(interval)
