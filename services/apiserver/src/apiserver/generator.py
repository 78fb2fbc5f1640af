"""``stack-insert``: post random records to the apiserver and report throughput and latency.

Single records go to ``<prefix>-insert``, batches to ``<prefix>-insert/batch``; the prefix is
``/external`` (through the Gateway, which rewrites to ``/internal-*``) or ``/internal`` when
talking to the service directly. Exits 1 when any record failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from apiserver.models import MAX_BATCH
from apiserver.progress import ProgressBar

MAX_ERRORS_SHOWN = 5


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def fail(self, count: int, reason: str) -> int:
        self.failed += count
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(reason)
        return count


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(fraction * len(ordered) + 0.999999)))
    return ordered[rank - 1]


def random_record() -> dict[str, Any]:
    # Not security sensitive: test data.
    return {"id": f"gen-{uuid.uuid4().hex}", "score": random.random()}  # noqa: S311


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"HTTP {response.status_code}: {body.get('error')}: {body.get('message')}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


async def _post(client: httpx.AsyncClient, url: str, payload: Any, size: int, tally: Tally) -> int:
    """Send one request; count it; return how many of its records failed."""
    start = time.perf_counter()
    try:
        response = await client.post(url, json=payload)
    except httpx.HTTPError as exc:
        return tally.fail(size, f"{type(exc).__name__}: {exc}")
    finally:
        tally.requests += 1
        tally.latencies.append(time.perf_counter() - start)
    if response.status_code != 200:
        return tally.fail(size, _reason(response))
    failed = int(response.json()["failed"]) if "records" in payload else 0
    tally.sent += size - failed
    return tally.fail(failed, f"{failed} record(s) of a batch failed") if failed else 0


async def run(args: argparse.Namespace, api_key: str) -> Tally:
    tally = Tally()
    progress = ProgressBar(args.count)
    url = f"{args.path_prefix}-insert" + ("/batch" if args.batch_size else "")
    chunk: int = args.batch_size or 1
    remaining: int = args.count

    def take() -> int:
        # Single-threaded event loop: no await between read and write, so no lock needed.
        nonlocal remaining
        size = min(chunk, remaining)
        remaining -= size
        return size

    async def worker(client: httpx.AsyncClient) -> None:
        while size := take():
            if args.batch_size:
                payload: Any = {"records": [random_record() for _ in range(size)]}
            else:
                payload = random_record()
            failed = await _post(client, url, payload, size, tally)
            progress.advance(size, failed)

    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(
        base_url=args.base_url, headers={"x-api-key": api_key}, timeout=args.timeout, limits=limits
    ) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    progress.close()
    return tally


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be at least 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _batch_size(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_BATCH:
        msg = f"must be 0 (single inserts) to {MAX_BATCH}, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stack-insert", description="Post random {id, score} records to the apiserver."
    )
    parser.add_argument("--count", type=_positive, default=1000, help="records to send")
    parser.add_argument("--concurrency", type=_positive, default=32, help="requests in flight")
    parser.add_argument("--base-url", default="http://localhost:8010", help="Gateway or service")
    parser.add_argument(
        "--api-key", default=None, help="x-api-key value (default: $APISERVER_API_KEY)"
    )
    parser.add_argument(
        "--batch-size", type=_batch_size, default=0, help="0: one record per request; N: batches"
    )
    parser.add_argument(
        "--path-prefix",
        default="/external",
        help="/external through the Gateway, /internal against the service itself",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    return parser.parse_args(argv)


def summary(tally: Tally, elapsed: float) -> str:
    rate = tally.sent / elapsed if elapsed > 0 else 0.0
    return (
        f"sent={tally.sent} failed={tally.failed} requests={tally.requests} "
        f"elapsed={elapsed:.2f}s records/s={rate:.1f} "
        f"p50={percentile(tally.latencies, 0.50) * 1000:.1f}ms "
        f"p99={percentile(tally.latencies, 0.99) * 1000:.1f}ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = args.api_key or os.environ.get("APISERVER_API_KEY", "")
    if not api_key:
        print("stack-insert: no API key: pass --api-key or set APISERVER_API_KEY", file=sys.stderr)
        return 2
    start = time.perf_counter()
    tally = asyncio.run(run(args, api_key))
    elapsed = time.perf_counter() - start
    for reason in tally.errors:
        print(f"stack-insert: error: {reason}", file=sys.stderr)
    print(summary(tally, elapsed))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
