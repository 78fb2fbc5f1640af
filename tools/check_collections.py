"""Make the Ansible collections of a requirements file available, and fail unless every one is
installed in an accepted version.

    python tools/check_collections.py [--install] collections/requirements.yml

``--install`` (tools/setup.sh) first tries Galaxy, with a time limit; when that fails it says why
and the collections bundled in the pinned ``ansible`` package are checked instead. Once that
passed, a stamp in .venv (named by the hash of the requirements file) skips both next time.
Plain Python, so the set-up needs neither ``sha256sum`` nor ``timeout`` (stock macOS has
neither).

A collection installed from Galaxy must meet the requirements file. The copy bundled in the
``ansible`` package (Galaxy unreachable) must meet ``BUNDLED_MINIMUM`` instead, what the
playbooks cannot do without, and what it cannot do is said (the playbooks' preflight fails
naming both versions when it matters).
"""

from __future__ import annotations

import argparse
import hashlib
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
GALAXY_TIMEOUT_SECONDS = 60
INSTALL_DIR = Path("collections/installed")  # ansible.cfg: collections_path


def galaxy() -> str:
    return str(Path(sys.executable).with_name("ansible-galaxy"))


def configured_paths(ansible_config: str) -> list[Path]:
    """The collections paths Ansible searches, in its order (``ansible-config dump``)."""
    out = subprocess.run(
        [ansible_config, "dump", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    )
    for setting in json.loads(out.stdout):
        if isinstance(setting, dict) and setting.get("name") == "COLLECTIONS_PATHS":
            return [Path(path) for path in setting["value"]]
    return []


def loaded_versions(listing: str, configured: list[Path]) -> dict[str, tuple[str, str]]:
    """name -> (version, collections path) of the copy Ansible loads, from the JSON of
    ``ansible-galaxy collection list``. That JSON's paths come in no fixed order (ansible-galaxy
    keeps them in a set), so they are ranked here as Ansible searches them: the configured paths
    in their order, then the Python path (where the ``ansible`` package's copies are)."""

    def rank(path: str) -> int:
        root = Path(path).parent if Path(path).name == "ansible_collections" else Path(path)
        return configured.index(root) if root in configured else len(configured)

    found: dict[str, tuple[str, str]] = {}
    for path, collections in sorted(json.loads(listing).items(), key=lambda item: rank(item[0])):
        for name, info in collections.items():
            found.setdefault(name, (info["version"], path))
    return found


def installed_versions() -> dict[str, tuple[str, str]]:
    """name -> (version, collections path) of the copy Ansible loads."""
    out = subprocess.run(
        [galaxy(), "collection", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    )
    ansible_config = str(Path(sys.executable).with_name("ansible-config"))
    return loaded_versions(out.stdout, configured_paths(ansible_config))


def bundled(path: str) -> bool:
    """Whether a collections path is the one inside the installed ``ansible`` package."""
    return "site-packages" in Path(path).parts


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def stamp_path(requirements: Path) -> Path:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    return Path(".venv") / f".collections-{digest}"


def install_from_galaxy(requirements: Path) -> None:
    """Try Galaxy; say what happened either way."""
    command = [galaxy(), "collection", "install", "--force", "-r", str(requirements)]
    try:
        result = subprocess.run(
            [*command, "-p", str(INSTALL_DIR)],
            capture_output=True,
            text=True,
            timeout=GALAXY_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        reason = f"no answer within {GALAXY_TIMEOUT_SECONDS} s"
    else:
        reason = "" if result.returncode == 0 else last_line(result.stdout + result.stderr)
    if reason:
        print(
            f"setup: Galaxy cannot be used ({reason}); "
            "using the collections bundled in the pinned ansible package"
        )
    else:
        print(f"setup: collections installed from Galaxy into {INSTALL_DIR}")


def check(requirements: Path) -> int:
    wanted = yaml.safe_load(requirements.read_text())["collections"]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", type=Path)
    parser.add_argument("--install", action="store_true", help="try Galaxy first (once)")
    args = parser.parse_args()
    if not args.install:
        return check(args.requirements)
    stamp = stamp_path(args.requirements)
    if stamp.exists():
        return 0
    install_from_galaxy(args.requirements)
    status = check(args.requirements)
    if status == 0:
        stamp.touch()
    return status


if __name__ == "__main__":
    sys.exit(main())
