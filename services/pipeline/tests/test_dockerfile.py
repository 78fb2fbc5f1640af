"""The Dockerfile: its key properties, and its build steps replayed here without Docker.

No Docker engine runs here, so the test parses the Dockerfile for what matters (multi-stage,
locked install, non-root UID 10001, the code server command) and then replays the build
stage's COPY and `uv sync` steps in a temporary folder, and starts the image's CMD from the
resulting environment: the lock, the package and the command really work together.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stacktools.net import free_port, wait_for_port
from stacktools.paths import cache_dir

SERVICE = Path(__file__).resolve().parents[1]
REPO = SERVICE.parents[1]
DOCKERFILE = SERVICE / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse() -> tuple[dict[str, str], list[Stage]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, _, alias = rest.partition(" AS ")
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            stages.append(Stage(alias.strip(), base))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            name, _, value = item.partition("=")
            values[name] = value
    return values


def test_multi_stage_non_root_code_server() -> None:
    args, stages = parse()
    assert [s.name for s in stages] == ["uv", "build", "runtime"]
    for stage in stages:
        assert ":" in stage.base
        assert not stage.base.endswith(":latest")
    assert args["UV_IMAGE"].endswith(":0.13.9")
    setup = (REPO / "tools" / "setup.sh").read_text()
    assert "UV_VERSION=0.13.9" in setup  # the image builds with the uv the repo uses

    build, runtime = stages[1], stages[2]
    syncs = [r for r in build.all("RUN") if r.startswith("uv sync")]
    assert syncs
    assert all("--locked" in r and "--package pipeline" in r for r in syncs)
    assert runtime.all("USER") == ["10001:10001"]
    assert any("--uid 10001" in r for r in runtime.all("RUN"))
    assert runtime.all("EXPOSE") == ["3030"]
    assert json.loads(runtime.all("CMD")[-1]) == [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030",
        "-m", "pipeline.definitions",
    ]  # fmt: skip
    copies = runtime.all("COPY")
    assert copies == ["--from=build /opt/pipeline/venv /opt/pipeline/venv"]  # no sources
    for stage in stages:
        for name in env_of(stage):
            assert not re.search("KEY|SECRET|PASSWORD|TOKEN|PIPELINE_", name), name


def uv_binary() -> str:
    found = shutil.which("uv") or str(cache_dir() / "bootstrap" / "bin" / "uv")
    if not Path(found).is_file():
        pytest.fail("uv is needed to replay the build; run `make setup` first")
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_build_steps_install_a_working_code_server(tmp_path: Path) -> None:
    _, stages = parse()
    build, runtime = stages[1], stages[2]
    context = tmp_path / "context"
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        **env_of(build),
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_LINK_MODE": "symlink",  # from the local uv cache: fast, same packages
        "UV_COMPILE_BYTECODE": "0",
    }
    workdir = context
    for keyword, args in build.instructions:
        if keyword == "WORKDIR":
            workdir = context
        elif keyword == "COPY" and not args.startswith("--from"):
            *sources, destination = args.split()
            for source in sources:
                target = workdir / destination if destination != "./" else workdir / source
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / source).is_dir():
                    shutil.copytree(
                        REPO / source, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(REPO / source, target)
        elif keyword == "RUN" and args.startswith("uv sync"):
            command = [uv_binary(), *shlex.split(args)[1:], "--quiet"]
            subprocess.run(command, cwd=workdir, env=env, check=True, timeout=600)

    # The runtime image's command, from that environment, with the runtime's settings.
    port = free_port()
    cmd = json.loads(runtime.all("CMD")[-1])
    cmd = [str(venv / "bin" / cmd[0]), *cmd[1:]]
    cmd[cmd.index("0.0.0.0")] = "127.0.0.1"
    cmd[cmd.index("3030")] = str(port)
    home = tmp_path / "dagster_home"
    home.mkdir()
    server_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "DAGSTER_HOME": str(home),
        "HOME": str(tmp_path),
    }
    log = (tmp_path / "code-server.log").open("wb")
    # As in a container, SIGINT has its default disposition: dagster maps SIGTERM to SIGINT's
    # handler, so a SIGINT ignored by the calling shell (a CI job in the background) would make
    # the server ignore SIGTERM too.
    server = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=server_env,
        stdout=log,
        stderr=log,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - only signal(), safe before exec
    )
    try:
        wait_for_port(port, timeout=120)
        health = subprocess.run(
            [str(venv / "bin" / "dagster"), "api", "grpc-health-check", "-p", str(port)],
            env=server_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert health.returncode == 0, health.stdout + health.stderr
        assert not (venv / "lib" / "python3.11" / "site-packages" / "polars").exists()
        # Run workers started by the chart's K8sRunLauncher use this image and load the
        # instance (PostgreSQL storage, K8sRunLauncher) before running the job.
        instance_modules = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import dagster_postgres, dagster_k8s"],
            env=server_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert instance_modules.returncode == 0, instance_modules.stderr
    finally:
        # A pod gets SIGTERM, then SIGKILL after its grace period; the server stops in about
        # 2 s here, and the margin is for a busy machine.
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            stopped_on_sigterm = False
        else:
            stopped_on_sigterm = True
        log.close()
    assert stopped_on_sigterm, "the code server did not stop within 60 s of SIGTERM"
