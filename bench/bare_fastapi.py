"""The baseline of bench/apiserver.py: a plain FastAPI upsert endpoint doing the apiserver's
database call (find_one_and_update, upsert, document returned) and nothing else: no API key,
no body limits, no metrics, no access log, no error shaping, FastAPI's own request parsing and
response validation. ``python bench/bare_fastapi.py`` serves it with uvicorn's defaults
(uvloop and httptools when installed, as they are here) on BENCH_PORT.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from pymongo import AsyncMongoClient, ReturnDocument


class RecordIn(BaseModel):
    id: str
    score: float


class Record(BaseModel):
    id: str
    score: float
    created_at: datetime
    updated_at: datetime


client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
    os.environ.get("BENCH_MONGODB_URI", "mongodb://127.0.0.1:27017/"), tz_aware=True
)
records = client[os.environ.get("BENCH_DATABASE", "bench")][
    os.environ.get("BENCH_COLLECTION", "bare")
]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await client.close()


app = FastAPI(lifespan=lifespan)


@app.post("/internal-insert", response_model=Record)
async def insert(body: RecordIn) -> Record:
    now = datetime.now(UTC)
    doc = await records.find_one_and_update(
        {"_id": body.id},
        {"$set": {"score": body.score, "updated_at": now}, "$setOnInsert": {"created_at": now}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert doc is not None
    return Record(
        id=doc["_id"],
        score=doc["score"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        log_level="warning",
        access_log=False,
        loop=os.environ.get("BENCH_LOOP", "auto"),
        http=os.environ.get("BENCH_HTTP", "auto"),
    )
