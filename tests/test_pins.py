"""Versions that must move together stay together."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]


def locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == package}
    assert len(versions) == 1, f"uv.lock holds {package} at {sorted(versions)}"
    return versions.pop()


def role_default(role: str, variable: str) -> str:
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    return str(defaults[variable])


def test_dagster_chart_matches_the_pipeline_image() -> None:
    # The chart's webserver and daemon load the same instance and gRPC API as the user code
    # (and the run workers started from the pipeline image): one Dagster version for both.
    assert role_default("dagster", "dagster_chart_version") == locked_version("dagster")


def test_dagster_extensions_match_dagster() -> None:
    # dagster-k8s / dagster-postgres 0.X.Y are released with dagster 1.(X-16).Y.
    major, minor, patch = locked_version("dagster").split(".")
    expected = f"0.{int(minor) + 16}.{patch}"
    assert major == "1"
    assert locked_version("dagster-k8s") == expected
    assert locked_version("dagster-postgres") == expected
