"""Reading the records collection: connect with explicit timeouts, stream documents in batches.

Errors become ``SourceError`` with a message that names the server (never the credentials of
the URI) and the timeout, so a failed run says what to fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError
from pymongo.uri_parser import parse_uri

Document = dict[str, Any]


class SourceError(RuntimeError):
    """MongoDB is misconfigured, unreachable or failed while reading."""


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


@contextmanager
def open_collection(source: MongoSource) -> Iterator[Collection[Document]]:
    """The records collection, after a ping proved the server answers."""
    hosts = source.hosts
    client: MongoClient[Document] = MongoClient(
        source.uri,
        serverSelectionTimeoutMS=source.server_selection_timeout_ms,
        connectTimeoutMS=source.server_selection_timeout_ms,
        socketTimeoutMS=source.socket_timeout_ms,
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
            raise SourceError(msg) from None
        yield client[source.database][source.collection]
    finally:
        client.close()


def updated_since(since: dt.datetime | None) -> Document:
    """The query for documents changed at or after ``since`` (all documents when None)."""
    return {} if since is None else {"updated_at": {"$gte": since}}


def document_batches(
    collection: Collection[Document], query: Document, batch_size: int, hosts: str
) -> Iterator[list[Document]]:
    """The documents matching ``query`` in lists of ``batch_size``; memory stays bounded.

    No sort: every run commits its rows in one Delta transaction, and the next run's
    high-water mark comes from the committed table, so the read order does not matter.
    """
    batch: list[Document] = []
    try:
        for document in collection.find(query, batch_size=batch_size):
            batch.append(document)
            if len(batch) >= batch_size:
                yield batch
                batch = []
    except PyMongoError as exc:
        msg = f"reading {collection.full_name} from MongoDB at {hosts} failed: {_short(exc)}"
        raise SourceError(msg) from None
    if batch:
        yield batch


def count(collection: Collection[Document], query: Document, hosts: str) -> int:
    try:
        return collection.count_documents(query)
    except PyMongoError as exc:
        msg = f"counting {collection.full_name} on MongoDB at {hosts} failed: {_short(exc)}"
        raise SourceError(msg) from None


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
