"""Benchmark of the apiserver's upserts (`make bench`; prints numbers, asserts nothing).

One FerretDB (SQLite) on loopback serves every measurement of the run:
1. the raw driver: pymongo's AsyncMongoClient doing the apiserver's own upsert
   (find_one_and_update with $set/$setOnInsert, upsert, the document returned) from one
   process at concurrency 1, 16, 64: the ceiling the API can approach;
2. the API: `python -m apiserver` (uvicorn; 1 worker, then 2) loaded by wrk (C, epoll)
   with bench/lua/upsert.lua posting /internal-insert with random ids, at the same
   concurrencies. wrk, not a Python client, so that the load generator is not the limit.
Every run lasts --seconds (default 10). Ids are random, so nearly every upsert inserts.
Aim (issue 2): the API reaches at least half of the raw driver's rate at concurrency 64.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient, ReturnDocument

from stacktools.builds.ferretdb import FERRETDB_VERSION
from stacktools.net import free_port, wait_for_port
from stacktools.servers.ferretdb import FerretDB

LUA = Path(__file__).resolve().parent / "lua" / "upsert.lua"
CONCURRENCY = (1, 16, 64)


@dataclass
class Result:
    label: str
    concurrency: int
    upserts: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.upserts / self.seconds


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "bench/apiserver.py needs wrk (the HTTP load generator) and it is not on PATH.\n"
            "Install it: Debian/Ubuntu `sudo apt-get install -y wrk`, macOS `brew install wrk`.",
            file=sys.stderr,
        )
        sys.exit(2)
    return wrk


def percentile_ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def raw_driver(uri: str, concurrency: int, seconds: float) -> Result:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, maxPoolSize=concurrency)
    records = client.bench.raw
    await client.admin.command("ping")
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        rng = random.Random()
        while time.perf_counter() < deadline:
            now = datetime.now(UTC)
            start = time.perf_counter()
            await records.find_one_and_update(
                {"_id": f"raw-{rng.randrange(10**9)}"},
                {
                    "$set": {"score": rng.random(), "updated_at": now},
                    "$setOnInsert": {"created_at": now},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await client.close()
    return Result(
        "raw driver (pymongo async)",
        concurrency,
        len(latencies),
        elapsed,
        percentile_ms(latencies, 0.50),
        percentile_ms(latencies, 0.99),
        0,
    )


@contextmanager
def apiserver(uri: str, api_key: str, workers: int, workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APISERVER_")}
    env |= {
        "APISERVER_API_KEY": api_key,
        "APISERVER_MONGODB_URI": uri,
        "APISERVER_MONGODB_DATABASE": "bench",
        "APISERVER_MONGODB_COLLECTION": f"api{workers}",
        "APISERVER_HOST": "127.0.0.1",
        "APISERVER_PORT": str(port),
        "APISERVER_WORKERS": str(workers),
    }
    log = (workdir / f"apiserver-{workers}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "apiserver"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # every worker ready: a few probes succeed in a row
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def run_wrk(
    wrk: str, base: str, api_key: str, *, concurrency: int, seconds: float, mode: str = "upsert"
) -> dict[str, Any]:
    threads = 1 if concurrency == 1 else 2
    result = subprocess.run(
        [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{int(seconds)}s", "--timeout", "10s",
         "-s", str(LUA), base],
        env={**os.environ, "BENCH_API_KEY": api_key, "BENCH_MODE": mode},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    line = next(ln for ln in reversed(result.stdout.splitlines()) if ln.startswith("{"))
    data: dict[str, Any] = json.loads(line)
    return data


def wrk_result(label: str, concurrency: int, data: dict[str, Any]) -> Result:
    errors = sum(data[k] for k in ("non_2xx", "connect", "read", "write", "timeout"))
    return Result(
        label,
        concurrency,
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        errors,
    )


def machine() -> list[str]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    load = os.getloadavg()
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return [
        f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}; load average before the run {load[0]:.2f}",
        f"Python {platform.python_version()}, FerretDB {FERRETDB_VERSION} (SQLite), "
        f"fastapi {version('fastapi')}, uvicorn {version('uvicorn')}, "
        f"pymongo {version('pymongo')}, {wrk_version.stdout.split(' Copyright')[0].strip()}",
    ]


def table(results: list[Result], raw: dict[int, float]) -> str:
    rows = [
        "| client | concurrency | requests/s | p50 ms | p99 ms | errors | of raw driver |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.label.startswith("raw"):
            share = "100%"
        elif "healthz" in r.label:
            share = "-"
        else:
            share = f"{r.rate / raw[r.concurrency]:.0%}"
        rows.append(
            f"| {r.label} | {r.concurrency} | {r.rate:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.errors} | {share} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn workers")
    args = parser.parse_args()
    wrk = require_wrk()
    facts = machine()
    api_key = secrets.token_urlsafe(24)
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-apiserver-") as tmp,
        FerretDB(Path(tmp) / "db") as db,
    ):
        print(f"FerretDB {FERRETDB_VERSION} at {db.uri}", file=sys.stderr)
        for c in CONCURRENCY:
            results.append(asyncio.run(raw_driver(db.uri, c, args.seconds)))
            print(f"raw driver c={c}: {results[-1].rate:,.0f}/s", file=sys.stderr)
        for workers in args.workers:
            name = f"uvicorn {workers} worker{'s' if workers > 1 else ''}"
            with apiserver(db.uri, api_key, workers, Path(tmp)) as base:
                run_wrk(wrk, base, api_key, concurrency=16, seconds=2)  # warm-up, not reported
                for c in CONCURRENCY:
                    data = run_wrk(wrk, base, api_key, concurrency=c, seconds=args.seconds)
                    results.append(wrk_result(f"API upsert, {name} (wrk)", c, data))
                    print(f"API {name} c={c}: {results[-1].rate:,.0f}/s {data}", file=sys.stderr)
                data = run_wrk(
                    wrk, base, api_key, concurrency=64, seconds=args.seconds, mode="healthz"
                )
                results.append(wrk_result(f"API GET /healthz, no database, {name}", 64, data))
    raw = {r.concurrency: r.rate for r in results if r.label.startswith("raw")}
    print("\n".join(f"- {fact}" for fact in facts))
    print()
    print(table(results, raw))
    best = max(r.rate for r in results if r.concurrency == 64 and "upsert" in r.label)
    print(
        f"\nAPI at c=64 (best worker count): {best / raw[64]:.0%} of the raw driver (aim: >= 50%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
