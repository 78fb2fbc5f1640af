"""Build Go programs from the Go module proxy into the cache, once per version; the one
cache and key scheme every build of the set-up step uses."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from stacktools.paths import cache_dir


class BuildError(RuntimeError):
    """A required tool is missing or a build failed; the message says which."""


class BuildMissingError(BuildError):
    """A test or server needs something the set-up step builds, and it is not built."""


PREPARE_HINT = "run `make prepare` (python -m stacktools prepare) first"


def require_built(paths: Sequence[Path], what: str) -> None:
    """Raise :class:`BuildMissingError` naming ``what`` unless every one of ``paths`` exists.

    Servers and fixtures call this instead of building: builds belong to the set-up step
    (``make prepare``), never to a test's timeout."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        msg = f"{what} is not built ({', '.join(missing)} missing): {PREPARE_HINT}"
        raise BuildMissingError(msg)


def require_go() -> str:
    go = shutil.which("go")
    if go is None:
        msg = (
            "Go is required to build the test servers (FerretDB, the Kubernetes control plane) "
            "but `go` is not on PATH. Install Go >= 1.26 (https://go.dev/doc/install), "
            "or point the tests at your own MongoDB with MONGODB_URI."
        )
        raise BuildError(msg)
    return go


def go_version(go: str) -> tuple[int, int]:
    """(major, minor) of the Go toolchain, e.g. (1, 26) for go1.26.8."""
    out = subprocess.run(
        [go, "env", "GOVERSION"], check=False, capture_output=True, text=True
    ).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    if match is None:
        msg = f"cannot tell the version of {go} (`go env GOVERSION` printed {out!r})"
        raise BuildError(msg)
    return int(match.group(1)), int(match.group(2))


def require_go_version(minimum: tuple[int, int], what: str) -> str:
    """``go`` on PATH, or a BuildError naming the version ``what`` needs and the one found."""
    go = require_go()
    found = go_version(go)
    if found < minimum:
        wanted = ".".join(map(str, minimum))
        msg = (
            f"Go >= {wanted} is required to build {what}, but `{go}` is go"
            f"{found[0]}.{found[1]}. Install a newer Go (https://go.dev/doc/install)."
        )
        raise BuildError(msg)
    return go


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so parallel test runs build a binary only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def module_source(module: str, version: str) -> Path:
    """Download ``module@version`` through the Go module proxy; return its read-only dir."""
    go = require_go()
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        msg = f"`go mod download {module}@{version}` failed:\n{out.stdout}{out.stderr}"
        raise BuildError(msg)
    return Path(json.loads(out.stdout)["Dir"])


def go_build(
    workdir: Path,
    package: str,
    output: Path,
    env: dict[str, str] | None = None,
    flags: Sequence[str] = (),
) -> None:
    """``go build [flags] -o output package`` inside workdir; output appears atomically."""
    go = require_go()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    print(f"building {package} -> {output} (cached for later runs)", file=sys.stderr, flush=True)
    result = subprocess.run(
        [go, "build", "-trimpath", *flags, "-o", str(partial), package],
        cwd=workdir,
        check=False,
        env={**os.environ, "CGO_ENABLED": "0", **(env or {})},
    )
    if result.returncode != 0:
        msg = f"`go build {package}` in {workdir} failed with exit code {result.returncode}"
        raise BuildError(msg)
    partial.replace(output)


def go_install(package: str, version: str, output: Path, env: dict[str, str] | None = None) -> None:
    """``go install package@version`` (a module without replace lines, its version recorded in
    the binary's build info); the binary appears at ``output`` atomically."""
    go = require_go()
    output.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {package}@{version} -> {output} (cached)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="stack-install-", dir=output.parent) as gobin:
        result = subprocess.run(
            [go, "install", "-trimpath", f"{package}@{version}"],
            check=False,
            env={**os.environ, "CGO_ENABLED": "0", **(env or {}), "GOBIN": gobin},
        )
        if result.returncode != 0:
            msg = f"`go install {package}@{version}` failed with exit code {result.returncode}"
            raise BuildError(msg)
        (Path(gobin) / package.rsplit("/", 1)[-1]).replace(output)


def writable_copy(source: Path) -> tempfile.TemporaryDirectory[str]:
    """A writable temporary copy of a module directory from the read-only module cache."""
    tmp = tempfile.TemporaryDirectory(prefix="stack-build-")
    shutil.copytree(source, tmp.name, dirs_exist_ok=True)
    for root, dirs, files in os.walk(tmp.name):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
    return tmp


def repo_go_module(name: str) -> Path:
    """``tools/<name>`` (a Go module) of this checkout, found from this file, else the cwd."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            module = candidate / "tools" / name
            if (module / "go.mod").is_file():
                return module
    msg = f"cannot find tools/{name}/go.mod; run from a checkout of the repository"
    raise BuildError(msg)


def source_hash(module: Path, extra: object = None) -> str:
    """Hash of what decides a module's binaries: go.mod, go.sum, its Go files, ``extra``."""
    digest = hashlib.sha256()
    files = [module / "go.mod", module / "go.sum", *sorted(module.rglob("*.go"))]
    for path in files:
        digest.update(path.relative_to(module).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ModuleBuild:
    """Binaries built from one Go module at one pinned version, straight from the module proxy.

    They go to ``cache_dir()/bin/<name>-<version>-<hash>/``; the hash covers the packages,
    flags and environment, so a change to how they are built builds afresh.
    """

    name: str
    module: str
    version: str
    # binary name -> package inside the module ("./cmd/containerd")
    packages: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    def directory(self) -> Path:
        key = hashlib.sha256(
            repr(
                (self.module, sorted(self.packages.items()), self.flags, sorted(self.env.items()))
            ).encode()
        ).hexdigest()[:16]
        return cache_dir() / "bin" / f"{self.name}-{self.version}-{key}"

    def paths(self) -> dict[str, Path]:
        directory = self.directory()
        return {name: directory / name for name in self.packages}

    def built(self) -> dict[str, Path]:
        """The cached binaries; :class:`BuildMissingError` when they are not built."""
        paths = self.paths()
        require_built(list(paths.values()), f"{self.module} {self.version}")
        return paths

    def ensure(self, go_minimum: tuple[int, int] = (1, 26)) -> dict[str, Path]:
        """The cached binaries, building the missing ones first (set-up step only)."""
        paths = self.paths()
        if all(path.is_file() for path in paths.values()):
            return paths
        with file_lock(cache_dir() / "locks" / f"{self.name}.lock"):
            missing = {name: path for name, path in paths.items() if not path.is_file()}
            if missing:
                require_go_version(go_minimum, f"{self.module} {self.version}")
                source = module_source(self.module, self.version)
                env = {"GOWORK": "off", "GOFLAGS": "-buildvcs=false", **self.env}
                for name, path in missing.items():
                    go_build(source, self.packages[name], path, env=env, flags=self.flags)
        return paths
