"""Fixtures: the app in-process (httpx ASGITransport + lifespan) or as a uvicorn process,
each against a real MongoDB wire server (``mongodb_uri`` from stacktools) and a collection
of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import MongoClient
from pymongo.collection import Collection

from apiserver.app import create_app
from apiserver.settings import Settings
from stacktools.net import free_port, wait_for_port

API_KEY = "test-key-6f1d2c9a8b7e"
DATABASE = "apiserver_tests"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def make_settings(mongodb_uri: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "mongodb_uri": mongodb_uri,
        "mongodb_database": DATABASE,
        "mongodb_collection": f"records_{uuid.uuid4().hex[:12]}",
        "mongodb_timeout_ms": 10_000,
        # Pool size, write chunk and write statements in flight stay at their defaults, which
        # keep FerretDB clear of its deadlock (test_write_slots.py).
        "access_log": False,
        **overrides,
    }
    return Settings(**values)


@dataclass
class Service:
    """An app running in-process, a client for it, and direct access to its collection."""

    app: FastAPI
    client: httpx.AsyncClient
    collection: Collection[dict[str, Any]]
    settings: Settings


@pytest.fixture
def sync_mongo(mongodb_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=30_000, tz_aware=True
    )
    yield client
    client.close()


async def running(settings: Settings, mongo: MongoClient[dict[str, Any]]) -> AsyncIterator[Service]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://apiserver", headers={"x-api-key": API_KEY}
        ) as client:
            collection = mongo[settings.mongodb_database][settings.mongodb_collection]
            yield Service(app, client, collection, settings)
            collection.drop()


@pytest.fixture
async def service(
    mongodb_uri: str, sync_mongo: MongoClient[dict[str, Any]]
) -> AsyncIterator[Service]:
    async for svc in running(make_settings(mongodb_uri), sync_mongo):
        yield svc


@pytest.fixture
def settings_for() -> Callable[..., Settings]:
    """Settings for a given MongoDB URI, a fresh collection, and optional overrides."""
    return make_settings


@pytest.fixture
def running_service() -> Callable[..., AsyncIterator[Service]]:
    """``async for svc in running_service(settings, mongo)``: the app while its lifespan runs."""
    return running


@dataclass
class Process:
    base_url: str
    log_path: Path
    collection: str
    pid: int


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APISERVER_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def uvicorn_process(
    mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    """``python -m apiserver`` on a free loopback port, as it runs in the container."""
    port = free_port()
    collection = f"records_{uuid.uuid4().hex[:12]}"
    log_path = tmp_path_factory.mktemp("apiserver") / "apiserver.log"
    env = base_env(
        APISERVER_API_KEY=API_KEY,
        APISERVER_MONGODB_URI=mongodb_uri,
        APISERVER_MONGODB_DATABASE=DATABASE,
        APISERVER_MONGODB_COLLECTION=collection,
        APISERVER_HOST="127.0.0.1",
        APISERVER_PORT=str(port),
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "apiserver"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_for_port(port, timeout=30)
        except TimeoutError:
            pytest.fail(f"apiserver did not listen on {port}:\n{log_path.read_text()[-2000:]}")
        yield Process(f"http://127.0.0.1:{port}", log_path, collection, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
