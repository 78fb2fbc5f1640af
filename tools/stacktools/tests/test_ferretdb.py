"""The FerretDB helper starts a real wire-protocol server, and stop/start keeps the data."""

from __future__ import annotations

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from stacktools.servers.ferretdb import FerretDB

pytestmark = pytest.mark.services


def test_stop_and_start_keep_data_and_port(ferretdb_server: FerretDB) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(
        ferretdb_server.uri, serverSelectionTimeoutMS=2000
    )
    client.probe.items.insert_one({"_id": "a", "score": 0.5})
    ferretdb_server.stop()
    with pytest.raises(PyMongoError):
        client.probe.items.find_one({"_id": "a"})
    ferretdb_server.start()
    assert client.probe.items.find_one({"_id": "a"}) == {"_id": "a", "score": 0.5}
    client.close()


def test_session_server_answers_ping(mongodb_uri: str) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    assert client.admin.command("ping")["ok"] == 1.0
    client.close()
