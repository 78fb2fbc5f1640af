"""The Docker engine that the image builds and the images level use: found, or installed and
started by the set-up step, and stopped at the end only by the run that started it.

* :func:`ensure_engine` (set-up step ``engine``): when ``docker info`` reaches an engine it is
  used as it is. Otherwise, as root on Debian or Ubuntu, the missing packages (``docker.io``,
  and ``debootstrap`` for the stand-in base image) are installed with apt-get and ``dockerd``
  is started in the background, its log and PID under ``cache_dir()/engine``. Anywhere else it
  fails naming what is missing. A file lock makes the start idempotent: engineers sharing a
  machine share one engine.
* Who may stop it: when ``STACK_ENGINE_OWNER`` names a file, a run that started the engine
  writes its PID there; every run that uses the engine with ``STACK_ENGINE_USER`` set (the PID
  of ``make test``'s ladder) registers under ``cache_dir()/engine/users``. :func:`release`
  stops the engine only when this run started it and no other registered run is still alive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stacktools.builds import apt
from stacktools.builds.gobuild import BuildError, file_lock
from stacktools.paths import cache_dir
from stacktools.servers.process import ServerProcess, pid_running, start_process

# What the set-up step installs on Debian/Ubuntu when the engine or a build tool is missing
# (package -> what needs it). Debian 12's docker.io is 20.10.24: its client builds with
# BuildKit (DOCKER_BUILDKIT=1) without the buildx plugin.
PACKAGES = {
    "docker.io": "the Docker engine (dockerd) and client",
    "debootstrap": "the stand-in base image (Debian bookworm packages)",
    "debian-archive-keyring": "debootstrap's check of the Debian archive signature",
    "gpgv": "debootstrap's check of the Debian archive signature",
}
DOCKERD_CANDIDATES = ("/usr/sbin/dockerd", "/usr/bin/dockerd")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


class EngineError(BuildError):
    """No Docker engine, and this machine is not one where the set-up step may install it."""


@dataclass(frozen=True)
class Engine:
    """A reachable engine: its version and whether this call started it."""

    version: str
    started_here: bool
    pid: int | None

    def __str__(self) -> str:
        how = f"started dockerd (pid {self.pid})" if self.started_here else "already running"
        return f"Docker engine {self.version}, {how}"


def engine_dir() -> Path:
    path = cache_dir() / "engine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_file() -> Path:
    return engine_dir() / "dockerd.json"


def log_path() -> Path:
    return engine_dir() / "dockerd.log"


def docker_cli() -> str | None:
    return shutil.which("docker")


def server_version() -> str | None:
    """The engine's version when ``docker info`` reaches it, else None."""
    docker = docker_cli()
    if docker is None:
        return None
    result = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    version = result.stdout.strip()
    return version if result.returncode == 0 and version else None


def _dockerd() -> str | None:
    return shutil.which("dockerd") or next(
        (path for path in DOCKERD_CANDIDATES if Path(path).is_file()), None
    )


def _record() -> ServerProcess | None:
    """The dockerd that the set-up step started, when it still runs."""
    try:
        data = json.loads(_pid_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    process = ServerProcess("dockerd", Path(data["executable"]), int(data["pid"]), log_path())
    return process if process.alive() else None


def _start_dockerd(dockerd: str, timeout: float) -> ServerProcess:
    process = start_process("dockerd", [dockerd], log_path(), detach=True)
    record = {"pid": process.pid, "executable": str(process.executable), "started": time.time()}
    _pid_file().write_text(json.dumps(record))
    deadline = time.monotonic() + timeout
    while server_version() is None:
        if not process.alive():
            msg = f"dockerd exited at start; its log ({log_path()}):\n{process.log_tail()}"
            raise EngineError(msg)
        if time.monotonic() > deadline:
            process.stop(STOP_TIMEOUT)
            msg = f"dockerd did not answer within {timeout:.0f} s; log:\n{process.log_tail()}"
            raise EngineError(msg)
        time.sleep(0.5)
    return process


def _not_here(reason: str, found: str) -> EngineError:
    msg = (
        f"the images level needs a Docker engine, and {found}. The set-up step installs and "
        f"starts one itself only as root on Debian or Ubuntu, but {reason}. Install Docker "
        "(https://docs.docker.com/engine/install/, or `apt-get install docker.io debootstrap`), "
        "start it so that `docker info` works for this user, and run `make prepare` again."
    )
    return EngineError(msg)


def _register_user() -> None:
    user = os.environ.get("STACK_ENGINE_USER")
    if user and user.isdigit():
        users = engine_dir() / "users"
        users.mkdir(exist_ok=True)
        (users / user).touch()


def _record_owner(process: ServerProcess) -> None:
    owner = os.environ.get("STACK_ENGINE_OWNER")
    if owner:
        Path(owner).write_text(json.dumps({"pid": process.pid}))


def ensure_engine(timeout: float = START_TIMEOUT) -> Engine:
    """A reachable Docker engine: the running one, or one started now (see the module doc)."""
    _register_user()
    version = server_version()
    if version is not None:
        return Engine(version, started_here=False, pid=None)
    with file_lock(cache_dir() / "locks" / "engine.lock"):
        version = server_version()
        if version is not None:  # another run started it while this one waited
            return Engine(version, started_here=False, pid=None)
        if os.environ.get("DOCKER_HOST"):
            found = f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer"
            raise _not_here("DOCKER_HOST points elsewhere", found)
        found = "`docker info` reaches none" if docker_cli() else "`docker` is not installed"
        reason = apt.here()
        if reason is not None:
            raise _not_here(reason, found)
        missing = apt.missing(list(PACKAGES))
        if missing:
            apt.install(missing)
            version = server_version()  # a package's init script may have started it
            if version is not None:
                return Engine(version, started_here=False, pid=None)
        dockerd = _dockerd()
        if dockerd is None:
            msg = "docker.io is installed but no dockerd executable was found"
            raise EngineError(msg)
        print(f"engine: starting {dockerd} (log {log_path()})", file=sys.stderr, flush=True)
        process = _start_dockerd(dockerd, timeout)
        _record_owner(process)
        version = server_version() or "unknown"
        return Engine(version, started_here=True, pid=process.pid)


def _other_users(me: str | None) -> list[int]:
    users = engine_dir() / "users"
    alive = []
    for entry in sorted(users.iterdir()) if users.is_dir() else []:
        if entry.name == me:
            continue
        if entry.name.isdigit() and pid_running(int(entry.name)):
            alive.append(int(entry.name))
        else:
            entry.unlink(missing_ok=True)  # a run that ended without releasing
    return alive


def release(owner_file: Path | None, user: str | None) -> str:
    """End this run's use of the engine; stop it only if this run started it and no other
    registered run still uses it. Returns what was done, for the log."""
    if user:
        (engine_dir() / "users" / user).unlink(missing_ok=True)
    started: int | None = None
    if owner_file is not None and owner_file.is_file() and owner_file.read_text().strip():
        started = int(json.loads(owner_file.read_text())["pid"])
    if started is None:
        return "engine: not started by this run; left as it is"
    process = _record()
    if process is None or process.pid != started:
        return f"engine: dockerd {started} that this run started is gone already"
    others = _other_users(user)
    if others:
        return f"engine: left running for other runs still using it (pids {others})"
    process.stop(STOP_TIMEOUT)
    _pid_file().unlink(missing_ok=True)
    return f"engine: stopped dockerd {started}, which this run had started"


def status() -> dict[str, object]:
    process = _record()
    return {
        "ready": server_version() is not None,
        "version": server_version(),
        "started_by_stacktools": process.pid if process else None,
        "log": str(log_path()),
        "users": _other_users(None),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools engine",
        description="The Docker engine of the images level (see stacktools.servers.dockerd).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ensure", help="find or start the engine (what `make prepare` does)")
    commands.add_parser("status", help="print JSON status; exit 0 when the engine answers")
    stop = commands.add_parser(
        "release", help="end this run's use; stop the engine only if this run started it"
    )
    stop.add_argument("--owner-file", type=Path, help="the file STACK_ENGINE_OWNER named")
    stop.add_argument("--user", help="the PID STACK_ENGINE_USER named")
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure":
            print(ensure_engine())
        elif args.command == "status":
            state = status()
            print(json.dumps(state, indent=2))
            return 0 if state["ready"] else 1
        else:
            print(release(args.owner_file, args.user), file=sys.stderr)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
