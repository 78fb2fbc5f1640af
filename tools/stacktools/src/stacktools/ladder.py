"""The proof ladder in pytest: one marker per level, every test on exactly one level, and a
per-level timing table at the end of every run.

A test module declares its level with ``pytestmark = pytest.mark.<level>``; the service suites
(``services/*/tests``) are L1 unless they say otherwise. A test on no level, or on two, fails
the collection with a message naming it, so the table accounts for every test.

With ``STACK_TIMINGS`` set to a file, the per-level seconds are appended to it as
``<level>\\t<seconds>\\t<tests>`` lines (``make test`` prints them with the set-up and lint
times: tools/ladder.sh).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Level:
    marker: str
    rung: str
    proves: str


LEVELS: tuple[Level, ...] = (
    Level("lint", "L0", "playbook syntax, molecule syntax, pins, READMEs, role variables"),
    Level("services", "L1", "apiserver and pipeline against FerretDB"),
    Level("schemas", "L2", "rendered manifests against the Kubernetes and CRD schemas"),
    Level("controlplane", "L3", "site.yml and the harness on the local control plane"),
    Level("istiod", "L4", "istiod's verdicts on the Gateway API objects"),
    Level("images", "L4.5", "both images built and run with the Deployments' settings"),
    Level("charts", "L4.5", "every Helm release rendered, validated and installed"),
    Level("dataplane", "L4.5", "requests carried through a Gateway data plane"),
    Level("node", "L4.5", "pods on a real kubelet"),
)
MARKERS = {level.marker: level for level in LEVELS}
# Folders whose tests default to a level (a module's own pytestmark wins).
DEFAULTS = {"services": "services"}


def pytest_configure(config: pytest.Config) -> None:
    for level in LEVELS:
        config.addinivalue_line("markers", f"{level.marker}: {level.rung} {level.proves}")
    config.pluginmanager.register(Ladder(config), "stacktools-ladder-state")


def _default_level(path: Path, root: Path) -> str | None:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    return DEFAULTS.get(parts[0]) if parts else None


def _format(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:2d} s" if minutes else f"{seconds:5.1f} s"


class Ladder:
    """Assigns each collected test its level and sums the time spent per level."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.level_of: dict[str, str] = {}
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.tests: defaultdict[str, int] = defaultdict(int)
        self.started = time.monotonic()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        problems: list[str] = []
        for item in items:
            levels = sorted({mark.name for mark in item.iter_markers() if mark.name in MARKERS})
            if not levels:
                default = _default_level(item.path, self.config.rootpath)
                if default is not None:
                    item.add_marker(default)
                    levels = [default]
            if len(levels) != 1:
                problems.append(f"{item.nodeid}: on {', '.join(levels) or 'none'}")
                continue
            self.level_of[item.nodeid] = levels[0]
        if problems:
            listed = "\n  ".join(problems)
            msg = (
                "every test must be on exactly one level of the ladder "
                f"(pytestmark = pytest.mark.<level>, one of {', '.join(MARKERS)}):\n  {listed}"
            )
            raise pytest.UsageError(msg)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        level = self.level_of.get(report.nodeid)
        if level is None:
            return
        self.seconds[level] += report.duration  # setup + call + teardown, fixtures included
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.tests[level] += 1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tests:
            return
        wall = time.monotonic() - self.started
        rows = [level for level in LEVELS if self.tests.get(level.marker)]
        terminalreporter.section("time per level of the ladder")
        for level in rows:
            terminalreporter.write_line(
                f"{level.rung:5} {level.marker:13} {self.tests[level.marker]:4d} tests "
                f"{_format(self.seconds[level.marker]):>12}   {level.proves}"
            )
        terminalreporter.write_line(f"{'':5} {'pytest wall':13} {'':10} {_format(wall):>12}")
        out = os.environ.get("STACK_TIMINGS")
        if out:
            with Path(out).open("a") as handle:
                for level in rows:
                    name = f"{level.rung} {level.marker}"
                    seconds, tests = self.seconds[level.marker], self.tests[level.marker]
                    handle.write(f"{name}\t{seconds:.1f}\t{tests} tests\n")
