"""`make push-images` for real (issue 9, item 13): playbooks/images.yml pushes both images with
their content tags to a registry (go-containerregistry's, on loopback), the pushed images are
the very images the set-up step built for the tests (same image IDs: one build path), the roles
of that inventory deploy exactly the pushed references, and a second run changes nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stacktools.builds import docker, images
from stacktools.cluster.render import render
from stacktools.servers.registry import Registry

pytestmark = pytest.mark.images

INVENTORY = "staging"
PATH = "stack"  # the registry's path prefix: stack_image_registry = host:port/stack
RECAP = re.compile(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0")


def test_push_images_pushes_what_the_roles_deploy(ansible: Any, tmp_path: Path) -> None:
    built = {service: images.image(service) for service in images.SERVICES}
    (base,) = {image.base for image in built.values()}
    with Registry(tmp_path / "registry") as registry:
        registry_name = f"{registry.host}/{PATH}"
        pushed = [f"{registry_name}/gateway-api-stack/{s}:{i.tag}" for s, i in built.items()]
        try:
            _push_twice(ansible, registry, registry_name, base, built)
        finally:
            # The playbook tags the images with this registry's name, as a push does; the
            # registry is gone after the test, so are its names (the images stay).
            docker.run(["image", "rm", *pushed], check=False)

    rendered = render(
        INVENTORY,
        tmp_path / "rendered",
        roles=("apiserver", "dagster"),
        extra_vars={"stack_image_registry": registry_name},
    )
    deployment = rendered.find("apiserver", "Deployment", "apiserver")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        container["image"]
        == f"{registry_name}/gateway-api-stack/apiserver:{built['apiserver'].tag}"
    )
    values = rendered.values("dagster", "dagster.values.yaml")
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert code["image"]["repository"] == f"{registry_name}/gateway-api-stack/pipeline"
    assert code["image"]["tag"] == built["pipeline"].tag


def _push_twice(
    ansible: Any, registry: Registry, registry_name: str, base: str, built: dict[str, images.Image]
) -> None:
    """images.yml twice: the first pushes the images the set-up step built, the second nothing."""
    args = [
        "-i", f"inventories/{INVENTORY}", "playbooks/images.yml",
        "-e", f"stack_image_registry={registry_name}",
        # The base the set-up step built with (the stand-in where no registry is reachable).
        "-e", f"stack_image_base={base}",
    ]  # fmt: skip
    first = ansible.run("ansible-playbook", *args, timeout=1800)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    changed = RECAP.search(first.stdout)
    assert changed, first.stdout[-2000:]
    assert int(changed.group(1)) >= 1
    for service, image in built.items():
        manifest = registry.manifest(f"{PATH}/gateway-api-stack/{service}", image.tag)
        config = manifest["config"]
        assert isinstance(config, dict)
        assert config["digest"] == image.image_id, f"{service}: another image was pushed"
    second = ansible.run("ansible-playbook", *args, timeout=1800)
    assert second.returncode == 0, second.stdout[-4000:]
    again = RECAP.search(second.stdout)
    assert again, second.stdout[-2000:]
    assert again.group(1) == "0", second.stdout[-3000:]
