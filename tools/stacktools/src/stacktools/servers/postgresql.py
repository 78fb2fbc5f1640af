"""PostgreSQL: a private cluster on loopback, the backend of FerretDB's ``--handler=pg``.

Not built here: the server comes from the system's packages (Debian/Ubuntu ``postgresql``,
which installs ``/usr/lib/postgresql/<major>/bin``; Homebrew ``postgresql@17``). Each instance
is a new cluster (``initdb``) in a folder of its own, on a free loopback port, no Unix socket,
with one superuser whose password is generated per cluster (scram-sha-256). PostgreSQL refuses
to run as root, so under root the cluster runs as the ``postgres`` account the Debian package
creates (or ``nobody``), in a private temporary folder that account owns, removed on exit.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from stacktools.builds.gobuild import BuildError
from stacktools.net import free_port, wait_for_port
from stacktools.servers.process import ManagedServer, ServerProcess, start_process

INSTALL_HINT = (
    "install the PostgreSQL server: Debian/Ubuntu `apt-get install -y postgresql` "
    "(as root; .ci/run does it), macOS `brew install postgresql@17`"
)
SUPERUSER = "stack"
DATABASE = "postgres"
_ACCOUNTS = ("postgres", "nobody")


class PostgreSQLMissingError(BuildError):
    """The PostgreSQL server programs (initdb, postgres) are not installed (the set-up step
    checks for them, and names the package)."""


def _version_key(folder: Path) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in folder.parent.name).split()
    return tuple(int(part) for part in digits)


def bin_dir() -> Path:
    """The folder holding ``initdb`` and ``postgres``: PATH first, then the newest Debian
    (``/usr/lib/postgresql/*/bin``) or Homebrew installation; else PostgreSQLMissingError."""
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "postgres").is_file():
        return Path(on_path).resolve().parent
    candidates = [
        *Path("/usr/lib/postgresql").glob("*/bin"),
        *Path("/opt/homebrew/opt").glob("postgresql@*/bin"),
        *Path("/usr/local/opt").glob("postgresql@*/bin"),
    ]
    usable = [c for c in candidates if (c / "initdb").is_file() and (c / "postgres").is_file()]
    if not usable:
        msg = f"PostgreSQL server programs (initdb, postgres) not found; {INSTALL_HINT}"
        raise PostgreSQLMissingError(msg)
    return max(usable, key=_version_key)


def version(folder: Path) -> str:
    """``postgres --version`` of the programs in ``folder``, e.g. ``15.18``."""
    out = subprocess.run(
        [str(folder / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    return out.stdout.strip().removeprefix("postgres (PostgreSQL) ")


def check_installed() -> str:
    """The set-up step's check: which PostgreSQL the tests and the bench will run."""
    folder = bin_dir()
    _unprivileged_account()
    return f"PostgreSQL {version(folder)} in {folder}"


def _unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run as when we are root (PostgreSQL refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in _ACCOUNTS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    msg = f"running as root, and none of the accounts {_ACCOUNTS} exists to run PostgreSQL as"
    raise PostgreSQLMissingError(msg)


class PostgreSQL(ManagedServer):
    """One PostgreSQL cluster; ``url`` is what FerretDB's ``--postgresql-url`` takes.

    ``data_dir`` holds the log (and, when not root, the cluster itself). ``settings`` are
    extra ``-c name=value`` server settings.
    """

    def __init__(
        self, data_dir: Path, port: int | None = None, settings: dict[str, str] | None = None
    ) -> None:
        self.bin_dir = bin_dir()
        self.account = _unprivileged_account()
        self.data_dir = data_dir
        self.port = port or free_port()
        self.settings = settings or {}
        self.log_path = data_dir / "postgresql.log"
        self.password = secrets.token_urlsafe(24)
        self._private: Path | None = None
        self._process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        return f"postgres://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """``createdb`` on the running cluster (one per FerretDB that must not share data)."""
        argv = [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port)]
        argv += ["-U", SUPERUSER, name]
        env = {**os.environ, "PGPASSWORD": self.password}
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            msg = f"createdb {name} failed ({result.returncode}): {result.stderr.strip()}"
            raise RuntimeError(msg)

    @property
    def cluster_dir(self) -> Path:
        if self.account is None:
            return self.data_dir / "pgdata"
        if self._private is None:
            # The tests' temporary folders are private to root; the cluster needs a folder
            # its own account can reach.
            self._private = Path(tempfile.mkdtemp(prefix="stack-postgresql-"))
            os.chown(self._private, self.account.pw_uid, self.account.pw_gid)
        return self._private / "pgdata"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive()

    def _initdb(self) -> None:
        cluster = self.cluster_dir
        secret = cluster.parent / "initdb-password"
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text(self.password + "\n")
        secret.chmod(0o600)
        if self.account is not None:
            os.chown(secret, self.account.pw_uid, self.account.pw_gid)
        argv = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={cluster}",
            f"--username={SUPERUSER}",
            f"--pwfile={secret}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                check=False,
                user=None if self.account is None else self.account.pw_uid,
                group=None if self.account is None else self.account.pw_gid,
                extra_groups=None if self.account is None else [],
            )
        finally:
            secret.unlink()
        if result.returncode != 0:
            msg = f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            raise RuntimeError(msg)

    def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        if not (self.cluster_dir / "PG_VERSION").is_file():
            self._initdb()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            **self.settings,
        }
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.cluster_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        run_as = None if self.account is None else self.account.pw_name
        self._process = start_process(
            "postgresql", argv, self.log_path, detach=False, env={"LC_ALL": "C"}, user=run_as
        )
        try:
            wait_for_port(self.port, timeout)
            self._wait_accepting(timeout)
        except TimeoutError:
            tail = self._process.log_tail(2000)
            self.stop()
            msg = f"PostgreSQL did not accept connections on {self.port} in {timeout}s:\n{tail}"
            raise RuntimeError(msg) from None

    def _wait_accepting(self, timeout: float) -> None:
        """Listening is not yet accepting (recovery, start-up): ask pg_isready when present."""
        probe = self.bin_dir / "pg_isready"
        if not probe.is_file():
            return
        deadline = time.monotonic() + timeout
        argv = [str(probe), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-d", DATABASE]
        while subprocess.run(argv, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: disconnect clients, then stop), SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is not None:
            if process.alive():
                os.kill(process.pid, signal.SIGINT)
            process.stop(timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
