"""Benchmark of the Delta export (`make bench`; prints numbers, asserts nothing).

For each size N: a fresh FerretDB is filled with N records; then, on that same server,
1. the raw `find()` cursor read rate (pymongo, batches of 10,000): the ceiling of any export;
2. a full export (`full_refresh`) as a Dagster run in a child process: its time, rows/s, the
   child's CPU time and peak RSS (wait4's rusage: the whole process, Python, Dagster and
   delta-rs); the raw read is repeated after it, as the machine's load varies;
3. 1% of the documents changed (new score and updated_at), then an incremental export (the
   default run) in a child. FerretDB's SQLite backend scans the whole collection for every
   update by _id (0.4 s each at 100k documents), so the changed state is written as a second
   collection (the same N documents, 1% of them changed) and the incremental run reads that
   one: to the pipeline it is the same source, N documents of which 1% changed since its
   last run. Two patterns, each on its own copy of the table the full export wrote:
   "spread" (1% chosen at random over the whole history) and "recent" (the 1% created
   last). For each, the bytes the run wrote (the data files its commit added, from the
   run's metadata, which reads them from the Delta log) against the table's size.
The sizes are 10k and 100k (--sizes sets others); --million adds 1M. Aims from issue 3:
full export >= 50% of the raw read rate, peak RSS < 400 MB at 1M and flat in N,
incremental (1% changed) < 10% of the full export time; from issue 16: the incremental run's
written bytes a small fraction of the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from stacktools.builds.ferretdb import FERRETDB_VERSION
from stacktools.servers.ferretdb import FerretDB

BATCH = 10_000


@dataclass
class Row:
    n: int
    raw_seconds: tuple[float, float]  # before and after the full export
    full: dict[str, Any]
    incremental: dict[str, Any]  # the "spread" pattern
    query_seconds: float
    recent: dict[str, Any]  # the "recent" pattern

    def write_cells(self) -> list[str]:
        table_bytes = self.full["table_bytes"]
        cells = [f"{self.n:,}", f"{table_bytes / 1e6:.1f}", f"{self.full['table_files']}"]
        for run in (self.incremental, self.recent):
            written = run["bytes_written"]
            cells += [
                f"{written / 1e6:.2f}",
                f"{written / table_bytes:.1%}",
                f"{run['files_added']}",
                f"{run['seconds']:.1f}",
            ]
        return cells

    def cells(self) -> list[str]:
        rates = [self.n / seconds for seconds in self.raw_seconds]
        raw_rate = sum(rates) / len(rates)
        full_rate = self.n / self.full["seconds"]
        return [
            f"{self.n:,}",
            " / ".join(f"{rate:,.0f}" for rate in rates),
            f"{self.full['seconds']:.1f}",
            f"{full_rate:,.0f}",
            f"{full_rate / raw_rate:.0%}",
            f"{self.full['wall']:.1f}",
            f"{self.full['cpu']:.1f}",
            f"{self.full['max_rss_mb']:.0f}",
            f"{self.incremental['seconds']:.1f}",
            f"{self.incremental['seconds'] / self.full['seconds']:.0%}",
            f"{self.query_seconds:.1f}",
            f"{self.incremental['max_rss_mb']:.0f}",
        ]


HEADER = [
    "N",
    "raw find() rows/s before / after",
    "full export s",
    "full rows/s",
    "of raw (mean)",
    "full run wall s",
    "full run CPU s",
    "full peak RSS MB",
    "incr. export s",
    "of full",
    "1% query alone s",
    "incr. peak RSS MB",
]


WRITE_HEADER = [
    "N",
    "table MB",
    "table files",
    "spread: written MB",
    "of table",
    "files written",
    "export s",
    "recent: written MB",
    "of table",
    "files written",
    "export s",
]


def fill(
    uri: str,
    n: int,
    collection: str,
    start: dt.datetime,
    *,
    changed: frozenset[str] = frozenset(),
    at: dt.datetime | None = None,
) -> list[str]:
    """N records as the apiserver stores them, 50 ms apart from ``start``.

    The same seed gives the same records; ids in ``changed`` get a new score and
    ``updated_at = at`` (a 1% change written as a second copy of the collection, see main).
    """
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    rng = random.Random(n)
    ids = [f"bench-{i:08d}" for i in range(n)]
    for first in range(0, n, BATCH):
        docs = []
        for offset, record_id in enumerate(ids[first : first + BATCH]):
            created = start + dt.timedelta(milliseconds=(first + offset) * 50)
            score = rng.random()
            updated = created
            if record_id in changed and at is not None:
                score, updated = 1 - score, at
            docs.append(
                {"_id": record_id, "score": score, "created_at": created, "updated_at": updated}
            )
        client.uploads[collection].insert_many(docs, ordered=False)
    client.close()
    return ids


def raw_read(uri: str) -> float:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    started = time.perf_counter()
    count = sum(1 for _ in client.uploads.records.find({}, batch_size=BATCH))
    seconds = time.perf_counter() - started
    client.close()
    assert count > 0
    return seconds


def query_alone(uri: str, collection: str, since: dt.datetime) -> float:
    """Just the incremental query (what FerretDB costs for it, without any export work)."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    started = time.perf_counter()
    for _ in client.uploads[collection].find({"updated_at": {"$gte": since}}, batch_size=BATCH):
        pass
    seconds = time.perf_counter() - started
    client.close()
    return seconds


def export_in_child(
    uri: str, collection: str, table: Path, full_refresh: bool, file_size: int | None
) -> dict[str, Any]:
    """One Dagster run in a child process; its metadata plus wall time and peak RSS."""
    # -P: do not put bench/ on sys.path, where this file would shadow the `pipeline` package.
    command = [sys.executable, "-P", __file__, "--child", uri, collection, str(table)]
    command += ["--full-refresh"] if full_refresh else []
    command += [] if file_size is None else ["--target-file-size", str(file_size)]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read()[-3000:].decode(errors="replace")
            raise RuntimeError(f"export child failed ({process.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    result["wall"] = wall
    result["max_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["cpu"] = usage.ru_utime + usage.ru_stime
    return result


def child(uri: str, collection: str, table: str, full_refresh: bool, file_size: int | None) -> None:
    # Imported here: only the child (started with -P) can import the `pipeline` package.
    import dagster as dg  # noqa: PLC0415

    from pipeline.assets import ExportConfig, records_delta  # noqa: PLC0415
    from pipeline.resources import DeltaTableResource, MongoResource  # noqa: PLC0415

    result = dg.materialize(
        [records_delta],
        resources={
            # No socket timeout to speak of: on a loaded machine FerretDB's scan of 1M
            # documents for the incremental query was seen taking over 5 minutes.
            "mongodb": MongoResource(
                uri=uri, collection=collection, batch_size=BATCH, socket_timeout_ms=3_600_000
            ),
            "delta_table": (
                DeltaTableResource(uri=table)
                if file_size is None
                else DeltaTableResource(uri=table, target_file_size=file_size)
            ),
        },
        run_config=dg.RunConfig({"records_delta": ExportConfig(full_refresh=full_refresh)}),
    )
    (event,) = result.asset_materializations_for_node("records_delta")
    print(json.dumps({key: value.value for key, value in event.metadata.items()}))


def measure(n: int, workdir: Path, file_size: int | None) -> Row:
    started = time.perf_counter()

    def progress(what: str) -> None:
        elapsed = time.perf_counter() - started
        print(f"N={n:,}: {what} ({elapsed:.0f}s)", file=sys.stderr, flush=True)

    start = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(days=1)
    with FerretDB(workdir / f"ferretdb-{n}") as server:
        ids = fill(server.uri, n, "records", start)
        progress("filled FerretDB")
        raw_before = raw_read(server.uri)
        progress("raw read")
        table = workdir / f"delta-{n}"
        full = export_in_child(server.uri, "records", table, True, file_size)
        assert full["rows_inserted"] == n, full
        progress("full export")
        raw_after = raw_read(server.uri)  # again: the machine's load varies over minutes
        progress("raw read again")
        recent_table = workdir / f"delta-{n}-recent"
        shutil.copytree(table, recent_table)  # the same table for the second pattern
        since = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        patterns = {
            "records_changed": frozenset(random.Random(1).sample(ids, n // 100)),
            "records_recent": frozenset(ids[-(n // 100) :]),
        }
        for collection, changed in patterns.items():
            fill(server.uri, n, collection, start, changed=changed, at=since)
        progress("wrote the copies with 1% changed (spread, recent)")
        runs = {}
        for collection, target in (("records_changed", table), ("records_recent", recent_table)):
            run = export_in_child(server.uri, collection, target, False, file_size)
            assert run["rows_updated"] == n // 100, run
            assert run["rows_inserted"] == 0, run
            runs[collection] = run
            progress(f"incremental export ({collection})")
        query_seconds = query_alone(server.uri, "records_changed", since)
    incremental, recent = runs["records_changed"], runs["records_recent"]
    print(
        f"N={n:,}: raw {raw_before:.1f}s / {raw_after:.1f}s, full {full['seconds']:.1f}s, "
        f"incremental {incremental['seconds']:.1f}s (spread) {recent['seconds']:.1f}s (recent)",
        file=sys.stderr,
        flush=True,
    )
    return Row(n, (raw_before, raw_after), full, incremental, query_seconds, recent)


def table_text(header: list[str], lines: list[list[str]]) -> str:
    cells = [header, *lines]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    rows = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in cells
    ]
    rows.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", action="store_true", help="also measure 1,000,000 records")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="numbers of records to measure (default: 10000 100000)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # uri collection table
    parser.add_argument("--full-refresh", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--target-file-size",
        type=int,
        help="bytes per data file (default: the pipeline's, 1 MiB); 104857600 is delta-rs's "
        "default, the layout before issue 16",
    )
    args = parser.parse_args()
    if args.child:
        uri, collection, table = args.child
        child(uri, collection, table, args.full_refresh, args.target_file_size)
        return 0
    sizes = [*args.sizes] + ([1_000_000] if args.million else [])
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        rows = [measure(n, Path(tmp), args.target_file_size) for n in sizes]
    print(
        f"\nFerretDB {FERRETDB_VERSION} (SQLite), {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; export = the asset's own time, "
        "run wall = child process start to exit (Python + Dagster start-up included)\n"
    )
    print(table_text(HEADER, [row.cells() for row in rows]))
    size = (
        "1 MiB (the default)"
        if args.target_file_size is None
        else f"{args.target_file_size:,} bytes"
    )
    print(
        "\nIncremental runs, 1% of the records changed: bytes the commit added against the "
        f"table's size (data files of at most {size})\n"
    )
    print(table_text(WRITE_HEADER, [row.write_cells() for row in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
