"""Images outside kind come from a registry (issue 9, item 13): staging and production refuse to
run without one, naming the variable; a registry given once (stack_image_registry) reaches both
roles; kind (inventories/local) needs none, because kind.yml loads the images into the node;
the push playbook refuses to run without a registry. kind.yml and images.yml build with the
task file that runs the set-up step's build (python -m stacktools images build)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
ERROR = re.compile(r"^\[ERROR\]: (.*?)(?=^Origin:|^\S+: \[|\Z)", re.MULTILINE | re.DOTALL)
REGISTRY = "registry.example.com:5000/stack"


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_staging_and_production_need_a_registry_and_name_the_variable(ansible: Any) -> None:
    check = "tests/render/check_vars.yml"
    runs = {
        "staging": ["-i", "inventories/staging", check],
        "production": ["-i", "inventories/production", check],
        "dagster": [
            "-i", "inventories/staging", check,
            "-e", json.dumps({"apiserver_image_registry": REGISTRY}),
        ],
        "scheme": ["-i", "inventories/staging", check, "-e", "stack_image_registry=https://r.example.com/"],
        "given": ["-i", "inventories/production", check, "-e", f"stack_image_registry={REGISTRY}"],
        "push": ["-i", "inventories/local", "playbooks/images.yml"],
    }  # fmt: skip
    started = {name: ansible.start("ansible-playbook", argv) for name, argv in runs.items()}
    results = {name: finish(process) for name, process in started.items()}
    for name, variable in (
        ("staging", "apiserver_image_registry"),
        ("production", "apiserver_image_registry"),
        ("dagster", "dagster_pipeline_image_registry"),
        ("push", "stack_image_registry"),
    ):
        returncode, output = results[name]
        errors = ERROR.findall(output)
        assert returncode != 0, f"{name}: accepted\n{output[-2000:]}"
        assert any(variable in error for error in errors), f"{name}: {variable} not in {errors}"
        if variable != "stack_image_registry":
            assert any("make push-images" in error for error in errors), errors
    returncode, output = results["scheme"]
    assert returncode != 0
    assert any("without a scheme" in error for error in ERROR.findall(output)), output[-2000:]
    returncode, output = results["given"]
    assert returncode == 0, output[-3000:]


def test_one_registry_variable_reaches_both_images(
    rendered_manifests: dict[str, list[Any]],
    rendered_values: dict[str, Any],
    registries: dict[str, str],
) -> None:
    assert registries["local"] == ""
    for inventory in ("staging", "production"):
        registry = registries[inventory]
        assert registry
        (deployment,) = [
            m.doc
            for m in rendered_manifests[inventory]
            if m.kind == "Deployment" and m.name == "apiserver"
        ]
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith(f"{registry}/gateway-api-stack/apiserver:"), image
        values = rendered_values[inventory]["dagster/dagster"]
        (code,) = values["dagster-user-deployments"]["deployments"]
        assert code["image"]["repository"] == f"{registry}/gateway-api-stack/pipeline"


def test_kind_and_the_push_playbook_build_with_the_set_up_steps_build() -> None:
    tasks = yaml.safe_load((REPO / "playbooks" / "tasks" / "build_images.yml").read_text())
    (build,) = tasks
    argv = build["ansible.builtin.command"]["argv"]
    assert "'stacktools', 'images', 'build', item.service" in argv
    for playbook in ("kind.yml", "images.yml"):
        text = (REPO / "playbooks" / playbook).read_text()
        assert "ansible.builtin.include_tasks: tasks/build_images.yml" in text, playbook
        assert "docker build" not in text, playbook
        assert "[docker, build" not in text, playbook
    makefile = (REPO / "Makefile").read_text()
    # Deploy's set-up only (no Go, no test tools), then the playbook.
    target = re.search(r"^push-images:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target, "no push-images target in the Makefile"
    assert target.group(1).splitlines() == [
        "\t@bash tools/setup.sh deploy",
        "\tansible-playbook playbooks/images.yml -i $(INVENTORY) "
        "$(if $(REGISTRY),-e stack_image_registry=$(REGISTRY))",
    ]
