"""The FerretDB helper starts a real wire-protocol server, and stop/start keeps the data; on
PostgreSQL (the bench's second backend) the data lives in a private cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from stacktools.servers.ferretdb import FerretDB
from stacktools.servers.postgresql import PostgreSQL

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


def test_postgresql_backend_keeps_data_in_postgresql(
    ferretdb_pg_server: FerretDB, tmp_path: Path
) -> None:
    """Documents written through FerretDB's PostgreSQL backend live in PostgreSQL: a second
    FerretDB with its own (empty) state folder on the same database finds them."""
    assert ferretdb_pg_server.backend == "postgresql"
    client: MongoClient[dict[str, object]] = MongoClient(
        ferretdb_pg_server.uri, serverSelectionTimeoutMS=5000
    )
    client.probe.items.insert_many([{"_id": f"r{n}", "score": n / 10} for n in range(5)])
    client.close()
    ferretdb_pg_server.stop()
    assert ferretdb_pg_server.postgresql_url is not None
    with FerretDB(tmp_path / "second", postgresql_url=ferretdb_pg_server.postgresql_url) as other:
        again: MongoClient[dict[str, object]] = MongoClient(
            other.uri, serverSelectionTimeoutMS=5000
        )
        assert again.probe.items.find_one({"_id": "r3"}) == {"_id": "r3", "score": 0.3}
        assert again.probe.items.count_documents({}) == 5
        again.close()


def test_postgresql_runs_unprivileged_and_needs_its_password(
    postgresql_server: PostgreSQL,
) -> None:
    """The cluster never runs as root, and a wrong password is refused (scram-sha-256)."""
    assert postgresql_server.running
    pid = postgresql_server.pid
    assert pid is not None
    uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[1])
    assert uid != 0
    psql = [str(postgresql_server.bin_dir / "psql"), "-h", "127.0.0.1"]
    psql += ["-p", str(postgresql_server.port), "-U", "stack", "-d", "postgres", "-Atc"]
    good = subprocess.run(
        [*psql, "select current_user"],
        env={**os.environ, "PGPASSWORD": postgresql_server.password},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (good.returncode, good.stdout.strip()) == (0, "stack"), good.stderr
    bad = subprocess.run(
        [*psql, "select 1"],
        env={**os.environ, "PGPASSWORD": "wrong-password"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    assert "password authentication failed" in bad.stderr
