"""A minimal progress bar on stderr, redrawn at most ten times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        # A terminal gets one redrawn line; a log file gets a line every 10 %.
        self._tty = self.stream.isatty()
        self._next_percent = 10

    def advance(self, done: int, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        now = time.monotonic()
        if self._tty:
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
        elif self.done * 100 >= self._next_percent * self.total:
            while self.done * 100 >= self._next_percent * self.total:
                self._next_percent += 10
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"[{bar}] {self.done}/{self.total} {fraction:4.0%} "
            f"{self.done / elapsed:8.0f} rec/s failed={self.failed}"
        )

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
