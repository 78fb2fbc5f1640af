"""The playbooks and Molecule scenarios parse, tags select exactly one role, bad variables are
refused naming the variable, and runs without a cluster or without Docker/kind stop early with
a message saying what is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacktools.builds import helm

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = ("local", "staging", "production")
ROLES = ("istio", "mongodb", "monitoring", "apiserver", "dagster", "gateway")
PLAYBOOKS = (
    "playbooks/site.yml",
    "playbooks/teardown.yml",
    "playbooks/kind.yml",
    "playbooks/destroy.yml",
    "playbooks/images.yml",
)
SCENARIOS = sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))
ERROR = re.compile(r"^\[ERROR\]: (.*?)(?=^Origin:|^\S+: \[|\Z)", re.MULTILINE | re.DOTALL)
DEPLOY_TOOLS = {"docker", "kind", "kubectl", "helm"}


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_playbooks_pass_syntax_check(ansible: Any, inventory: str) -> None:
    molecule_playbooks = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "molecule").glob("*/*.yml")
        if path.name not in {"molecule.yml", "vars.yml"}
    )
    assert len(molecule_playbooks) >= 4
    result = ansible.run(
        "ansible-playbook",
        "--syntax-check",
        "-i",
        f"inventories/{inventory}",
        *PLAYBOOKS,
        *molecule_playbooks,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_site_and_teardown_tags_select_exactly_one_role(ansible: Any) -> None:
    runs = {
        (playbook, role): ansible.start(
            "ansible-playbook",
            ["-i", "inventories/local", playbook, "--list-tasks", "--tags", role],
        )
        for playbook in ("playbooks/site.yml", "playbooks/teardown.yml")
        for role in ROLES
    }
    for (playbook, role), process in runs.items():
        returncode, output = finish(process)
        assert returncode == 0, output
        tasks = [line.strip() for line in output.splitlines() if "TAGS:" in line and " : " in line]
        if playbook.endswith("site.yml"):
            # Role tasks are listed as "<role> : <task name>". Ansible tags every role's
            # argument-spec validation `always`; it reads no cluster and changes nothing.
            work = [line for line in tasks if "Validating arguments against arg spec" not in line]
            roles_listed = {line.split(" : ", 1)[0] for line in work}
            assert roles_listed == {role}, f"--tags {role} selected {roles_listed}"
            assert len(work) > 5
        else:
            # teardown.yml includes each role's teardown.yml by a task tagged with the role.
            listed = [line for line in output.splitlines() if line.strip().startswith("Remove ")]
            assert len(listed) == 1, f"--tags {role} listed {listed}"


def test_teardown_runs_the_roles_in_the_reverse_order_of_site() -> None:
    site = yaml.safe_load((REPO / "playbooks/site.yml").read_text())
    teardown = yaml.safe_load((REPO / "playbooks/teardown.yml").read_text())
    order = [entry["role"] for entry in site[0]["roles"]]
    assert sorted(order) == sorted(ROLES)
    assert order.index("gateway") == len(order) - 1  # ReferenceGrants need backend namespaces
    assert order.index("mongodb") < order.index("apiserver")  # password Secrets first
    assert order.index("mongodb") < order.index("dagster")
    removed = [task["ansible.builtin.include_role"]["name"] for task in teardown[0]["tasks"]]
    assert removed == list(reversed(order))
    for task in teardown[0]["tasks"]:
        include = task["ansible.builtin.include_role"]
        assert include["tasks_from"] == "teardown.yml"
        assert include["apply"]["tags"] == task["tags"] == [include["name"]]


def test_every_molecule_scenario_passes_syntax(ansible: Any) -> None:
    assert {"default", "istio", "mongodb", "monitoring", "apiserver"} <= set(SCENARIOS)
    result = ansible.run("molecule", "syntax", "--all")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for scenario in SCENARIOS:
        recap = rf"^{scenario}\s+: actions=1\s+successful=1 .* failed=0$"
        assert re.search(recap, output, re.MULTILINE), f"{scenario}:\n{output[-3000:]}"


BAD_VARIABLES = {
    # argument_specs: type, choices, nested option choices
    "gateway_apiserver_canary_weight": {"gateway_apiserver_canary_weight": "abc"},
    "istio_gateway_api_channel": {"istio_gateway_api_channel": "beta"},
    "protocol": {"gateway_listeners": [{"name": "web", "protocol": "UDP", "port": 80}]},
    # the roles' own checks (what a spec cannot express)
    "apiserver_hpa_min_replicas": {"apiserver_hpa_min_replicas": -1},
    "mongodb_members": {"mongodb_members": 0},
    "dagster_schedule_cron": {"dagster_schedule_cron": "hourly"},
    # a port UID 10001 without capabilities cannot bind on containerd 1.7 or CRI-O
    "dagster_webserver_port": {"dagster_webserver_port": 80},
    "dagster_chart_ref": {"dagster_chart_ref": "/nonexistent/dagster-1.13.27.tgz"},
    "HTTPRoute 'grafana'": {
        "gateway_listeners": [{"name": "apiserver", "protocol": "HTTP", "port": 8010}],
        "gateway_tcp_routes": [],
    },
}


def test_bad_variables_are_refused_naming_the_variable(ansible: Any) -> None:
    runs = {
        name: ansible.start(
            "ansible-playbook",
            ["-i", "inventories/local", "tests/render/check_vars.yml", "-e", json.dumps(extra)],
        )
        for name, extra in BAD_VARIABLES.items()
    }
    for name, process in runs.items():
        returncode, output = finish(process)
        errors = ERROR.findall(output)
        assert returncode != 0, f"{name}: accepted\n{output[-2000:]}"
        assert any(name in error for error in errors), f"{name} not named in {errors}"
    good = ansible.run("ansible-playbook", "-i", "inventories/local", "tests/render/check_vars.yml")
    assert good.returncode == 0, good.stdout[-3000:]


def with_helm(ansible: Any) -> str:
    """PATH with the set-up step's Helm 3 first: the preflight checks the tools (helm for the
    enabled releases) before the cluster."""
    return os.pathsep.join((str(helm.bin_dir(3)), str(ansible.bin_dir), os.environ["PATH"]))


def test_site_stops_early_naming_a_missing_kubeconfig(ansible: Any, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    result = ansible.run(
        "ansible-playbook", "-i", "inventories/local", "playbooks/site.yml",
        "-e", f"stack_kubeconfig={missing}",
        PATH=with_helm(ansible),
    )  # fmt: skip
    assert result.returncode != 0
    assert f"stack_kubeconfig points to {missing}, which does not exist" in result.stdout


def test_site_stops_early_when_the_api_is_unreachable(ansible: Any, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "unused"}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "nowhere",
            }
        )
    )
    result = ansible.run(
        "ansible-playbook", "-i", "inventories/local", "playbooks/site.yml",
        "-e", f"stack_kubeconfig={kubeconfig}", "-e", "stack_kube_context=nowhere",
        PATH=with_helm(ansible),
    )  # fmt: skip
    assert result.returncode != 0
    assert f"Cannot reach the Kubernetes API with kubeconfig {kubeconfig}" in result.stdout
    assert "and context nowhere" in result.stdout
    assert "changed=0" in result.stdout


def path_without_deploy_tools(folder: Path) -> str:
    """A PATH with every program of this machine except docker, kind, kubectl and helm."""
    folder.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if Path(directory).is_dir():
            for program in Path(directory).iterdir():
                link = folder / program.name
                if program.name not in DEPLOY_TOOLS and not link.exists() and not link.is_symlink():
                    link.symlink_to(program)
    return str(folder)


def test_kind_playbook_names_every_missing_tool(ansible: Any, tmp_path: Path) -> None:
    # docker, kind, kubectl and helm are all missing here, on any machine.
    result = ansible.run(
        "ansible-playbook", "-i", "inventories/local", "playbooks/kind.yml",
        PATH=f"{ansible.bin_dir}:{path_without_deploy_tools(tmp_path / 'bin')}",
    )  # fmt: skip
    assert result.returncode != 0
    (error,) = ERROR.findall(result.stdout)
    assert "Cannot deploy to kind on this machine; missing:" in error
    for tool in ("a running Docker engine", "kind (https://kind.sigs.k8s.io", "kubectl", "helm 3"):
        assert tool in error
    assert "changed=0" in result.stdout


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_teardown_runs_the_teardown_for_the_inventory(ansible: Any, tmp_path: Path) -> None:
    cluster = tmp_path / "no-cluster"
    env = ansible.env(
        INVENTORY="inventories/controlplane",
        STACK_CONTROLPLANE_DIR=str(cluster),
        PATH=f"{helm.binary(3).parent}:{ansible.env()['PATH']}",
    )
    result = make("teardown", env)
    output = " ".join(result.stdout.split())
    assert result.returncode != 0
    assert "ansible-playbook playbooks/teardown.yml -i inventories/controlplane" in output
    assert f"stack_kubeconfig points to {cluster}/kubeconfig, which does not exist" in output
    assert "changed=0" in output


def test_make_destroy_names_every_missing_tool(ansible: Any, tmp_path: Path) -> None:
    # Everything but docker, kind, kubectl and helm (make setup may still want Go).
    go = shutil.which("go")
    extra = f"{Path(go).parent}:" if go else ""
    tools = path_without_deploy_tools(tmp_path / "bin")
    env = ansible.env(PATH=f"{ansible.bin_dir}:{extra}{tools}")
    result = make("destroy", env)
    output = " ".join(result.stdout.split())
    assert result.returncode != 0, result.stderr
    assert "ansible-playbook playbooks/destroy.yml -i inventories/local" in output
    assert "Cannot delete the kind cluster and images on this machine; missing:" in output
    assert "a running Docker engine" in output
    assert "kind (https://kind.sigs.k8s.io" in output
    assert "changed=0" in output


# Two module runs, each reporting the process that ran it (the shell's parent).
INTERPRETER_PROBE = """
- name: Which process runs each module
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: First module run
      ansible.builtin.command: sh -c 'echo $PPID'
      register: probe_first
      changed_when: false
    - name: Second module run
      ansible.builtin.command: sh -c 'echo $PPID'
      register: probe_second
      changed_when: false
    - name: Report
      ansible.builtin.debug:
        msg: "modules ran in {{ probe_first.stdout }} and {{ probe_second.stdout }}"
"""
PROBE_REPORT = re.compile(r"modules ran in (\d+) and (\d+)")


def mitogen_pin() -> str:
    pins = re.findall(r'"mitogen==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert len(pins) == 1, pins
    return pins[0]


def test_plays_run_every_module_in_one_mitogen_interpreter(ansible: Any, tmp_path: Path) -> None:
    """ansible.cfg's strategy (strategy_plugins/mitogen_linear.py): one interpreter for the
    play; ANSIBLE_STRATEGY=linear, Ansible's own, starts one per module run."""
    playbook = tmp_path / "probe.yml"
    playbook.write_text(INTERPRETER_PROBE)
    pids = {}
    for strategy in ("mitogen_linear", "linear"):
        result = ansible.run(
            "ansible-playbook", "-i", "localhost,", str(playbook), ANSIBLE_STRATEGY=strategy
        )
        assert result.returncode == 0, result.stdout + result.stderr
        found = PROBE_REPORT.search(result.stdout)
        assert found, result.stdout
        pids[strategy] = found.groups()
    config = ansible.run("ansible-config", "dump", "--only-changed").stdout
    assert re.search(r"^DEFAULT_STRATEGY\(.*ansible\.cfg\) = mitogen_linear$", config, re.M), config
    first, second = pids["mitogen_linear"]
    assert first == second
    first, second = pids["linear"]
    assert first != second


def test_without_mitogen_plays_stop_saying_how_to_run_without_it(
    ansible: Any, tmp_path: Path
) -> None:
    # A package of the same name, found first, that cannot be imported.
    shadow = tmp_path / "shadow" / "ansible_mitogen"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    playbook = tmp_path / "probe.yml"
    playbook.write_text(INTERPRETER_PROBE)
    hidden = str(shadow.parent)
    result = ansible.run("ansible-playbook", "-i", "localhost,", str(playbook), PYTHONPATH=hidden)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert "cannot import it (hidden by the test)" in output
    assert f"pip install mitogen=={mitogen_pin()}" in output
    assert "ANSIBLE_STRATEGY=linear ansible-playbook" in output
    assert "Traceback" not in output
    linear = ansible.run(
        "ansible-playbook",
        "-i",
        "localhost,",
        str(playbook),
        PYTHONPATH=hidden,
        ANSIBLE_STRATEGY="linear",
    )
    assert linear.returncode == 0, linear.stdout + linear.stderr
