"""`make demo`: the stack's data path on this machine, without Kubernetes.

FerretDB (MongoDB wire protocol) -> apiserver (uvicorn) <- stack-insert posts random records
-> Dagster materializes the Delta table `records` -> this script reads the table back with
polars and prints its version, row count and a sample. A second, smaller round of records
shows the incremental MERGE. Everything started here is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import polars as pl
from deltalake import DeltaTable
from pymongo import MongoClient

from stacktools.net import free_port
from stacktools.servers.ferretdb import FerretDB

BIN = Path(sys.executable).parent


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


@contextmanager
def apiserver(mongodb_uri: str, api_key: str, workdir: Path) -> Iterator[str]:
    """The apiserver as a uvicorn subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "APISERVER_MONGODB_URI": mongodb_uri,
        "APISERVER_API_KEY": api_key,
        "APISERVER_HOST": "127.0.0.1",
        "APISERVER_PORT": str(port),
        "APISERVER_LOG_LEVEL": "WARNING",
    }
    log_path = workdir / "apiserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "apiserver"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("the apiserver exited:\n" + log_path.read_text()[-2000:])
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the apiserver was not ready within 60 s")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def insert(base_url: str, api_key: str, count: int) -> None:
    command = [str(BIN / "stack-insert"), "--count", str(count), "--base-url", base_url]
    command += ["--path-prefix", "/internal", "--batch-size", "100", "--concurrency", "8"]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, env={**os.environ, "APISERVER_API_KEY": api_key}, check=True)


def materialize(env: dict[str, str]) -> None:
    """One Dagster run of the asset and its checks, through the `dagster` CLI."""
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "pipeline.definitions"]
    command += ["--select", "records_delta"]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    for line in output.splitlines():  # the export's own log lines and the check results
        if " - records_delta - " in line and " - INFO - " in line:
            print("  " + line.split(" - records_delta - ", 1)[1])
        elif "ASSET_CHECK_EVALUATION" in line:
            print("  check " + line.split("Asset check ", 1)[1])
    if result.returncode != 0:
        raise RuntimeError(f"dagster asset materialize failed:\n{output[-4000:]}")


def summarize(table_uri: str, mongodb_uri: str) -> None:
    table = DeltaTable(table_uri)
    frame = pl.read_delta(table_uri)
    client: MongoClient[dict[str, object]] = MongoClient(mongodb_uri)
    with client:
        documents = client.uploads.records.count_documents({})
    print(f"table      {table_uri}")
    print(f"version    {table.version()}")
    print(f"rows       {len(frame)} (MongoDB uploads.records: {documents} documents)")
    history = [(h["version"], h["operation"]) for h in reversed(table.history())]
    print(f"history    {json.dumps(history)}")
    with pl.Config(tbl_rows=5, fmt_str_lengths=40, tbl_width_chars=200):
        print(frame.sort("updated_at", descending=True).head(5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="records of the first round")
    parser.add_argument(
        "--keep", type=Path, help="keep FerretDB's data and the Delta table in this folder"
    )
    args = parser.parse_args()
    if args.count < 10:
        parser.error("--count must be at least 10")

    with ExitStack() as stack:
        if args.keep:
            workdir = args.keep.resolve()
            if workdir.exists() and any(workdir.iterdir()):
                parser.error(f"--keep folder {workdir} is not empty")
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stack-demo-")))
        table_uri = str(workdir / "delta" / "records")
        api_key = secrets.token_urlsafe(32)  # generated for this demo only, never printed

        step("FerretDB (MongoDB wire protocol, SQLite backend) on loopback")
        mongo = stack.enter_context(FerretDB(workdir / "ferretdb"))
        print(f"listening at {mongo.uri}")

        step("apiserver (uvicorn) with a freshly generated API key")
        base_url = stack.enter_context(apiserver(mongo.uri, api_key, workdir))
        print(f"ready at {base_url}")

        dagster_home = workdir / "dagster_home"
        dagster_home.mkdir()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
            "DAGSTER_HOME": str(dagster_home),
            "PIPELINE_MONGODB_URI": mongo.uri,
            "PIPELINE_DELTA_URI": table_uri,
            "PIPELINE_SCHEDULE_ENABLED": "false",
        }
        rounds = [args.count, max(args.count // 10, 1)]
        for number, count in enumerate(rounds, start=1):
            step(f"round {number}: post {count} random records through the apiserver")
            insert(base_url, api_key, count)
            step(f"round {number}: materialize the Delta table with Dagster")
            materialize(env)

        step("the Delta table, read back with polars")
        summarize(table_uri, mongo.uri)
        if args.keep:
            print(f"\nkept in {workdir} (FerretDB data, Delta table, Dagster home)")
    print("\nstopped FerretDB and the apiserver")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        sys.exit(1)
