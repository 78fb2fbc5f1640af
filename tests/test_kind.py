"""The kind deploy path refuses a kind too old for the pinned node image, up front, and the node
image is pinned by digest to exactly the image the minimum kind release was built with.

Real kind binaries (built from the Go module proxy by `make prepare`: the minimum release and
an older one) answer `kind version`; no cluster is created (that needs Docker)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacktools.builds import kind

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
KIND_VARS = REPO / "inventories" / "local" / "group_vars" / "all" / "kind.yml"
SCRIPT = REPO / "tools" / "check-deploy-prereqs.sh"
ERROR = re.compile(r"^fatal: .*?\n(?=\S|\Z)", re.MULTILINE | re.DOTALL)
DEPLOY_TOOLS = {"docker", "kind", "kubectl", "helm"}


def path_with_kind(folder: Path, version: str) -> str:
    """This machine's programs without docker, kubectl, helm and kind, plus kind ``version``."""
    folder.mkdir()
    (folder / "kind").symlink_to(kind.binary(version))
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if Path(directory).is_dir():
            for program in Path(directory).iterdir():
                link = folder / program.name
                if program.name not in DEPLOY_TOOLS and not link.exists() and not link.is_symlink():
                    link.symlink_to(program)
    return str(folder)


def run_script(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": path, "HOME": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_prerequisites_check_refuses_a_kind_older_than_the_minimum(tmp_path: Path) -> None:
    old = run_script(path_with_kind(tmp_path / "old", kind.KIND_TOO_OLD))
    assert old.returncode == 1
    assert (
        f"  - kind {kind.KIND_MINIMUM} or newer: found {kind.KIND_TOO_OLD}; the node image "
        "kindest/node:v1.36.1 is built for kind v0.32.0" in old.stderr
    ), old.stderr
    current = run_script(path_with_kind(tmp_path / "current", kind.KIND_MINIMUM))
    assert current.returncode == 1  # docker, helm and kubectl are still missing ...
    assert "  - helm: " in current.stderr
    assert not [line for line in current.stderr.splitlines() if line.startswith("  - kind")]


def test_the_kind_playbook_refuses_a_kind_older_than_the_minimum(
    ansible: Any, tmp_path: Path
) -> None:
    results = {}
    for version in (kind.KIND_TOO_OLD, kind.KIND_MINIMUM):
        bin_path = path_with_kind(tmp_path / version, version)
        result = ansible.run(
            "ansible-playbook", "-i", "inventories/local", "playbooks/kind.yml",
            PATH=f"{ansible.bin_dir}:{bin_path}",
        )  # fmt: skip
        assert result.returncode != 0
        assert "changed=0" in result.stdout
        (error,) = ERROR.findall(result.stdout)
        assert "Cannot deploy to kind on this machine; missing:" in error
        results[version] = " ".join(error.split())
    expected = (
        f"kind {kind.KIND_MINIMUM} or newer (found {kind.KIND_TOO_OLD}; kind_node_image "
        f"{kind.node_image(kind.KIND_MINIMUM)} is built for kind {kind.KIND_MINIMUM}"
    )
    assert expected in results[kind.KIND_TOO_OLD]
    assert "or newer (found" not in results[kind.KIND_MINIMUM]
    assert "helm 3" in results[kind.KIND_MINIMUM]


def test_the_node_image_is_pinned_to_the_default_of_the_minimum_kind() -> None:
    pinned: dict[str, Any] = yaml.safe_load(KIND_VARS.read_text())
    image = pinned["kind_node_image"]
    assert re.fullmatch(r"kindest/node:v1\.36\.\d+@sha256:[0-9a-f]{64}", image), image
    # The image kind v0.32.0 creates clusters with (its image.go), recorded by `make prepare`.
    assert image == kind.node_image(kind.KIND_MINIMUM)
    assert pinned["kind_minimum_version"] == kind.KIND_MINIMUM
    script_minimum = re.search(r"^KIND_MINIMUM=(\S+)$", SCRIPT.read_text(), re.MULTILINE)
    assert script_minimum is not None
    assert script_minimum.group(1) == kind.KIND_MINIMUM
    for version in kind.VERSIONS:
        printed = subprocess.run(
            [str(kind.binary(version)), "version"], capture_output=True, text=True, check=True
        ).stdout
        assert printed.startswith(f"kind {version} "), printed
    # The older release really is older and really ships another image.
    assert kind.node_image(kind.KIND_TOO_OLD) != image


def kind_tasks() -> list[dict[str, Any]]:
    """Every task of playbooks/kind.yml, blocks flattened."""
    (play,) = yaml.safe_load((REPO / "playbooks" / "kind.yml").read_text())
    found: list[dict[str, Any]] = []
    pending = list(play["tasks"])
    while pending:
        task = pending.pop(0)
        found.append(task)
        pending[:0] = task.get("block", [])
    return found


def test_kind_serves_the_metrics_the_local_autoscaler_reads() -> None:
    """The local inventory enables the apiserver's HorizontalPodAutoscaler (CPU utilisation),
    which reads metrics.k8s.io: kind.yml installs metrics-server from a pinned chart with the flag
    kind's self-signed kubelet certificates need, and waits until the API is Available; the
    README says so, with the same version."""
    (play,) = yaml.safe_load((REPO / "playbooks" / "kind.yml").read_text())
    local = yaml.safe_load(
        (REPO / "inventories" / "local" / "group_vars" / "all" / "apiserver.yml").read_text()
    )
    assert local["apiserver_hpa_max_replicas"] > local["apiserver_hpa_min_replicas"]
    tasks = kind_tasks()
    (helm,) = [t["kubernetes.core.helm"] for t in tasks if "kubernetes.core.helm" in t]
    assert helm["chart_ref"] == "metrics-server"
    version = play["vars"]["kind_metrics_server_chart_version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "the chart version must be exact"
    assert helm["chart_version"] == "{{ kind_metrics_server_chart_version }}"
    assert helm["release_values"] == "{{ kind_metrics_server_values }}"
    assert "--kubelet-insecure-tls" in play["vars"]["kind_metrics_server_values"]["args"]
    assert helm["wait"] is True
    (wait,) = [
        t["kubernetes.core.k8s_info"]
        for t in tasks
        if t.get("kubernetes.core.k8s_info", {}).get("kind") == "APIService"
    ]
    assert wait["name"] == "v1beta1.metrics.k8s.io"
    assert wait["wait_condition"] == {"type": "Available", "status": "True"}
    names = [t.get("name", "") for t in tasks]
    install = names.index("Install the metrics-server chart")
    assert names.index("Create the kind cluster") < install
    readme = (REPO / "README.md").read_text()
    assert f"metrics-server chart {version}" in readme
    verify = (REPO / "molecule" / "default" / "verify.yml").read_text()
    assert "kind: HorizontalPodAutoscaler" in verify
