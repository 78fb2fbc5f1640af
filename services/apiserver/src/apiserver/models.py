"""Request and response bodies. Input models are strict and reject unknown fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

MAX_ID_LENGTH = 256
MAX_BATCH = 1000
MAX_PAGE = 1000
DEFAULT_PAGE = 100

RecordId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def utc_now_ms() -> datetime:
    """The current UTC time truncated to milliseconds, the precision MongoDB stores."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def _iso_ms(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_iso_ms, return_type=str)]


class RecordIn(BaseModel):
    """One record to upsert: ``id`` 1..256 characters, ``score`` a finite number in [0, 1]."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: RecordId
    score: Score


class Record(BaseModel):
    """A stored record; timestamps are UTC with millisecond precision."""

    id: str
    score: float
    created_at: Timestamp
    updated_at: Timestamp


class BatchIn(BaseModel):
    """Up to 1000 records with distinct ids, written in one bulk write."""

    model_config = ConfigDict(extra="forbid", strict=True)

    records: Annotated[list[RecordIn], Field(min_length=1, max_length=MAX_BATCH)]


class BatchItem(BaseModel):
    id: str
    status: Literal["inserted", "updated", "failed"]
    error: str | None = None


class BatchResult(BaseModel):
    """Per-record outcome, in request order, and the totals."""

    inserted: int
    updated: int
    failed: int
    results: list[BatchItem]


class ReadQuery(BaseModel):
    """The query of ``GET /internal-read``; other parameters are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: RecordId | None = Field(default=None, description="Only the record with this id")
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="Records per page")] = DEFAULT_PAGE
    cursor: Annotated[
        str | None,
        Field(
            max_length=1400,
            description="Where the page starts: from the previous page's "
            '`Link: <...>; rel="next"` header',
        ),
    ] = None


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer (4xx and 5xx) has this shape."""

    error: str
    message: str
    details: list[ErrorDetail] | None = None


class Health(BaseModel):
    status: Literal["ok"]
