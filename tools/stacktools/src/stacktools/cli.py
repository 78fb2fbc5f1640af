"""The command-line plumbing the server modules share: ``start|stop|status|build`` with
``--dir``, one handler per command, and errors printed as one line instead of a trace."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Handler = Callable[[argparse.Namespace], int]


class Attached(Protocol):
    """A server found again from its ``--dir`` (its state file)."""

    def stop(self, timeout: float = ...) -> None: ...

    def status(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Commands:
    """The four sub-commands' parsers, for a module to add its own options to."""

    parser: argparse.ArgumentParser
    start: argparse.ArgumentParser
    stop: argparse.ArgumentParser
    status: argparse.ArgumentParser
    build: argparse.ArgumentParser


def lifecycle_parser(
    prog: str, description: str, *, what: str, start_timeout: float, dir_help: str
) -> Commands:
    """A parser with ``start``, ``stop``, ``status`` (each with ``--dir``) and ``build``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help=f"start (or find running) {what}; wait until ready")
    start.add_argument(
        "--timeout", type=float, default=start_timeout, help="seconds to become ready"
    )
    stop = commands.add_parser("stop", help=f"stop {what} (SIGTERM, then SIGKILL)")
    stop.add_argument("--timeout", type=float, default=15.0, help="seconds before SIGKILL")
    status = commands.add_parser("status", help="print JSON status; exit 0 only when ready")
    for sub in (start, stop, status):
        sub.add_argument("--dir", type=Path, required=True, help=dir_help)
    build = commands.add_parser("build", help="build (or reuse) the binaries; print where")
    return Commands(parser, start, stop, status, build)


def state_handlers(
    attach: Callable[[Path], Attached], build: Callable[[], Path]
) -> dict[str, Handler]:
    """The ``stop``, ``status`` and ``build`` handlers of a server found by ``attach(--dir)``."""

    def stop(args: argparse.Namespace) -> int:
        attach(args.dir).stop(timeout=args.timeout)
        return 0

    def status(args: argparse.Namespace) -> int:
        return print_status(attach(args.dir).status())

    def build_(_: argparse.Namespace) -> int:
        print(build())
        return 0

    return {"stop": stop, "status": status, "build": build_}


def print_status(status: dict[str, Any]) -> int:
    """Print ``status`` as JSON; the exit code says whether it is ready."""
    print(json.dumps(status, indent=2))
    return 0 if status["ready"] else 1


def run(
    commands: Commands,
    handlers: dict[str, Handler],
    errors: tuple[type[Exception], ...],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, run the command's handler, and turn ``errors`` into ``error: ...``."""
    args = commands.parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
