"""The window of one run: which documents it reads, decided by clocks, never by the data.

A run starts at ``exported_at`` (the stamp its rows get). It exports the documents with
``updated_at`` before ``due`` = ``exported_at`` + ``records.MAX_CLOCK_SKEW``; later ones are
from the future (reported, never exported before their time). An incremental run reads from the
table's mark, the ``exported_at`` of the last run that wrote rows, minus the overlap (which
covers writers whose clocks run behind and writes still in flight when that run read).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from deltalake import DeltaTable

from pipeline import delta, records

Mode = Literal["created", "full_refresh", "incremental", "unchanged"]


@dataclass(frozen=True)
class Window:
    mode: Mode
    exported_at: dt.datetime  # UTC, aware: the run's start and its rows' exported_at
    since: dt.datetime | None  # naive UTC like pymongo's dates; None: every document

    @property
    def due(self) -> dt.datetime:
        """Naive UTC: documents dated at or after this are from the future."""
        return self.exported_at.replace(tzinfo=None) + records.MAX_CLOCK_SKEW

    @property
    def reads_everything(self) -> bool:
        return self.since is None


def plan(
    table: DeltaTable | None,
    full_refresh: bool,
    overlap: dt.timedelta,
    exported_at: dt.datetime,
    log: Callable[[str], None],
) -> Window:
    """The kind of run and where its read starts."""
    if table is None:
        return Window("created", exported_at, None)
    if full_refresh:
        return Window("full_refresh", exported_at, None)
    mark = delta.export_mark(table)
    if mark is None:  # an empty table: read everything, write only when there is something
        return Window("incremental", exported_at, None)
    if mark > exported_at:
        log(
            f"the table's newest exported_at ({mark.isoformat()}) is after this run's start "
            f"({exported_at.isoformat()}): the clock went back; rebuilding the table from "
            "every document"
        )
        return Window("full_refresh", exported_at, None)
    return Window("incremental", exported_at, mark.replace(tzinfo=None) - overlap)
