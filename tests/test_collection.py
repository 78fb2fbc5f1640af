"""The Galaxy collection, used the way its users use it: the tarball `make prepare` builds with
`ansible-galaxy collection build`, installed offline into a project outside the repository, its
roles called by their fully qualified names from the README's playbooks, its playbooks by FQCN.
(That it renders the same manifests as the repository: tests/test_collection_render.py.)"""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements
from ansible.release import __version__ as ansible_core_version

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = ("local", "staging", "production")
ROLES = ("istio", "mongodb", "monitoring", "apiserver", "dagster", "gateway")
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
K8S = "kubernetes.core"
# Files the collection holds besides everything under these folders.
FOLDERS = ("roles", "playbooks", "plugins")
TOP_FILES = {"README.md", "CHANGELOG.md", "changelogs/changelog.yaml", "meta/runtime.yml"}
CACHES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
# What builds images from a checkout (the harness, the committed files): not in the collection.
CHECKOUT_ONLY = ("playbooks/images.yml", "playbooks/tasks/build_images.yml")
_SPEC = importlib.util.spec_from_file_location(
    "check_collections", REPO / "tools/check_collections.py"
)
assert _SPEC
assert _SPEC.loader
CHECKER = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(CHECKER)


def readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def readme_playbooks() -> dict[str, list[dict[str, Any]]]:
    """The README's playbooks that use the collection: name -> plays, by what they use."""
    found: dict[str, list[dict[str, Any]]] = {}
    for block in readme_blocks("yaml"):
        plays = yaml.safe_load(block)
        if not isinstance(plays, list) or FQCN not in block:
            continue
        imports = [play.get("ansible.builtin.import_playbook") for play in plays]
        found["site" if f"{FQCN}.site" in imports else "roles"] = plays
    return found


def list_tasks(output: str) -> list[str]:
    """The task names of `ansible-playbook --list-tasks` (role tasks as '<role> : <task>')."""
    return [
        line.split("\t")[0].strip()
        for line in output.splitlines()
        if "\tTAGS: [" in line and not line.lstrip().startswith("play #")
    ]


def test_the_tarball_holds_the_roles_playbooks_and_plugin_and_nothing_else(user: Any) -> None:
    with tarfile.open(user.built.tarball) as tar:
        members = tar.getmembers()
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert not [m.name for m in members if m.issym() or m.islnk()], "links in the tarball"
    files = {m.name for m in members if m.isfile()} - {"MANIFEST.json", "FILES.json"}
    expected = set(TOP_FILES)
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*"):
            parts = path.relative_to(REPO).parts
            name = "/".join(parts)
            cached = any(part in CACHES for part in parts)
            if path.is_file() and not cached and not name.startswith(CHECKOUT_ONLY):
                expected.add(name)
    assert files == expected, (
        f"in the tarball only: {sorted(files - expected)}; "
        f"missing from it (galaxy.yml's manifest directives): {sorted(expected - files)}"
    )
    assert not [name for name in files if name.endswith(".pyc")]
    info = manifest["collection_info"]
    for key in ("namespace", "name", "version", "dependencies", "license", "repository"):
        assert info[key] == GALAXY[key], key


def test_it_installs_offline_with_its_dependency_satisfied(user: Any) -> None:
    listing = user.run("ansible-galaxy", "collection", "list", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    dump = user.run("ansible-config", "dump", "--format", "json")
    assert dump.returncode == 0, dump.stderr
    config = next(
        item for item in json.loads(dump.stdout) if item.get("name") == "COLLECTIONS_PATHS"
    )
    # The copy Ansible loads: the first in its search order (not the listing's, which is a set's).
    loaded = CHECKER.loaded_versions(listing.stdout, [Path(p) for p in config["value"]])
    version, path = loaded[FQCN]
    assert Path(path) == user.collections / "ansible_collections", path
    assert version == GALAXY["version"]
    for dependency, spec in GALAXY["dependencies"].items():
        assert meets_requirements(loaded[dependency][0], spec), (dependency, loaded[dependency])


def test_the_loaded_copy_is_the_first_in_ansibles_search_order_not_the_listings() -> None:
    """`ansible-galaxy collection list` sorts by path name: a venv under /check listed before a
    cache under /root made a run take the bundled 6.2.0 for the one Ansible loads."""
    listing = {
        "/check/.venv/lib/site-packages/ansible_collections": {K8S: {"version": "6.2.0"}},
        "/root/cache/core/ansible_collections": {K8S: {"version": "6.6.0"}},
        "/srv/project/collections/ansible_collections": {FQCN: {"version": "1.0.0"}},
    }
    configured = [Path("/srv/project/collections"), Path("/root/cache/core")]
    loaded = CHECKER.loaded_versions(json.dumps(listing), configured)
    assert loaded[K8S] == ("6.6.0", "/root/cache/core/ansible_collections")
    assert loaded[FQCN] == ("1.0.0", "/srv/project/collections/ansible_collections")
    assert CHECKER.loaded_versions(json.dumps(listing), [])[K8S][0] == "6.2.0"


def test_galaxy_dependencies_are_the_checkouts_requirements() -> None:
    wanted = yaml.safe_load((REPO / "collections" / "requirements.yml").read_text())
    assert GALAXY["dependencies"] == {
        item["name"]: item["version"] for item in wanted["collections"]
    }


def test_the_supported_ansible_core_range_is_declared_once_and_met() -> None:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    minimum = re.fullmatch(r">=(\d+)\.(\d+)\.0", runtime["requires_ansible"])
    assert minimum, runtime["requires_ansible"]
    for role in ROLES:
        meta = yaml.safe_load((REPO / "roles" / role / "meta" / "main.yml").read_text())
        assert meta["galaxy_info"]["min_ansible_version"] == ".".join(minimum.groups()), role
        assert meta["galaxy_info"]["namespace"] == GALAXY["namespace"], role
    assert meets_requirements(ansible_core_version, runtime["requires_ansible"])


def test_the_checkout_is_the_collection_for_its_own_playbooks(ansible: Any) -> None:
    """collections/ansible_collections/<namespace>/<name> links into this checkout, so that the
    roles' FQCN lookup resolves to the checkout's plugin (content-derived image tags)."""
    linked = REPO / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    for name in ("galaxy.yml", "meta", "playbooks", "plugins", "roles"):
        assert (linked / name).is_symlink(), name
        assert (linked / name).resolve() == REPO / name, name
    result = ansible.run("ansible-galaxy", "collection", "list", FQCN, "--format", "json")
    assert result.returncode == 0, result.stderr
    (found,) = [path for path, listed in json.loads(result.stdout).items() if FQCN in listed]
    assert Path(found).resolve() == (REPO / "collections" / "ansible_collections").resolve()


def test_the_readme_shows_both_ways_of_using_the_collection() -> None:
    playbooks = readme_playbooks()
    assert set(playbooks) == {"roles", "site"}, (
        f"README.md must show a playbook calling the roles by FQCN ({FQCN}.<role>) and one "
        f"importing {FQCN}.site; found {sorted(playbooks)}"
    )
    (play,) = playbooks["roles"]
    assert [entry["role"] for entry in play["roles"]] == [f"{FQCN}.{role}" for role in ROLES]
    install = re.compile(rf"^ansible-galaxy collection install {re.escape(FQCN)}\b", re.MULTILINE)
    assert any(install.search(block) for block in readme_blocks("sh"))


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_readme_playbooks_pass_syntax_check_from_the_installed_collection(
    user: Any, inventory: str, tmp_path: Path
) -> None:
    for name, plays in readme_playbooks().items():
        playbook = user.root / f"readme-{name}-{inventory}.yml"
        playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
        result = user.run(
            "ansible-playbook", "--syntax-check", "-i", str(REPO / "inventories" / inventory),
            str(playbook),
        )  # fmt: skip
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


def test_the_collections_playbooks_run_the_repositorys_tasks(ansible: Any, user: Any) -> None:
    """site and teardown by FQCN, and the README's own playbook, list exactly the tasks of the
    repository's playbooks (roles resolved from the installed collection, named by FQCN)."""
    inventory = str(REPO / "inventories" / "local")
    readme = user.root / "readme-roles-tasks.yml"
    readme.write_text(yaml.safe_dump(readme_playbooks()["roles"], sort_keys=False))
    runs = {
        "site": (user, f"{FQCN}.site"),
        "teardown": (user, f"{FQCN}.teardown"),
        "readme": (user, str(readme)),
        "repo-site": (ansible, "playbooks/site.yml"),
        "repo-teardown": (ansible, "playbooks/teardown.yml"),
    }
    tasks = {}
    for name, (runner, playbook) in runs.items():
        result = runner.run("ansible-playbook", "-i", inventory, "--list-tasks", playbook)
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
        tasks[name] = list_tasks(result.stdout)
    prefixed = [f"{FQCN}.{task}" if " : " in task else task for task in tasks["repo-site"]]
    assert len(prefixed) > 60
    assert tasks["site"] == prefixed
    assert tasks["teardown"] == tasks["repo-teardown"]
    roles_only = [task for task in prefixed if " : " in task]
    assert tasks["readme"] == roles_only
    roles_listed = {task.split(" : ")[0] for task in tasks["site"] if " : " in task}
    assert roles_listed == {f"{FQCN}.{role}" for role in ROLES}


def test_the_installed_lookup_tags_images_with_the_version(user: Any) -> None:
    lookup = f"{FQCN}.stack_image_tag"
    result = user.run(
        "ansible", "localhost", "-m", "ansible.builtin.debug",
        "-a", f"msg={{{{ lookup('{lookup}', 'apiserver', 'pipeline') }}}}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    version = GALAXY["version"]
    assert f'"msg": "{version},{version}"' in result.stdout
    wrong = user.run(
        "ansible", "localhost", "-m", "ansible.builtin.debug",
        "-a", f"msg={{{{ lookup('{lookup}', 'apisrever') }}}}",
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "no released image 'apisrever'" in wrong.stdout
