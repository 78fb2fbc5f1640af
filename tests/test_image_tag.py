"""The content-derived image tag: one function (the stack_image_tag lookup) used by kind.yml to
build the images and by the role defaults to deploy them; it changes exactly when the image's
inputs change."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from plugin_files import load_plugin

pytestmark = pytest.mark.schemas

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugins" / "lookup" / "stack_image_tag.py"
LOOKUP = "gateway_api_stack.showcase.stack_image_tag"


def plugin() -> ModuleType:
    return load_plugin(PLUGIN)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_tag_follows_the_image_inputs_only(tmp_path: Path) -> None:
    source_tag = plugin().source_tag
    write(tmp_path / "pyproject.toml", "[project]\n")
    write(tmp_path / "uv.lock", "version = 1\n")
    write(tmp_path / "services/apiserver/Dockerfile", "FROM python\n")
    write(tmp_path / "services/apiserver/src/apiserver/app.py", "x = 1\n")
    write(tmp_path / "services/apiserver/tests/test_app.py", "def test(): pass\n")
    write(tmp_path / "services/pipeline/pyproject.toml", "[project]\nname = 'pipeline'\n")
    tag = source_tag(tmp_path, "apiserver")
    assert re.fullmatch(r"[0-9a-f]{12}", tag)
    assert source_tag(tmp_path, "apiserver") == tag  # deterministic

    unchanged = [
        ("services/apiserver/tests/test_app.py", "def test(): assert True\n"),  # not in the image
        ("services/apiserver/src/apiserver/__pycache__/app.cpython-311.pyc", "cache"),
        ("services/pipeline/src/pipeline/assets.py", "other service\n"),
    ]
    for name, text in unchanged:
        write(tmp_path / name, text)
        assert source_tag(tmp_path, "apiserver") == tag, name

    changed = [
        ("services/apiserver/src/apiserver/app.py", "x = 2\n"),
        ("services/apiserver/Dockerfile", "FROM python:3.11\n"),
        ("uv.lock", "version = 2\n"),
        ("services/pipeline/pyproject.toml", "[project]\nname = 'pipeline'\nversion = '2'\n"),
    ]
    for name, text in changed:
        write(tmp_path / name, text)
        new = source_tag(tmp_path, "apiserver")
        assert new != tag, f"{name} changed but the tag did not"
        tag = new


def test_unknown_service_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "services/apiserver/Dockerfile", "FROM python\n")
    with pytest.raises(ValueError, match=r"no service directory .*'apiserver'"):
        plugin().source_tag(tmp_path, "apisrever")


def test_an_installed_collection_tags_with_its_version(tmp_path: Path) -> None:
    """No services/ beside the plugin, a MANIFEST.json: the released images' tag, the version."""
    module = plugin()
    manifest = {"collection_info": {"namespace": "gateway_api_stack", "version": "1.2.3-rc.1"}}
    write(tmp_path / "MANIFEST.json", json.dumps(manifest))
    assert module.image_tag(tmp_path, "apiserver") == "1.2.3-rc.1"
    assert module.image_tag(tmp_path, "pipeline") == "1.2.3-rc.1"
    with pytest.raises(ValueError, match=r"no released image 'apisrever' .*'apiserver', 'pip"):
        module.image_tag(tmp_path, "apisrever")
    manifest["collection_info"]["version"] = "1.2.3+build.5"  # '+' cannot be in an image tag
    write(tmp_path / "MANIFEST.json", json.dumps(manifest))
    with pytest.raises(ValueError, match=r"'1\.2\.3\+build\.5' is not a valid image tag"):
        module.image_tag(tmp_path, "apiserver")
    # A checkout (services/ present) keeps the content-derived tag even beside a MANIFEST.json.
    write(tmp_path / "services/apiserver/Dockerfile", "FROM python\n")
    assert module.image_tag(tmp_path, "apiserver") == module.source_tag(tmp_path, "apiserver")
    (tmp_path / "MANIFEST.json").unlink()
    (tmp_path / "services/apiserver/Dockerfile").unlink()
    (tmp_path / "services/apiserver").rmdir()
    (tmp_path / "services").rmdir()
    with pytest.raises(ValueError, match="neither a checkout of the repository"):
        module.image_tag(tmp_path, "apiserver")


def test_every_service_with_a_dockerfile_is_released() -> None:
    dockerfiles = sorted(path.parent.name for path in (REPO / "services").glob("*/Dockerfile"))
    assert dockerfiles == sorted(plugin().RELEASED_SERVICES)


def test_roles_deploy_the_tag_kind_builds(
    ansible: Any,
    rendered_manifests: dict[str, list[Any]],
    rendered_values: dict[str, Any],
    registries: dict[str, str],
) -> None:
    source_tag = plugin().source_tag
    apiserver, pipeline = source_tag(REPO, "apiserver"), source_tag(REPO, "pipeline")
    result = ansible.run(
        "ansible", "localhost", "-i", "inventories/local", "-m", "ansible.builtin.debug",
        "-a", f"msg={{{{ lookup('{LOOKUP}', 'apiserver', 'pipeline') }}}}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"msg: {apiserver},{pipeline}" in result.stdout
    kind = (REPO / "playbooks" / "kind.yml").read_text()
    assert f"lookup('{LOOKUP}', 'apiserver')" in kind
    assert f"lookup('{LOOKUP}', 'pipeline')" in kind
    for inventory, manifests in rendered_manifests.items():
        prefix = f"{registries[inventory]}/" if registries[inventory] else ""
        (deployment,) = [
            m.doc for m in manifests if m.kind == "Deployment" and m.name == "apiserver"
        ]
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{prefix}gateway-api-stack/apiserver:{apiserver}", inventory
        values = rendered_values[inventory]["dagster/dagster"]
        (code,) = values["dagster-user-deployments"]["deployments"]
        assert code["image"] == {
            "repository": f"{prefix}gateway-api-stack/pipeline",
            "tag": pipeline,
            "pullPolicy": "IfNotPresent",
        }
