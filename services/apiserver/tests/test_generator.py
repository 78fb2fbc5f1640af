"""stack-insert end to end against ``python -m apiserver`` in its own process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pymongo import MongoClient

from apiserver.generator import parse_args, percentile

if TYPE_CHECKING:
    from conftest import Process

API_KEY = "test-key-6f1d2c9a8b7e"
SUMMARY = re.compile(
    r"sent=(?P<sent>\d+) failed=(?P<failed>\d+) requests=(?P<requests>\d+) "
    r"elapsed=[\d.]+s records/s=(?P<rate>[\d.]+) p50=[\d.]+ms p99=[\d.]+ms"
)


def stack_insert(*args: str, api_key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "APISERVER_API_KEY"}
    if api_key is not None:
        env["APISERVER_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "apiserver.generator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def stored(mongodb_uri: str, collection: str) -> int:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        return client["apiserver_tests"][collection].count_documents({"_id": {"$regex": "^gen-"}})
    finally:
        client.close()


def test_single_inserts_then_batches(uvicorn_process: Process, mongodb_uri: str) -> None:
    before = stored(mongodb_uri, uvicorn_process.collection)
    single = stack_insert(
        "--count", "300", "--concurrency", "8",
        "--base-url", uvicorn_process.base_url, "--path-prefix", "/internal",
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    match = SUMMARY.search(single.stdout)
    assert match, single.stdout
    assert (int(match["sent"]), int(match["failed"]), int(match["requests"])) == (300, 0, 300)
    assert float(match["rate"]) > 0
    assert "300/300" in single.stderr  # the progress bar
    assert stored(mongodb_uri, uvicorn_process.collection) == before + 300

    batched = stack_insert(
        "--count", "1234", "--concurrency", "3", "--batch-size", "500",
        "--base-url", uvicorn_process.base_url, "--path-prefix", "/internal",
    )  # fmt: skip
    assert batched.returncode == 0, batched.stderr
    match = SUMMARY.search(batched.stdout)
    assert match, batched.stdout
    assert (int(match["sent"]), int(match["failed"]), int(match["requests"])) == (1234, 0, 3)
    assert stored(mongodb_uri, uvicorn_process.collection) == before + 300 + 1234


def test_wrong_key_fails_with_a_reason(uvicorn_process: Process) -> None:
    result = stack_insert(
        "--count", "5", "--concurrency", "2",
        "--base-url", uvicorn_process.base_url, "--path-prefix", "/internal",
        api_key="wrong-key-but-long-enough",
    )  # fmt: skip
    assert result.returncode == 1
    assert "sent=0 failed=5" in result.stdout
    assert "HTTP 401: unauthorized: wrong x-api-key" in result.stderr


def test_default_path_is_the_gateway_one(uvicorn_process: Process) -> None:
    # The service itself has no /external-insert; the Gateway rewrites it to /internal-insert.
    result = stack_insert("--count", "1", "--base-url", uvicorn_process.base_url)
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr


def test_unreachable_server_fails() -> None:
    result = stack_insert("--count", "2", "--base-url", "http://127.0.0.1:9", "--timeout", "2")
    assert result.returncode == 1
    assert "ConnectError" in result.stderr


def test_needs_an_api_key() -> None:
    result = stack_insert("--count", "1", api_key=None)
    assert result.returncode == 2
    assert "APISERVER_API_KEY" in result.stderr


@pytest.mark.parametrize(
    "args", [["--batch-size", "1001"], ["--count", "0"], ["--concurrency", "-1"]]
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(args)
    assert info.value.code == 2


def test_percentile_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0


def test_server_logs_are_json_lines(uvicorn_process: Process) -> None:
    base = uvicorn_process.base_url
    httpx.get(f"{base}/healthz", timeout=10)
    httpx.post(
        f"{base}/internal-insert",
        json={"id": "log-probe", "score": 0.25},
        headers={"x-api-key": API_KEY},
        timeout=10,
    ).raise_for_status()

    def access_lines() -> list[dict[str, Any]]:
        text = uvicorn_process.log_path.read_text()
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [e for e in entries if e["logger"] == "apiserver.access"]

    # The access line is written after the response has gone out: poll briefly for it.
    deadline = time.monotonic() + 5
    while not any(e["route"] == "/internal-insert" for e in access_lines()):
        assert time.monotonic() < deadline, "no access log line for POST /internal-insert"
        time.sleep(0.05)
    entries = [
        json.loads(line)  # every line parses as JSON
        for line in uvicorn_process.log_path.read_text().splitlines()
        if line.strip()
    ]
    access = [e for e in entries if e["logger"] == "apiserver.access"]
    assert any(e["route"] == "/healthz" and e["status"] == 200 for e in access)
    assert any(e["route"] == "/internal-insert" and e["method"] == "POST" for e in access)
    assert any(e["logger"] == "uvicorn.error" for e in entries)
