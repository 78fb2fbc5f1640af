"""The apiserver's access log, read where the backend writes it: a local process's log file,
or the logs of a Deployment's pods (kind). Both hold the same JSON lines
(``{"logger": "apiserver.access", "method": ..., "path": ..., "status": ...}``), one per
request the backend received, with the path as it arrived (after the Gateway's rewrite).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stacktools.cluster.kubeapi import KubeApi

ACCESS_LOGGER = "apiserver.access"


def access_entries(text: str) -> list[dict[str, Any]]:
    """The access-log entries among ``text``'s lines (other lines and partial lines skipped)."""
    entries = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("logger") == ACCESS_LOGGER:
            entries.append(entry)
    return entries


class AccessLog(Protocol):
    """Where one backend (all replicas of one track) logs the requests it received."""

    name: str

    def mark(self) -> Any:
        """A position; :meth:`since` returns what was logged after it."""

    def since(self, mark: Any) -> list[dict[str, Any]]:
        """Access entries logged after ``mark``."""


@dataclass
class FileAccessLog:
    """A local process's log file."""

    name: str
    path: Path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, mark: Any) -> list[dict[str, Any]]:
        with self.path.open("rb") as handle:
            handle.seek(int(mark))
            text = handle.read().decode(errors="replace")
        # A line still being written has no newline yet: leave it for the next read.
        complete = text[: text.rfind("\n") + 1]
        return access_entries(complete)


@dataclass
class PodAccessLog:
    """The logs of every pod matching ``selector`` in ``namespace`` (one Deployment)."""

    name: str
    kube: KubeApi
    namespace: str
    selector: str

    def _logs(self) -> dict[str, list[dict[str, Any]]]:
        pods = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/pods", labelSelector=self.selector
        )
        found = {}
        for pod in pods["items"]:
            name = pod["metadata"]["name"]
            text = self.kube.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/pods/{name}/log", raw=True
            )
            found[name] = access_entries(str(text))
        return found

    def mark(self) -> dict[str, int]:
        return {pod: len(entries) for pod, entries in self._logs().items()}

    def since(self, mark: Any) -> list[dict[str, Any]]:
        counts: dict[str, int] = dict(mark)
        return [
            entry
            for pod, entries in self._logs().items()
            for entry in entries[counts.get(pod, 0) :]
        ]
