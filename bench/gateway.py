"""Benchmark of the Gateway data plane (`make bench`; prints numbers, asserts nothing).

Starts the local data plane of the `dataplane` level (stacktools.dataplane.LocalGateway:
Traefik on a control plane of its own, the gateway role's objects, the apiserver processes on
FerretDB in a network namespace) and loads, with wrk at concurrency 64:

- through the Gateway: `GET /external-read?limit=1` (rewritten to /internal-read; one
  FerretDB read per request) and `GET /docs` (no database), with the A/B header so that every
  request goes to the one canary process;
- straight to that canary process: `GET /internal-read?limit=1` and `GET /docs`.

The difference is what the Gateway hop costs. Needs root (the backends' network namespace),
wrk, and `make prepare` (Traefik, the control plane, FerretDB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from stacktools.builds.ferretdb import FERRETDB_VERSION
from stacktools.builds.traefik import TRAEFIK_VERSION
from stacktools.dataplane import LocalGateway

LUA = Path(__file__).resolve().parent / "lua" / "read.lua"
CONCURRENCY = 64


@dataclass
class Result:
    label: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(
            "bench/gateway.py needs wrk (the HTTP load generator) and it is not on PATH.\n"
            "Install it: Debian/Ubuntu `sudo apt-get install -y wrk`, macOS `brew install wrk`."
        )
    return wrk


def run_wrk(
    wrk: str, label: str, url: str, path: str, *, api_key: str, header: str, seconds: float
) -> Result:
    env = {**os.environ, "BENCH_API_KEY": api_key, "BENCH_PATH": path, "BENCH_HEADER": header}
    # A short warm-up (connections, caches), then the measured run.
    for duration in (2, seconds):
        result = subprocess.run(
            [wrk, "-t2", f"-c{CONCURRENCY}", f"-d{int(duration)}s", "--timeout", "10s",
             "-s", str(LUA), url],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
    line = next(ln for ln in reversed(result.stdout.splitlines()) if ln.startswith("{"))
    data: dict[str, Any] = json.loads(line)
    errors = sum(data[k] for k in ("non_2xx", "connect", "read", "write", "timeout"))
    return Result(
        label,
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
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return [
        f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}; load average before the runs {os.getloadavg()[0]:.2f}",
        f"Traefik {TRAEFIK_VERSION}, Python {platform.python_version()}, FerretDB "
        f"{FERRETDB_VERSION} (SQLite), fastapi {version('fastapi')}, uvicorn "
        f"{version('uvicorn')}, {wrk_version.stdout.split(' Copyright')[0].strip()}",
    ]


def table(results: list[Result]) -> str:
    rows = [
        f"| path (concurrency {CONCURRENCY}) | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {r.label} | {r.rate:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"
        for r in results
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    args = parser.parse_args()
    wrk = require_wrk()
    facts = machine()
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp,
        LocalGateway(Path(tmp)) as gateway,
    ):
        target = gateway.target
        canary = gateway.backends["canary"].url
        header = ": ".join(target.ab_header)
        print(f"{target.description}; set-up {gateway.timings}", file=sys.stderr)
        runs = [
            ("Gateway GET /external-read?limit=1", target.apiserver_url, "/external-read?limit=1"),
            ("direct GET /internal-read?limit=1", canary, "/internal-read?limit=1"),
            ("Gateway GET /docs", target.apiserver_url, "/docs"),
            ("direct GET /docs", canary, "/docs"),
        ]
        for label, url, path in runs:
            print(f"wrk: {label} ...", file=sys.stderr)
            result = run_wrk(
                wrk, label, url, path, api_key=target.api_key, header=header, seconds=args.seconds
            )
            results.append(result)
    print("\n".join(f"- {fact}" for fact in facts))
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
