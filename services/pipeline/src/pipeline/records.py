"""What a record is: the rule a MongoDB document must meet to become a row of the table.

The record is ``{_id: id, score, created_at, updated_at}`` as the apiserver stores it: ``_id``
a string of 1..256 characters, ``score`` a number in [0, 1] (a double, or the integers 0 and
1; never a boolean), both timestamps BSON dates that Python can hold (years 1..9999).

The rule has two spellings that must agree: ``problem`` (Python; the export applies it to every
document it reads) and ``VALID_QUERY`` (a MongoDB filter; the asset checks count the documents
that break it). The pipeline's tests hold both to the same verdicts on the same documents, with
one exception: the query does not measure the length of ``_id`` (a regular expression over every
id made FerretDB's count three times slower than the scan itself, and MongoDB has no cheaper
way in a find filter), so an id longer than 256 characters is skipped and named by the export
and counted as missing by the row-count check, but not counted as invalid by the query.

A document dated more than ``MAX_CLOCK_SKEW`` after a run started is "from the future": bad
data or a writer's clock far ahead. It is never exported before its time and never moves the
export's window; runs and checks report it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import Int64

MAX_ID_LENGTH = 256
# Naive UTC, like every date pymongo reads (tz_aware=False).
MIN_DATE = dt.datetime(1, 1, 1)
MAX_DATE = dt.datetime(9999, 12, 31, 23, 59, 59, 999_000)
# How far a writer's clock may run ahead of the pipeline's before its timestamps count as
# "from the future". The run's overlap (``overlap_seconds``) covers clocks running behind.
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
# The fields the export reads (``_id`` always comes back): nothing else crosses the network.
PROJECTION: dict[str, int] = {"score": 1, "created_at": 1, "updated_at": 1}
# How many characters of an id a log line or a check shows.
SHOWN_ID_CHARACTERS = 40

_NUMBER_TYPES = (float, int, Int64)  # exact types: bool is a subclass of int, Int64 of int

VALID_QUERY: dict[str, Any] = {
    "_id": {"$type": "string", "$ne": ""},
    "score": {"$type": ["double", "int", "long"], "$gte": 0, "$lte": 1},
    "created_at": {"$gte": MIN_DATE, "$lte": MAX_DATE},
    "updated_at": {"$gte": MIN_DATE, "$lte": MAX_DATE},
}
INVALID_QUERY: dict[str, Any] = {"$nor": [VALID_QUERY]}
# Documents without a usable created_at: they cannot be placed in time, so they are always due.
NO_CREATED_AT_QUERY: dict[str, Any] = {
    "$nor": [{"created_at": {"$gte": MIN_DATE, "$lte": MAX_DATE}}]
}


def future_query(due: dt.datetime) -> dict[str, Any]:
    """Valid documents dated at or after ``due`` (naive UTC)."""
    return {"$and": [VALID_QUERY, _dated_from(due)]}


def skipped_query(due: dt.datetime) -> dict[str, Any]:
    """Every document an export starting now would skip: invalid or from the future."""
    return {"$or": [INVALID_QUERY, _dated_from(due)]}


def _dated_from(due: dt.datetime) -> dict[str, Any]:
    return {"$or": [{"created_at": {"$gte": due}}, {"updated_at": {"$gte": due}}]}


def problem(document: dict[str, Any]) -> str | None:
    """Why a document cannot become a row, or None when it can."""
    record_id = document.get("_id")
    if type(record_id) is not str or not 1 <= len(record_id) <= MAX_ID_LENGTH:
        return f"_id must be a string of 1..{MAX_ID_LENGTH} characters"
    score: Any = document.get("score")
    if type(score) not in _NUMBER_TYPES or not 0 <= score <= 1:
        return f"score must be a number in [0, 1], got {_shown(score)}"
    for name in ("created_at", "updated_at"):
        if type(document.get(name)) is not dt.datetime:
            return f"{name} must be a date in the years 1..9999, got {_shown(document.get(name))}"
    return None


def shown_id(record_id: object) -> str:
    """An id for a log line: its repr, cut to ``SHOWN_ID_CHARACTERS`` with the full length."""
    if isinstance(record_id, str) and len(record_id) > SHOWN_ID_CHARACTERS:
        return f"{record_id[:SHOWN_ID_CHARACTERS]!r}... ({len(record_id)} characters)"
    return _shown(record_id)


def _shown(value: object, limit: int = 60) -> str:
    text = "missing" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
