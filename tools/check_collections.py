"""Fail unless every collection in a requirements file is installed in an accepted version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements


def installed_versions() -> dict[str, str]:
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
    found: dict[str, str] = {}
    for collections in json.loads(out.stdout).values():
        for name, info in collections.items():
            found.setdefault(name, info["version"])  # first path wins, as in Ansible
    return found


def main(requirements: str) -> int:
    wanted = yaml.safe_load(Path(requirements).read_text())["collections"]
    found = installed_versions()
    errors = []
    for item in wanted:
        name, spec = item["name"], item.get("version", "*")
        version = found.get(name)
        if version is None:
            errors.append(f"{name} ({spec}) is not installed")
        elif not meets_requirements(version, spec):
            errors.append(f"{name} {version} is installed but {requirements} asks for {spec}")
        else:
            print(f"setup: collection {name} {version} satisfies {spec}")
    for error in errors:
        print(f"setup: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
