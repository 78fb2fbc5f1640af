"""The set-up as a user's laptop runs it: `make deploy` needs no Go and installs only what deploy
runs; only the test path checks Go, and says so instead of dying with status 127; and the
set-up uses only tools that a stock macOS has too (no sha256sum, no timeout).

Each run works on a copy of the repository's tracked files (a deploy set-up must not touch the
.venv these tests run in), with the machine's uv cache. The dev and test profiles share every
line with the deploy profile except the Go check and the dependency groups, so the deploy run
under macOS's tools proves the shared part (a full dev sync would add about 70 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
# Programs of a stock macOS (/bin, /usr/bin, with the Command Line Tools for git, make and
# python3) that the set-up may call. Everything else is left out of PATH: notably the GNU-only
# sha256sum, sha1sum, md5sum, timeout, nproc, realpath, stdbuf and tac, and Go.
MACOS_TOOLS = {
    *("bash", "sh", "env", "cat", "chmod", "cp", "cut", "date", "dirname", "basename", "echo"),
    *("expr", "find", "grep", "head", "id", "ln", "ls", "mkdir", "mktemp", "mv", "printf", "pwd"),
    *("readlink", "rm", "rmdir", "sed", "sleep", "sort", "stat", "tail", "tar", "tee", "test"),
    *("touch", "tr", "true", "false", "uname", "uniq", "wc", "which", "xargs", "awk", "cmp"),
    *("diff", "gzip", "hostname", "whoami", "perl", "shasum", "git", "make", "python3", "curl"),
}
SYNTAX_CHECKED = ("-i", "inventories/local", "playbooks/kind.yml", "playbooks/site.yml")
GNU_ONLY = ("sha256sum", "sha1sum", "md5sum", "timeout", "nproc", "realpath", "stdbuf", "tac")


def macos_path(folder: Path) -> str:
    """A folder with links to this machine's copies of MACOS_TOOLS, and nothing else."""
    folder.mkdir()
    for name in MACOS_TOOLS:
        found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
        if found and not (folder / name).exists():
            (folder / name).symlink_to(found)
    assert not any((folder / name).exists() for name in (*GNU_ONLY, "go"))
    return str(folder)


def checkout_copy(folder: Path) -> Path:
    """The tracked files of this checkout (with uncommitted edits), nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return folder


def run_setup(copy: Path, profile: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH"))
    }
    # A Galaxy that answers at once with a refusal, so the fallback is taken (and explained)
    # on any machine, with or without internet.
    env.update(PATH=path, ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9")
    return subprocess.run(
        ["bash", "tools/setup.sh", profile],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def macos_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    return macos_path(tmp_path_factory.mktemp("macos") / "bin")


@pytest.mark.slow
def test_deploy_setup_needs_no_go_and_installs_only_what_deploy_runs(
    macos_bin: str, tmp_path: Path
) -> None:
    copy = checkout_copy(tmp_path / "repo")
    result = run_setup(copy, "deploy", macos_bin)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "setup (deploy): .venv in sync with uv.lock (ansible [core 2.19" in output
    # The Galaxy fallback names Galaxy's own error (not "command not found" from a missing tool).
    assert "setup: Galaxy cannot be used (" in output
    assert "not found" not in output.split("setup: Galaxy cannot be used (", 1)[1].split("\n")[0]
    assert "setup: collection kubernetes.core" in output
    venv = copy / ".venv" / "bin"
    for program in ("ansible-playbook", "ansible-galaxy"):
        assert (venv / program).is_file(), f"{program} missing from the deploy set-up"
    imports = "import kubernetes, jsonpatch, requests_oauthlib, yaml; print('ok')"
    probe = subprocess.run(
        [str(venv / "python"), "-c", imports], capture_output=True, text=True, check=False
    )
    assert probe.stdout.strip() == "ok", probe.stderr
    for program in ("molecule", "pytest", "ansible-lint", "ruff", "mypy", "stack-insert"):
        assert not (venv / program).exists(), f"the deploy set-up installed {program}"
    # What deploy runs parses with only the deploy group installed (collections resolve).
    syntax = subprocess.run(
        [str(venv / "ansible-playbook"), "--syntax-check", *SYNTAX_CHECKED],
        cwd=copy,
        env={
            **os.environ,
            "PATH": f"{venv}:{macos_bin}",
            "ANSIBLE_CONFIG": str(copy / "ansible.cfg"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert syntax.returncode == 0, (syntax.stdout + syntax.stderr)[-3000:]
    # A second run is cheap and changes nothing.
    again = run_setup(copy, "deploy", macos_bin)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "Galaxy" not in again.stdout


@pytest.mark.slow
def test_the_test_setup_names_missing_go_instead_of_dying(macos_bin: str, tmp_path: Path) -> None:
    copy = checkout_copy(tmp_path / "repo")
    result = run_setup(copy, "test", macos_bin)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "setup (test): missing prerequisites:" in result.stderr
    assert "Go >= 1.26 (no `go` on PATH;" in result.stderr
    assert not (copy / ".venv").exists(), "the test set-up synced .venv before checking Go"


def test_an_unknown_profile_is_refused(tmp_path: Path) -> None:
    result = run_setup(REPO, "laptop", os.environ["PATH"])
    assert result.returncode == 2
    assert "setup: unknown profile 'laptop' (one of: deploy, dev, test)" in result.stderr
