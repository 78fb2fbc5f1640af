"""The installed collection renders the manifests the repository renders: tests/render/render.yml
through the roles called by their fully qualified names from a user's project (defaults,
argument specs, validate.yml and templates of the installed copy), for every inventory, byte
for byte the same as the repository's own render (tests/conftest.py, same secret), the one
intended difference aside: the two service images are tagged with the collection's version
instead of the checkout's content-derived tag."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from stacktools.builds import ansible_matrix

pytestmark = pytest.mark.schemas

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugins" / "lookup" / "stack_image_tag.py"


def content_tags() -> dict[str, str]:
    """service -> the checkout's content-derived tag (what the repository's render deploys)."""
    spec = importlib.util.spec_from_file_location("stack_image_tag", PLUGIN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {service: module.source_tag(REPO, service) for service in module.RELEASED_SERVICES}


def task_names(output: str) -> list[str]:
    return [
        line.split("\t")[0].strip()
        for line in output.splitlines()
        if "\tTAGS: [" in line and not line.lstrip().startswith("play #")
    ]


def differences(repo: Path, installed: Path, version: str) -> list[str]:
    """What differs between two render folders once the repository's image tags read
    ``version``; also asserts that each tag was there to replace."""
    repo_files = sorted(p.relative_to(repo) for p in repo.rglob("*.yaml"))
    installed_files = sorted(p.relative_to(installed) for p in installed.rglob("*.yaml"))
    assert len(repo_files) > 30
    if repo_files != installed_files:
        return [f"rendered files differ: {sorted(set(repo_files) ^ set(installed_files))}"]
    tags = content_tags()
    seen = dict.fromkeys(tags, 0)
    found = []
    for name in repo_files:
        expected = (repo / name).read_text()
        for service, tag in tags.items():
            seen[service] += expected.count(tag)
            expected = expected.replace(tag, version)
        if (installed / name).read_text() != expected:
            found.append(str(name))
    assert all(seen.values()), f"an image tag never appeared in the repository's render: {seen}"
    return found


# Six ansible-playbook runs of about 25 s of CPU each when it is the first to need `rendered`.
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_installed_roles_render_the_repositorys_manifests(
    user: Any, rendered: dict[str, Path], render_installed: Any, tmp_path: Path
) -> None:
    installed = render_installed(user, tmp_path)
    for inventory, folder in rendered.items():
        different = differences(folder, installed[inventory], user.built.version)
        assert not different, (
            f"inventories/{inventory}: the collection renders {different} otherwise"
        )


@pytest.fixture(params=ansible_matrix.VERSIONS)
def older_user(
    request: pytest.FixtureRequest, user: Any, make_user_project: Any, tmp_path: Path
) -> Any:
    """The collection installed by an older ansible-core of the matrix into its own project."""
    bin_dir = ansible_matrix.venv(request.param) / "bin"
    project = make_user_project(tmp_path / "project", user.built, bin_dir)
    result = project.run("ansible", "--version")
    assert result.stdout.startswith(f"ansible [core {request.param}]"), result.stdout
    return project


@pytest.fixture(scope="module")
def site_tasks(user: Any) -> list[str]:
    """The tasks the installed site lists for inventories/local with the project's ansible-core."""
    return list_site_tasks(user)


def list_site_tasks(project: Any) -> list[str]:
    inventory = str(REPO / "inventories" / "local")
    site = f"{project.built.fqcn}.site"
    result = project.run("ansible-playbook", "-i", inventory, "--list-tasks", site)
    assert result.returncode == 0, result.stdout + result.stderr
    return task_names(result.stdout)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_supported_ansible_core_lists_and_renders_the_same(
    older_user: Any, site_tasks: list[str], rendered: dict[str, Path], render_installed: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The range of meta/runtime.yml: with each older ansible-core of the matrix, the installed
    collection's site lists the same tasks, and its roles render for inventories/local (the one
    whose data reaches every template) what the repository renders."""
    assert list_site_tasks(older_user) == site_tasks
    (installed,) = render_installed(older_user, tmp_path, ["local"]).values()
    different = differences(rendered["local"], installed, older_user.built.version)
    assert not different, f"inventories/local: rendered otherwise: {different}"
