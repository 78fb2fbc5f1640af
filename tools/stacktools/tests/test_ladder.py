"""The ladder plugin: every test sits on exactly one level, and each run ends with a table of
the time spent per level; the set-up step's command line names its steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.lint


def test_a_test_on_no_level_fails_the_collection_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unlevelled="def test_orphan():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*exactly one level*", "*test_unlevelled.py::test_orphan: on none*"]
    )


def test_a_test_on_two_levels_fails_the_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_twice=(
            "import pytest\n"
            "@pytest.mark.lint\n@pytest.mark.node\n"
            "def test_both():\n    assert True is not False\n"
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_both: on lint, node*"])


def test_the_run_ends_with_the_time_per_level(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_levels=(
            "import time, pytest\n"
            "@pytest.mark.schemas\ndef test_a():\n    time.sleep(0.2)\n"
            "@pytest.mark.schemas\ndef test_b():\n    pass\n"
            "@pytest.mark.lint\ndef test_c():\n    pass\n"
        )
    )
    timings = tmp_path / "timings.tsv"
    monkeypatch.setenv("STACK_TIMINGS", str(timings))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*time per level of the ladder*", "L0 *lint*1 tests*", "L2 *schemas*2 tests*"]
    )
    rows = [line.split("\t") for line in timings.read_text().splitlines()]
    assert [row[0] for row in rows] == ["L0 lint", "L2 schemas"]
    assert float(rows[1][1]) >= 0.2  # the sleep is counted on its level


def test_prepare_lists_its_steps_and_refuses_unknown_ones() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "stacktools", "prepare", "--list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert {"ferretdb", "controlplane", "istiod"} <= {
        line.split()[0] for line in listed.stdout.splitlines()
    }
    unknown = subprocess.run(
        [sys.executable, "-m", "stacktools", "prepare", "no-such-step"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert unknown.returncode == 1
    assert "unknown step(s) ['no-such-step']" in unknown.stderr
