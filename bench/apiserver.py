"""Benchmark of the apiserver against the raw driver and a bare FastAPI (`make bench`;
prints numbers, asserts nothing).

One run per FerretDB backend (`--backend sqlite` and/or `postgresql`; both by default): one
FerretDB v1.24.2 on loopback, on SQLite or on a private PostgreSQL cluster (the system's
`postgresql` package; FerretDB `--handler=pg`), serves every measurement of that run.

Upserts, at concurrency 1, 16 and 64, interleaved per concurrency:
1. raw driver: pymongo's AsyncMongoClient in this process doing exactly the apiserver's
   upsert (find_one_and_update, $set/$setOnInsert, upsert, document returned);
2. bare FastAPI (bench/bare_fastapi.py): a plain endpoint doing that call, no middleware;
3. the apiserver of another revision (`--before REV`, e.g. main), when given;
4. the apiserver of this tree.
2 to 4 run under uvicorn (1 worker, uvloop + httptools, defaults of each), loaded by wrk
(bench/lua/upsert.lua, random ids). Every run starts on an empty collection (FerretDB's
PostgreSQL backend looks `_id` up with a scan, so a grown collection would slow later runs).
For each run: requests/s, p50/p99, errors, CPU seconds of the serving process (from /proc;
the bench process itself for the raw driver) and of the database (FerretDB, and PostgreSQL's
processes) per request.

Reads (`--read-records`, default 100,000): the first page (`GET /internal-read?limit=100`) by
4 and 16 concurrent readers (wrk) for `--read-seconds`, this tree's apiserver first, then the
other revision's (whose abandoned scans would otherwise run into this tree's runs); then, with
the readers gone, a one-record read's latency and how long the database stays busy with
abandoned work. Each run waits for the database to go idle first, at most `--idle-limit`. Page
latency by collection size, measured before the read runs (on a database no abandoned scan
keeps busy): the raw driver's first and middle page, one reader, no deadline, at 10k and 100k
(and 1M with `--million`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from measure import Run, cpu_seconds, raw_upserts, wrk, wrk_run
from pymongo import MongoClient

from stacktools.builds.ferretdb import FERRETDB_VERSION
from stacktools.net import free_port, wait_for_port
from stacktools.servers import postgresql
from stacktools.servers.ferretdb import FerretDB
from stacktools.servers.postgresql import PostgreSQL

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONCURRENCY = (1, 16, 64)
READERS = (4, 16)
DATABASE = "bench"
Document = dict[str, Any]


@dataclass
class Database:
    backend: str
    uri: str
    pids: list[int]
    description: str


@dataclass
class Server:
    label: str
    base: str
    pid: int
    collection: str


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        print(
            "bench/apiserver.py needs wrk (the HTTP load generator) and it is not on PATH.\n"
            "Install it: Debian/Ubuntu `sudo apt-get install -y wrk`, macOS `brew install wrk`.",
            file=sys.stderr,
        )
        sys.exit(2)


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[Database]:
    with ExitStack() as stack:
        url = None
        pids: list[int] = []
        description = f"FerretDB {FERRETDB_VERSION} on SQLite"
        if backend == "postgresql":
            pg = stack.enter_context(PostgreSQL(workdir / "postgresql"))
            url = pg.url
            assert pg.pid is not None
            pids.append(pg.pid)
            description = (
                f"FerretDB {FERRETDB_VERSION} on PostgreSQL {postgresql.version(pg.bin_dir)} "
                "(private cluster, default settings)"
            )
        db = stack.enter_context(FerretDB(workdir / "ferretdb", postgresql_url=url))
        assert db.pid is not None
        yield Database(backend, db.uri, [db.pid, *pids], description)


def export_revision(revision: str, into: Path) -> Path:
    """The apiserver package of ``revision`` (git archive), for PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "services/apiserver/src"],
        capture_output=True,
        check=True,
    )
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "services" / "apiserver" / "src"


@contextmanager
def serve(
    label: str, argv: list[str], *, env: dict[str, str], port: int, collection: str, log: Path
) -> Iterator[Server]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("APISERVER_", "BENCH_"))}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=base_env | env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                break
            time.sleep(0.1)
        yield Server(label, base, process.pid, collection)
    finally:
        process.terminate()
        process.wait(30)


def apiserver(
    label: str, db: Database, api_key: str, *, collection: str, log: Path, src: Path | None
) -> Any:
    port = free_port()
    env = {
        "APISERVER_API_KEY": api_key,
        "APISERVER_MONGODB_URI": db.uri,
        "APISERVER_MONGODB_DATABASE": DATABASE,
        "APISERVER_MONGODB_COLLECTION": collection,
        "APISERVER_HOST": "127.0.0.1",
        "APISERVER_PORT": str(port),
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [sys.executable, "-m", "apiserver"]
    return serve(label, argv, env=env, port=port, collection=collection, log=log)


def bare(db: Database, collection: str, workdir: Path, *, plain: bool = False) -> Any:
    """The bare FastAPI; ``plain``: on asyncio's loop and h11 instead of uvloop and httptools."""
    port = free_port()
    env = {
        "BENCH_MONGODB_URI": db.uri,
        "BENCH_DATABASE": DATABASE,
        "BENCH_COLLECTION": collection,
        "BENCH_PORT": str(port),
    }
    label = "bare FastAPI"
    if plain:
        env |= {"BENCH_LOOP": "asyncio", "BENCH_HTTP": "h11"}
        label += " (asyncio loop, h11)"
    argv = [sys.executable, str(BENCH / "bare_fastapi.py")]
    log = workdir / f"{collection}.log"
    return serve(label, argv, env=env, port=port, collection=collection, log=log)


def drop(mongo: MongoClient[Document], collection: str) -> None:
    mongo[DATABASE].drop_collection(collection)


def measure_wrk(
    server: Server, db: Database, api_key: str, *, mode: str, concurrency: int, seconds: float
) -> Run:
    service, database_cpu = cpu_seconds([server.pid]), cpu_seconds(db.pids)
    timeout = 30 if mode == "read" else 10
    data = wrk(
        server.base,
        api_key,
        mode=mode,
        concurrency=concurrency,
        seconds=seconds,
        timeout_s=timeout,
    )
    service = cpu_seconds([server.pid]) - service
    database_cpu = cpu_seconds(db.pids) - database_cpu
    label = server.label if mode != "healthz" else f"{server.label}, GET /healthz"
    return wrk_run(label, concurrency, data, service, database_cpu)


def wait_idle(db: Database, limit_s: float) -> bool:
    """Wait until the database has been idle (under 3% of a core) for 3 seconds in a row, or
    ``limit_s`` (``--idle-limit``) has passed.

    An abandoned scan on a busy machine gets little CPU (0.1 of a core, with quiet seconds
    between), so a single quiet second does not mean it is over. False: still busy at the
    limit."""
    began = time.monotonic()
    quiet = 0
    while quiet < 3 and time.monotonic() - began < limit_s:
        before = cpu_seconds(db.pids)
        time.sleep(1)
        quiet = quiet + 1 if cpu_seconds(db.pids) - before < 0.03 else 0
    return quiet >= 3


def apiservers(
    stack: ExitStack,
    db: Database,
    args: argparse.Namespace,
    api_key: str,
    workdir: Path,
    *,
    before: str,
    after: str,
) -> list[Server]:
    """The apiserver of ``--before`` (when given) on collection ``before``, then this tree's
    on ``after``; stopped when ``stack`` closes."""
    servers = []
    if args.before_src is not None:
        label = f"apiserver before ({args.before})"
        log = workdir / f"before-{before}-{time.monotonic_ns()}.log"
        server = apiserver(label, db, api_key, collection=before, log=log, src=args.before_src)
        servers.append(stack.enter_context(server))
    log = workdir / f"after-{after}-{time.monotonic_ns()}.log"
    server = apiserver("apiserver", db, api_key, collection=after, log=log, src=None)
    servers.append(stack.enter_context(server))
    return servers


def median_run(group: list[Run]) -> Run:
    """The round with the median rate; ``spread`` notes the lowest and highest rate."""
    ordered = sorted(group, key=lambda run: run.rate)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.spread = (ordered[0].rate, ordered[-1].rate)
    return chosen


def upserts(db: Database, args: argparse.Namespace, workdir: Path, api_key: str) -> list[Run]:
    mongo: MongoClient[Document] = MongoClient(db.uri)
    with ExitStack() as stack:
        servers = [stack.enter_context(bare(db, "bare", workdir))]
        if args.uvicorn_variants:
            servers.append(stack.enter_context(bare(db, "bareplain", workdir, plain=True)))
        servers += apiservers(stack, db, args, api_key, workdir, before="before", after="after")
        for server in servers:  # warm-up, not reported; /readyz creates the apiserver's index
            httpx.get(f"{server.base}/readyz", timeout=10)
            wrk(server.base, api_key, mode="upsert", concurrency=16, seconds=2)
        rounds: dict[tuple[str, int], list[Run]] = {}

        def keep(run: Run) -> None:
            rounds.setdefault((run.label, run.concurrency), []).append(run)
            report(run)

        for concurrency in CONCURRENCY:
            for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits all
                drop(mongo, "raw")
                keep(asyncio.run(raw_upserts(db.uri, "raw", concurrency, args.seconds, db.pids)))
                for server in servers:
                    drop(mongo, server.collection)
                    keep(
                        measure_wrk(
                            server,
                            db,
                            api_key,
                            mode="upsert",
                            concurrency=concurrency,
                            seconds=args.seconds,
                        )
                    )
        for _ in range(args.rounds):
            for server in servers:
                keep(
                    measure_wrk(
                        server, db, api_key, mode="healthz", concurrency=64, seconds=args.seconds
                    )
                )
        runs = [median_run(group) for group in rounds.values()]
    mongo.close()
    return runs


def seed(mongo: MongoClient[Document], collection: str, count: int) -> None:
    """``count`` records with ids rec-0000000.. (added to what the collection holds)."""
    records = mongo[DATABASE][collection]
    have = records.estimated_document_count()
    now = datetime.now(UTC)
    for start in range(have, count, 1000):
        records.insert_many(
            [
                {"_id": f"rec-{n:07d}", "score": 0.5, "created_at": now, "updated_at": now}
                for n in range(start, min(count, start + 1000))
            ],
            ordered=False,
        )


@dataclass
class ReadRun:
    run: Run
    idle_before: bool
    busy_after_s: float
    idle_after: bool
    leftover_db_cpu_s: float
    probe_ms: float


def reads(db: Database, args: argparse.Namespace, workdir: Path, api_key: str) -> list[ReadRun]:
    results: list[ReadRun] = []
    mongo: MongoClient[Document] = MongoClient(db.uri)
    began = time.monotonic()
    seed(mongo, "reads", args.read_records)
    print(
        f"seeded {args.read_records:,} records in {time.monotonic() - began:.0f} s", file=sys.stderr
    )
    with ExitStack() as stack:
        servers = apiservers(stack, db, args, api_key, workdir, before="reads", after="reads")
        # This tree first: the other's abandoned scans would still be running into it.
        for server in reversed(servers):
            for readers in READERS:
                idle = wait_idle(db, args.idle_limit)
                run = measure_wrk(
                    server,
                    db,
                    api_key,
                    mode="read",
                    concurrency=readers,
                    seconds=args.read_seconds,
                )
                busy, idle_after, cpu, probe = aftermath(db, server, api_key, args.idle_limit)
                results.append(ReadRun(run, idle, busy, idle_after, cpu, probe))
                report(run)
                print(f"  aftermath: {results[-1]}", file=sys.stderr)
    mongo.close()
    return results


def aftermath(
    db: Database, server: Server, api_key: str, idle_limit: float
) -> tuple[float, bool, float, float]:
    """Right after the readers stop: the latency of a one-record read (``?id=``) through the
    server; then how long the database stays busy (abandoned work, up to ``idle_limit``) and
    the CPU it burns meanwhile."""
    cpu = cpu_seconds(db.pids)
    began = time.monotonic()
    httpx.get(
        f"{server.base}/internal-read",
        params={"id": "rec-0000001"},
        headers={"x-api-key": api_key},
        timeout=600,
    )
    probe_ms = (time.monotonic() - began) * 1000
    idle = wait_idle(db, idle_limit)
    busy = time.monotonic() - began - (3 if idle else 0)  # the three quiet seconds are not busy
    return max(busy, 0.0), idle, cpu_seconds(db.pids) - cpu, probe_ms


def page_latency(db: Database, sizes: list[int]) -> list[tuple[int, float, float]]:
    """Median of 3: the raw driver's first page and the page after the middle id."""
    mongo: MongoClient[Document] = MongoClient(db.uri, socketTimeoutMS=600_000)
    rows = []
    for size in sizes:
        collection = "reads" if size == 100_000 else f"pages{size}"
        seed(mongo, collection, size)
        records = mongo[DATABASE][collection]
        timings: dict[str, list[float]] = {"first": [], "middle": []}
        for _ in range(3):
            for name, query in (
                ("first", {"_id": {"$gte": ""}}),
                ("middle", {"_id": {"$gt": f"rec-{size // 2:07d}"}}),
            ):
                began = time.perf_counter()
                list(records.find(query, sort=[("_id", 1)], limit=101))
                timings[name].append((time.perf_counter() - began) * 1000)
        rows.append(
            (size, statistics.median(timings["first"]), statistics.median(timings["middle"]))
        )
        print(f"pages at {size:,}: {rows[-1]}", file=sys.stderr)
    mongo.close()
    return rows


def report(run: Run) -> None:
    print(
        f"{run.label} c={run.concurrency}: {run.rate:,.0f}/s p50={run.p50_ms:.1f}ms "
        f"p99={run.p99_ms:.1f}ms errors={run.errors} cpu/req={run.cpu_ms_per_request:.3f}ms "
        f"db cpu/req={run.db_cpu_ms_per_request:.3f}ms",
        file=sys.stderr,
        flush=True,
    )


def machine(db: Database) -> list[str]:
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
        f"{db.description}; Python {platform.python_version()}, "
        f"fastapi {version('fastapi')}, starlette {version('starlette')}, "
        f"uvicorn {version('uvicorn')} (uvloop {version('uvloop')}, "
        f"httptools {version('httptools')}), pymongo {version('pymongo')}, "
        f"{wrk_version.stdout.split(' Copyright')[0].strip()}",
    ]


def upsert_table(runs: list[Run]) -> str:
    raw = {r.concurrency: r.rate for r in runs if r.label.startswith("raw")}
    rows = [
        "| client | concurrency | requests/s (rounds' range) | p50 ms | p99 ms | errors "
        "| of raw driver "
        "| service CPU ms/request | requests per service CPU-s | database CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        share = "-" if "healthz" in r.label else f"{r.rate / raw[r.concurrency]:.2f}x"
        rows.append(
            f"| {r.label} | {r.concurrency} "
            f"| {r.rate:,.0f} ({r.spread[0]:,.0f}-{r.spread[1]:,.0f}) "
            f"| {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.errors} | {share} | {r.cpu_ms_per_request:.3f} | {r.requests_per_cpu_s:,.0f} "
            f"| {r.db_cpu_ms_per_request:.3f} |"
        )
    return "\n".join(rows)


def aims(runs: list[Run]) -> list[str]:
    at64 = {r.label: r for r in runs if r.concurrency == 64 and "healthz" not in r.label}
    raw = next(r for label, r in at64.items() if label.startswith("raw"))
    bare_run = at64["bare FastAPI"]
    lines = []
    for label, r in at64.items():
        if label.startswith(("raw", "bare")):
            continue
        lines.append(
            f"{label} at concurrency 64: {r.rate / raw.rate:.2f}x the raw driver's upserts/s "
            f"(aim >= 0.9x); {r.requests_per_cpu_s / bare_run.requests_per_cpu_s:.2f}x the bare "
            "FastAPI's requests per service CPU-second (aim >= 1.3x)"
        )
    return lines


def read_table(results: list[ReadRun]) -> str:
    rows = [
        "| server | readers | pages/s | answered 200 | failed | p50 ms | p99 ms "
        "| one-record read right after, ms | database busy after the readers left, s "
        "| database CPU-s burnt after | database idle when the readers began |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for item in results:
        r = item.run
        busy = f"{item.busy_after_s:.0f}" if item.idle_after else f">= {item.busy_after_s:.0f}"
        rows.append(
            f"| {r.label} | {r.concurrency} | {r.rate:.2f} | {r.ok} | {r.errors} "
            f"| {r.p50_ms:,.0f} | {r.p99_ms:,.0f} | {item.probe_ms:,.0f} "
            f"| {busy} | {item.leftover_db_cpu_s:.1f} "
            f"| {'yes' if item.idle_before else 'no (--idle-limit reached)'} |"
        )
    return "\n".join(rows)


def page_table(rows: list[tuple[int, float, float]]) -> str:
    lines = ["| records | first page ms | page after the middle id ms |", "|---:|---:|---:|"]
    lines += [f"| {size:,} | {first:,.0f} | {middle:,.0f} |" for size, first, middle in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql"], action="append", help="default: both"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each upsert run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="upsert runs per client (the median is reported)"
    )
    parser.add_argument("--before", metavar="REV", help="also run the apiserver of this git rev")
    parser.add_argument("--read-records", type=int, default=100_000, help="0: no read runs")
    parser.add_argument("--read-seconds", type=float, default=20.0)
    parser.add_argument("--million", action="store_true", help="page latency at 1M too")
    parser.add_argument(
        "--idle-limit",
        type=float,
        default=900.0,
        help="longest wait, in seconds, for the database to go idle after the readers left "
        "(a busy time at this limit means at least that long)",
    )
    parser.add_argument(
        "--uvicorn-variants",
        action="store_true",
        help="also the bare FastAPI on asyncio's loop and h11 (what uvloop and httptools save)",
    )
    args = parser.parse_args()
    require_wrk()
    api_key = secrets.token_urlsafe(24)
    for backend in args.backend or ["sqlite", "postgresql"]:
        with tempfile.TemporaryDirectory(prefix="bench-apiserver-") as tmp:
            workdir = Path(tmp)
            args.before_src = (
                None if args.before is None else export_revision(args.before, workdir / "before")
            )
            with database(backend, workdir) as db:
                facts = machine(db)
                started = time.monotonic()
                runs = upserts(db, args, workdir, api_key)
                # Page latency before the read runs: the apiserver before issue 17 leaves its
                # abandoned scans running, and they stalled this step for its whole timeout.
                sizes = [10_000, 100_000] + ([1_000_000] if args.million else [])
                pages = page_latency(db, sizes) if args.read_records else []
                read_results = reads(db, args, workdir, api_key) if args.read_records else []
                minutes = (time.monotonic() - started) / 60
        print(f"\n### {backend}\n")
        print("\n".join(f"- {fact}" for fact in facts))
        print(f"- run took {minutes:.1f} min\n")
        print(upsert_table(runs))
        print()
        print("\n".join(f"- {line}" for line in aims(runs)))
        if read_results:
            print(f"\nFirst page at {args.read_records:,} records, {args.read_seconds:.0f} s:\n")
            print(read_table(read_results))
            print("\nRaw driver's page latency by collection size (median of 3):\n")
            print(page_table(pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
