"""Reading the records collection: connect with explicit timeouts, stream documents in batches.

Errors become ``SourceError`` with a message that names the server (never the credentials of
the URI) and the timeout, so a failed run says what to fix; ``transient`` says whether trying
again later can help (an unreachable or failing-over server) or not (a bad URI, no rights).

Documents are fetched as raw BSON and decoded one by one, so a document the decoder refuses
(a date outside the years 1..9999 when read as datetime, broken UTF-8) is named and skipped
instead of failing the batch it arrived in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    CursorNotFound,
    ExecutionTimeout,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)
from pymongo.uri_parser import parse_uri

from pipeline import records
from pipeline.schema import Undecodable

Document = dict[str, Any]
# Dates outside Python's range decode as bson.DatetimeMS (then reported), not as an error.
DECODE_OPTIONS: CodecOptions[Document] = CodecOptions(
    datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
_RAW_OPTIONS: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
# For naming a document that failed to decode: as lenient as the decoder allows.
_NAMING_OPTIONS: CodecOptions[Document] = CodecOptions(
    datetime_conversion=DatetimeConversion.DATETIME_MS,
    unicode_decode_error_handler="backslashreplace",
)


class SourceError(RuntimeError):
    """MongoDB is misconfigured, unreachable or failed while reading."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class MongoSource:
    """Where the records live and how long to wait for the server."""

    uri: str = field(repr=False)  # may hold a password
    database: str = "uploads"
    collection: str = "records"
    server_selection_timeout_ms: int = 5_000
    socket_timeout_ms: int = 300_000
    batch_size: int = 10_000

    @property
    def hosts(self) -> str:
        """``host:port`` of every server in the URI, for messages (no user or password)."""
        try:
            nodes = parse_uri(self.uri, validate=False)["nodelist"]
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            msg = f"the MongoDB URI is not valid: {exc}"
            raise SourceError(msg) from None
        return ",".join(f"{host}:{port}" for host, port in nodes)

    @property
    def namespace(self) -> str:
        return f"{self.database}.{self.collection}"


def is_transient(exc: PyMongoError) -> bool:
    """True for errors that a later attempt may not meet (network, failover, timeouts)."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | CursorNotFound):
        return True
    return isinstance(exc, OperationFailure) and exc.has_error_label("RetryableReadError")


@contextmanager
def open_collection(source: MongoSource) -> Iterator[Collection[Document]]:
    """The records collection, after a ping proved the server answers."""
    hosts = source.hosts
    client: MongoClient[Document] = MongoClient(
        source.uri,
        serverSelectionTimeoutMS=source.server_selection_timeout_ms,
        connectTimeoutMS=source.server_selection_timeout_ms,
        socketTimeoutMS=source.socket_timeout_ms,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
        appname="pipeline",
    )
    try:
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            msg = (
                f"MongoDB at {hosts} did not answer within "
                f"{source.server_selection_timeout_ms} ms (server selection timeout): "
                f"{_short(exc)}"
            )
            raise SourceError(msg, transient=is_transient(exc)) from None
        yield client[source.database][source.collection]
    finally:
        client.close()


def window_query(since: dt.datetime | None, until: dt.datetime) -> Document:
    """Documents changed in [since, until): the incremental read (``since`` None: no floor)."""
    bounds: Document = {"$lt": until} if since is None else {"$gte": since, "$lt": until}
    return {"updated_at": bounds}


def read_window(
    collection: Collection[Document], query: Document, batch_size: int, hosts: str
) -> Iterator[list[Document | Undecodable]]:
    """The documents matching ``query``, in lists of ``batch_size``, only the record's fields.

    No sort: the run commits its rows in one Delta transaction and deduplicates them by id,
    so the read order does not matter.
    """
    cursor = collection.with_options(codec_options=_RAW_OPTIONS).find(
        query, records.PROJECTION, batch_size=batch_size
    )
    return _batches(cursor, collection.full_name, batch_size, hosts)


def read_all(
    collection: Collection[Document], batch_size: int, hosts: str
) -> Iterator[list[Document | Undecodable]]:
    """Every document in natural order (a collection scan), only the record's fields.

    A collection scan visits each document once, and natural order is roughly insertion
    order, i.e. ``created_at`` order: the table's files then each hold records created in one
    stretch of time, so later updates of recent records rewrite only the newest files.
    """
    cursor = collection.with_options(codec_options=_RAW_OPTIONS).find(
        {}, records.PROJECTION, batch_size=batch_size, hint=[("$natural", 1)]
    )
    return _batches(cursor, collection.full_name, batch_size, hosts)


def _batches(
    cursor: Iterator[RawBSONDocument], name: str, batch_size: int, hosts: str
) -> Iterator[list[Document | Undecodable]]:
    batch: list[Document | Undecodable] = []
    try:
        for raw in cursor:
            batch.append(_decode(bytes(raw.raw)))
            if len(batch) >= batch_size:
                yield batch
                batch = []
    except PyMongoError as exc:
        msg = f"reading {name} from MongoDB at {hosts} failed: {_short(exc)}"
        raise SourceError(msg, transient=is_transient(exc)) from None
    if batch:
        yield batch


def _decode(data: bytes) -> Document | Undecodable:
    try:
        return bson.decode(data, DECODE_OPTIONS)
    except (BSONError, ValueError, OverflowError) as exc:
        try:
            document_id: object = bson.decode(data, _NAMING_OPTIONS).get("_id")
        except (BSONError, ValueError, OverflowError):
            document_id = None
        return Undecodable(document_id, _short(exc, 120))


def count(collection: Collection[Document], query: Document, hosts: str) -> int:
    try:
        return collection.count_documents(query)
    except PyMongoError as exc:
        msg = f"counting {collection.full_name} on MongoDB at {hosts} failed: {_short(exc)}"
        raise SourceError(msg, transient=is_transient(exc)) from None


def example_ids(
    collection: Collection[Document], query: Document, hosts: str, limit: int
) -> list[object]:
    """The ``_id`` of up to ``limit`` documents matching ``query``."""
    try:
        return [d["_id"] for d in collection.find(query, {"_id": 1}, limit=limit)]
    except PyMongoError as exc:
        msg = f"reading {collection.full_name} on MongoDB at {hosts} failed: {_short(exc)}"
        raise SourceError(msg, transient=is_transient(exc)) from None


def has_updated_at_index(collection: Collection[Document]) -> bool:
    """True when an index starts with ``updated_at`` (incremental reads then avoid a scan)."""
    try:
        return any(
            next(iter(index["key"]), None) == "updated_at" for index in collection.list_indexes()
        )
    except PyMongoError:
        return False


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
