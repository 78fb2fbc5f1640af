"""Fail unless every collection in a requirements file is installed in an accepted version.

A collection installed from Galaxy must meet the requirements file. When Galaxy could not be
reached, set-up falls back to the copy bundled in the pinned ``ansible`` package; that copy must
meet ``BUNDLED_MINIMUM`` instead (what the playbooks cannot do without), and what it cannot do
is said (the playbooks' preflight fails naming the versions when it matters).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

# The oldest bundled copy the playbooks work with, and what only the requirement's version adds.
# playbooks/tasks/preflight.yml states the same minimums (tests/test_pins.py checks they agree).
BUNDLED_MINIMUM = {"kubernetes.core": "6.2.0"}
BUNDLED_LIMITS = {
    "kubernetes.core": (
        "works with Helm 3 (>= 3.16) only; Helm 4 needs kubernetes.core >= 6.4.0 from Galaxy"
    ),
}


def installed_versions() -> dict[str, tuple[str, str]]:
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-galaxy")),
            "collection",
            "list",
            "--format=json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found: dict[str, tuple[str, str]] = {}
    for path, collections in json.loads(out.stdout).items():
        for name, info in collections.items():
            found.setdefault(name, (info["version"], path))  # first path wins, as in Ansible
    return found


def bundled(path: str) -> bool:
    """Whether a collections path is the one inside the installed ``ansible`` package."""
    return "site-packages" in Path(path).parts


def main(requirements: str) -> int:
    wanted = yaml.safe_load(Path(requirements).read_text())["collections"]
    found = installed_versions()
    errors = []
    for item in wanted:
        name, spec = item["name"], item.get("version", "*")
        version, path = found.get(name, (None, ""))
        if version is None:
            errors.append(f"{name} ({spec}) is not installed")
        elif meets_requirements(version, spec):
            print(f"setup: collection {name} {version} satisfies {spec}")
        elif bundled(path) and name in BUNDLED_MINIMUM:
            minimum = f">={BUNDLED_MINIMUM[name]}"
            if not meets_requirements(version, minimum):
                errors.append(f"{name} {version} (bundled with ansible) is older than {minimum}")
                continue
            print(
                f"setup: collection {name} {version} (bundled with ansible, Galaxy unreachable) "
                f"satisfies {minimum} but not {spec}: it {BUNDLED_LIMITS[name]}"
            )
        else:
            errors.append(f"{name} {version} is installed but {requirements} asks for {spec}")
    for error in errors:
        print(f"setup: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
