"""L3 + L4 of the proof ladder: `molecule test -s controlplane` on the local Kubernetes v1.36.3
control plane with istiod (see molecule/controlplane/molecule.yml for the sequence).

One Molecule run, one control plane for all steps. The test asserts on Molecule's own verdict
(every step of the sequence executed and successful, none missing), the step order, and that no
server of the scenario outlives it; the steps assert on the PLAY RECAPs themselves. It prints
how long each step took (the binaries come from the set-up step).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stacktools.builds import charts, controlplane, helm, istiod

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "controlplane"
# molecule/controlplane/molecule.yml's test_sequence, side effects named by their playbook.
SEQUENCE = [
    "destroy",
    "syntax",
    "create",
    "side_effect check_empty.yml",
    "prepare",
    "converge",
    "idempotence",
    "verify",
    "side_effect check_converged.yml",
    "side_effect invalid_route.yml",
    "side_effect teardown.yml",
    "destroy",
]
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\")
# Molecule's step lines: "INFO     controlplane ➜ converge: Executing" (colour) or
# "INFO     [controlplane > converge] Executing" (NO_COLOR).
STEP = re.compile(
    rf"^\w+\s+(?:{SCENARIO} ➜ (\w+):|\[{SCENARIO} > (\w+)\]) (Executing|Executed: .+)$"
)
MATRIX = re.compile(
    rf"(?:{SCENARIO} ➜ discovery:|\[{SCENARIO} > discovery\]) scenario test matrix: (.+)$",
    re.MULTILINE,
)
RECAP = re.compile(
    rf"^{SCENARIO}\s+: actions=(\d+)\s+successful=(\d+)\s+disabled=(\d+)\s+skipped=(\d+)"
    r"\s+missing=(\d+)\s+failed=(\d+)",
    re.MULTILINE,
)
# What the side-effect playbooks print about each playbook they run (steps/run_playbook.yml).
NESTED = re.compile(r"msg: '(.+?): rc=(\d+)\s+in\s+(\d+):(\d\d):(\d\d\.\d+)")


@dataclass
class Step:
    action: str
    started: float
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdict: str = ""

    def nested(self) -> list[tuple[str, float]]:
        """(title, seconds) of each playbook a side-effect step ran."""
        return [
            (title, int(hours) * 3600 + int(minutes) * 60 + float(seconds))
            for title, _, hours, minutes, seconds in NESTED.findall("\n".join(self.lines))
        ]


def run_molecule(command: list[str], env: dict[str, str], log: Path) -> tuple[int, list[Step]]:
    """Run Molecule, timing each step from its "Executing" to its "Executed" line."""
    steps: list[Step] = []
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its whole process group is killed if this test is stopped
        )
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                out.write(raw)
                line = ANSI.sub("", raw).rstrip()
                now = time.monotonic()
                step = STEP.match(line)
                if step and step.group(3) == "Executing":
                    steps.append(Step(step.group(1) or step.group(2), now))
                elif step and steps and steps[-1].action == (step.group(1) or step.group(2)):
                    steps[-1].seconds = now - steps[-1].started
                    steps[-1].verdict = step.group(3).removeprefix("Executed: ")
                elif steps:
                    steps[-1].lines.append(line)
            process.wait()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return process.returncode, steps


def leftover_processes(marker: str) -> list[str]:
    """Command lines of the processes that still mention ``marker`` (the scenario's folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def stop_servers(cluster: Path) -> None:
    """What the scenario's destroy does, for a run that never got there (idempotent)."""
    for module, args in (
        ("stacktools.servers.istiod", ["stop", "--dir", str(cluster / "istiod")]),
        ("stacktools.servers.controlplane", ["stop", "--dir", str(cluster), "--wipe"]),
    ):
        subprocess.run([sys.executable, "-m", module, *args], check=False, timeout=120)


@dataclass
class Run:
    returncode: int
    steps: list[Step]
    output: str
    log: Path
    seconds: float
    leftovers: list[str]  # processes of the scenario still running when Molecule returned

    @property
    def tail(self) -> str:
        return f"(full log: {self.log})\n" + "\n".join(self.output.splitlines()[-80:])

    def names(self) -> list[str]:
        """The steps as the scenario's test matrix names them (side effects with playbook)."""
        matrix = MATRIX.search(self.output)
        return matrix.group(1).split(", ") if matrix else [step.action for step in self.steps]


def molecule_test(ansible: Any, tmp_path: Path, *ansible_args: str) -> Run:
    """``molecule test -s controlplane`` with its state under ``tmp_path``; stops whatever it
    left running afterwards (after recording it)."""
    ephemeral = tmp_path / "molecule"
    log = tmp_path / "molecule.log"
    env = ansible.env(
        MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral),
        NO_COLOR="1",
        PY_COLORS="0",
        ANSIBLE_FORCE_COLOR="0",
        # The Helm 3 of the set-up step, for kubernetes.core's helm modules.
        PATH=f"{helm.bin_dir(3)}{os.pathsep}{ansible.bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    command = ansible.command("molecule", "test", "--scenario-name", SCENARIO)
    if ansible_args:
        command += ["--", *ansible_args]  # passed to every ansible-playbook run
    began = time.monotonic()
    leftovers = [f"molecule did not finish: {command}"]
    try:
        returncode, steps = run_molecule(command, env, log)
        leftovers = leftover_processes(str(ephemeral))
    finally:
        stop_servers(ephemeral / "cluster")
    output = ANSI.sub("", log.read_text())
    return Run(returncode, steps, output, log, time.monotonic() - began, leftovers)


@pytest.mark.slow
# Five Helm releases installed, checked and uninstalled on top of the roles' own objects: 1,078 s at
# load average 3 to 5; the limit leaves room for a machine four times as busy.
@pytest.mark.timeout(4500)
def test_controlplane_scenario(
    ansible: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controlplane.binaries()  # built by the set-up step; fails naming `make prepare` if not
    istiod.binary()
    helm.binary(3)
    found = charts.charts()
    run = molecule_test(ansible, tmp_path)
    with capsys.disabled():
        print(f"\nmolecule test -s {SCENARIO}: {run.seconds:.0f}s")
        for release, chart in found.items():
            print(f"  Helm release {release}: {chart.describe()}")
        if any(chart.stand_in for chart in found.values()):
            print(f"  NOTE: {charts.STAND_IN_NOTE}")
        for name, step in zip(run.names(), run.steps, strict=False):
            print(f"  {name:<34} {step.seconds:6.1f}s  {step.verdict}")
            for title, seconds in step.nested():
                print(f"      {title:<66} {seconds:6.1f}s")
    assert run.returncode == 0, run.tail
    assert run.names() == SEQUENCE, run.tail
    assert [step.action for step in run.steps] == [name.split()[0] for name in SEQUENCE], run.tail
    assert [step.verdict for step in run.steps] == ["Successful"] * len(SEQUENCE), run.tail
    recap = RECAP.search(run.output)
    assert recap, run.tail
    assert recap.groups() == (str(len(SEQUENCE)), str(len(SEQUENCE)), "0", "0", "0", "0")
    # Molecule fails the step on any changed=N>0; read the second converge's recap here too.
    idempotence = next(step for step in run.steps if step.action == "idempotence")
    changed = re.findall(r"localhost\s+: ok=\d+\s+changed=(\d+)", "\n".join(idempotence.lines))
    assert changed == ["0"], "\n".join(idempotence.lines[-40:])
    # prepare ran the istio role; each side effect ran its playbooks (check mode twice, the
    # invalid route, teardown twice).
    nested = [title for step in run.steps for title, _ in step.nested()]
    assert len(nested) == 6, nested
    # The negative case's evidence as the converge printed it: the API server's CEL message
    # (YAML output wraps lines and doubles single quotes).
    printed = re.sub(r"\s+", " ", run.output).replace("''", "'")
    assert "must not contain '//' when type one of ['Exact', 'PathPrefix']" in printed
    assert run.leftovers == []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_failed_step_still_destroys_the_cluster(ansible: Any, tmp_path: Path) -> None:
    # create starts the servers, then fails: the kubeconfig it printed is not the inventory's.
    wrong = "/nonexistent/kubeconfig"
    run = molecule_test(ansible, tmp_path, "--extra-vars", f"stack_kubeconfig={wrong}")
    assert run.returncode != 0, run.tail
    actions = [step.action for step in run.steps]
    assert actions[:3] == ["destroy", "syntax", "create"], run.tail
    assert run.steps[2].verdict != "Successful", run.tail
    assert f"but inventories/controlplane reads {wrong}" in re.sub(r"\s+", " ", run.output)
    assert (tmp_path / "molecule" / "cluster" / "logs" / "kube-apiserver.log").is_file()
    # Molecule's handling of the failure ran destroy, which stopped every server.
    assert actions[-1] == "destroy", run.tail
    assert run.steps[-1].verdict == "Successful", run.tail
    assert run.leftovers == [], run.tail
