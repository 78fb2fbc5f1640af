"""The Docker engine of the set-up step: where it may not be installed the step fails naming
what is missing and why; a run stops only the engine it started, and only when no other run
still uses it (the bookkeeping is checked with real processes in a private cache folder: the
machine's shared engine is never touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacktools.builds import apt
from stacktools.servers import dockerd

pytestmark = pytest.mark.images


def test_packages_are_installed_only_as_root_on_debian_or_ubuntu() -> None:
    debian = {"ID": "debian", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
    mint = {"ID": "linuxmint", "ID_LIKE": "ubuntu debian", "PRETTY_NAME": "Linux Mint 22"}
    fedora = {"ID": "fedora", "PRETTY_NAME": "Fedora Linux 41"}
    assert apt.why_not_installable(debian, 0) is None
    assert apt.why_not_installable(mint, 0) is None
    assert apt.why_not_installable(fedora, 0) == "Fedora Linux 41 is not Debian or Ubuntu"
    assert apt.why_not_installable(debian, 1000) == "the set-up step is not running as root"


def test_an_unreachable_engine_it_may_not_start_fails_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stacktools", "engine", "ensure"],
        env={
            **os.environ,
            "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
            "STACK_CACHE_DIR": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"DOCKER_HOST=unix://{tmp_path}/no-engine.sock does not answer" in result.stderr
    assert "apt-get install docker.io debootstrap" in result.stderr


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STACK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def recorded_engine(private_cache: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process recorded as the dockerd the set-up step started (bookkeeping only)."""
    process = subprocess.Popen(["sleep", "600"])
    record = {
        "pid": process.pid,
        "executable": str(Path("/proc", str(process.pid), "exe").resolve()),
    }
    (dockerd.engine_dir() / "dockerd.json").write_text(json.dumps(record))
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def owner_file(folder: Path, pid: int | None) -> Path:
    path = folder / "owner"
    path.write_text(json.dumps({"pid": pid}) if pid is not None else "")
    return path


def test_a_run_that_did_not_start_the_engine_leaves_it(
    recorded_engine: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    said = dockerd.release(owner_file(tmp_path, None), user=None)
    assert "not started by this run" in said
    assert recorded_engine.poll() is None


def test_the_starting_run_leaves_it_to_other_runs_then_stops_it(
    recorded_engine: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    owner = owner_file(tmp_path, recorded_engine.pid)
    users = dockerd.engine_dir() / "users"
    users.mkdir()
    other = subprocess.Popen(["sleep", "600"])  # another run, still using the engine
    (users / str(other.pid)).touch()
    (users / "999999999").touch()  # a run that ended without releasing
    mine = str(os.getpid())
    (users / mine).touch()
    try:
        said = dockerd.release(owner, user=mine)
        assert f"other runs still using it (pids [{other.pid}])" in said
        assert recorded_engine.poll() is None
        assert not (users / "999999999").exists()
    finally:
        other.kill()
        other.wait()
    said = dockerd.release(owner, user=mine)
    assert said == f"engine: stopped dockerd {recorded_engine.pid}, which this run had started"
    assert recorded_engine.wait(timeout=10) is not None
