"""The Dockerfile cannot be built here (no Docker engine), so its key properties are read
from it, and its builder stage's install commands are run for real on the exact build
context that its .dockerignore admits."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stacktools.paths import cache_dir

SERVICE = Path(__file__).resolve().parents[1]
ROOT = SERVICE.parents[1]
DOCKERFILE = SERVICE / "Dockerfile"
IGNORE = SERVICE / "Dockerfile.dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions with continuation lines joined; ARGs before the first FROM; stages."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, found {keyword}"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return global_args, stages


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Go filepath.Match as Docker uses it: ``*`` and ``?`` stop at ``/``; ``**/`` spans
    any number of folders."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last matching rule wins, and a rule that matches a
    folder covers everything below it."""
    candidates = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
    result = False
    for rule in patterns:
        negate = rule.startswith("!")
        regex = glob_regex(rule[1:] if negate else rule)
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negate
    return result


def ignore_patterns() -> list[str]:
    lines = IGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def test_multi_stage_non_root_port_8000(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    assert len(stages) >= 2, "builder and runtime stages"
    builder, runtime = stages[0], stages[-1]
    assert builder.name == "builder"
    assert global_args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert runtime.base == "${PYTHON_IMAGE}"
    users = runtime.all("USER")
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric UID, so runAsNonRoot can verify it"
    assert int(uid) == 10001
    assert runtime.all("EXPOSE") == ["8000"]
    assert runtime.all("ENTRYPOINT") == ['["python", "-m", "apiserver"]']
    # The runtime stage takes only the built environment from the builder: no compilers,
    # no uv, no sources, no package installs.
    copies = runtime.all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert not runtime.all("RUN")
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in runtime.all("ENV"))
    assert any("UV_COMPILE_BYTECODE=1" in env for env in builder.all("ENV"))
    assert not any(kw == "ADD" for stage in stages for kw, _ in stage.instructions)


def test_uv_pin_matches_setup(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    pinned = [a for a in stages[0].all("ARG") if a.startswith("UV_VERSION=")]
    setup = re.search(r"^UV_VERSION=(\S+)", (ROOT / "tools/setup.sh").read_text(), re.M)
    assert setup
    assert pinned == [f"UV_VERSION={setup.group(1)}"]


def test_every_copied_path_exists_and_is_in_the_context(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    patterns = ignore_patterns()
    sources: list[str] = []
    for args in stages[0].all("COPY"):
        parts = args.split()
        assert not parts[0].startswith("--from")
        sources += parts[:-1]
    assert "uv.lock" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), f"{source} is excluded by {IGNORE.name}"
    assert ignored("services/pipeline/src/pipeline/__init__.py", patterns)
    assert ignored(".venv/bin/python", patterns)
    assert ignored("services/apiserver/src/apiserver/__pycache__/app.cpython-311.pyc", patterns)


def context_files(patterns: list[str]) -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [path for path in tracked.split("\0") if path and not ignored(path, patterns)]


def uv_binary() -> str:
    candidate = cache_dir() / "bootstrap" / "bin" / "uv"
    found = str(candidate) if candidate.is_file() else shutil.which("uv")
    assert found, "uv is installed by `make setup` (tools/setup.sh)"
    return found


@pytest.mark.slow
def test_builder_stage_installs_a_working_service(
    dockerfile: tuple[dict[str, str], list[Stage]], tmp_path: Path
) -> None:
    """Run the builder's `uv sync` lines on the admitted context, then the entry point."""
    _, stages = dockerfile
    context = tmp_path / "context"
    files = context_files(ignore_patterns())
    assert "services/apiserver/src/apiserver/app.py" in files
    for path in files:
        target = context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_LINK_MODE": "copy",
    }
    env.pop("VIRTUAL_ENV", None)
    commands = [args for args in stages[0].all("RUN") if args.startswith("uv sync")]
    assert len(commands) == 2
    for command in commands:
        argv = shlex.split(command)
        result = subprocess.run(
            [uv_binary(), *argv[1:]],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import apiserver, fastapi, pymongo; print(apiserver.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert str(venv) in where.stdout, "installed into the venv, not an editable link"
    # Only the apiserver's dependencies: no test tooling, no other workspace member.
    for absent in ("pytest", "stacktools", "pipeline", "ansible"):
        probe = subprocess.run([python, "-c", f"import {absent}"], capture_output=True, check=False)
        assert probe.returncode != 0, f"{absent} must not be in the image"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APISERVER_")}
    refused = subprocess.run(
        [python, "-m", "apiserver"],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert "APISERVER_API_KEY is not set" in refused.stderr
