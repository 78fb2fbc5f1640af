"""What the Dockerfiles must keep so that the images level can build them without a registry
and users' builds keep the official base: one base, through one build argument whose default
is the official image; no BuildKit frontend to pull; uv from PyPI at the repository's pin; a
non-root runtime that takes only the virtual environment from the build stage. (That the
images build, run and hold nothing else is proven for real on the images level.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stacktools.builds import images

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
SERVICES = images.SERVICES


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> tuple[str, dict[str, str], list[Stage]]:
    """(the raw text, ARGs before the first FROM, stages), continuation lines joined."""
    text = path.read_text()
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip()))
        elif not stages:
            assert keyword == "ARG", f"{path}: only ARG may precede FROM, found {keyword}"
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return text, args, stages


def uv_pin() -> str:
    for script in sorted((REPO / "tools").glob("*.sh")):
        found = re.search(r"^UV_VERSION=(\S+)", script.read_text(), re.M)
        if found:
            return found.group(1)
    raise AssertionError("no UV_VERSION= pin in tools/*.sh")


@pytest.mark.parametrize("service", SERVICES)
def test_one_base_through_python_image_with_the_official_default(service: str) -> None:
    text, args, stages = parse(REPO / "services" / service / "Dockerfile")
    assert args == {"PYTHON_IMAGE": images.OFFICIAL_BASE}
    assert [stage.base for stage in stages] == ["${PYTHON_IMAGE}"] * len(stages)
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), (
        "a `# syntax=` line makes BuildKit pull its frontend image from a registry"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_uv_from_pypi_at_the_repository_pin(service: str) -> None:
    _, _, stages = parse(REPO / "services" / service / "Dockerfile")
    build = stages[0]
    assert f"UV_VERSION={uv_pin()}" in build.all("ARG")
    assert 'pip install "uv==${UV_VERSION}"' in build.all("RUN")
    syncs = [run for run in build.all("RUN") if run.startswith("uv sync")]
    assert syncs
    assert all("--locked" in run and f"--package {service}" in run for run in syncs)


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_is_non_root_and_takes_only_the_environment(service: str) -> None:
    _, _, stages = parse(REPO / "services" / service / "Dockerfile")
    build, runtime = stages[0], stages[-1]
    assert runtime.all("USER") == ["10001:10001"]
    (copy,) = runtime.all("COPY")
    source, target = copy.removeprefix(f"--from={build.name} ").split()
    assert source == target
    assert source.endswith("venv")
    assert not any(kw == "ADD" for stage in stages for kw, _ in stage.instructions)
