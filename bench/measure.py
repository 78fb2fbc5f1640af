"""What bench/apiserver.py measures with: wrk runs, CPU time of process trees from /proc,
the raw driver's loops, and one result row per run."""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument

LUA = Path(__file__).resolve().parent / "lua" / "upsert.lua"
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One measured run: a client or server at one concurrency."""

    label: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    service_cpu_s: float
    db_cpu_s: float
    spread: tuple[float, float] = (0.0, 0.0)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.errors

    @property
    def cpu_ms_per_request(self) -> float:
        return self.service_cpu_s * 1000 / self.requests if self.requests else 0.0

    @property
    def requests_per_cpu_s(self) -> float:
        return self.requests / self.service_cpu_s if self.service_cpu_s else 0.0

    @property
    def db_cpu_ms_per_request(self) -> float:
        return self.db_cpu_s * 1000 / self.requests if self.requests else 0.0


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state (field 3) on


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU of each root process, its live descendants, and the children it has
    already reaped (their time moves into the parent's cutime/cstime when they exit)."""
    tree = _children()
    total = 0
    pending = list(roots)
    while pending:
        pid = pending.pop()
        fields = _stat(pid)
        if fields is None:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        pending += tree.get(pid, [])
    return total / _TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def wrk(
    base: str,
    api_key: str,
    *,
    mode: str,
    concurrency: int,
    seconds: float,
    timeout_s: float = 10,
) -> dict[str, Any]:
    """One wrk run with bench/lua/upsert.lua; its JSON summary (latencies in microseconds)."""
    threads = 1 if concurrency < 4 else 2
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{round(seconds)}s",
         "--timeout", f"{round(timeout_s)}s", "-s", str(LUA), base],
        env={**os.environ, "BENCH_API_KEY": api_key, "BENCH_MODE": mode},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    line = next(ln for ln in reversed(result.stdout.splitlines()) if ln.startswith("{"))
    data: dict[str, Any] = json.loads(line)
    return data


def wrk_run(
    label: str,
    concurrency: int,
    data: dict[str, Any],
    service_cpu_s: float,
    db_cpu_s: float,
) -> Run:
    errors = sum(data[k] for k in ("non_2xx", "connect", "read", "write", "timeout"))
    return Run(
        label,
        concurrency,
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        errors,
        service_cpu_s,
        db_cpu_s,
    )


async def raw_upserts(
    uri: str, collection: str, concurrency: int, seconds: float, db_pids: list[int]
) -> Run:
    """pymongo's AsyncMongoClient in this process doing exactly the apiserver's upsert."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, maxPoolSize=concurrency)
    records = client.bench[collection]
    await client.admin.command("ping")
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        rng = random.Random()
        while time.perf_counter() < deadline:
            now = datetime.now(UTC)
            start = time.perf_counter()
            await records.find_one_and_update(
                {"_id": f"raw-{rng.randrange(10**12)}"},
                {
                    "$set": {"score": rng.random(), "updated_at": now},
                    "$setOnInsert": {"created_at": now},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            latencies.append(time.perf_counter() - start)

    cpu, db, began = own_cpu_seconds(), cpu_seconds(db_pids), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cpu, db = own_cpu_seconds() - cpu, cpu_seconds(db_pids) - db
    await client.close()
    return Run(
        "raw driver (pymongo async, in the bench process)",
        concurrency,
        len(latencies),
        elapsed,
        percentile_ms(latencies, 0.50),
        percentile_ms(latencies, 0.99),
        0,
        cpu,
        db,
    )
