"""The served process sends each answer's head and body in one write
(apiserver.coalesce.JoinedWritesProtocol), without holding anything back: an interim
``100 Continue`` still goes out before the body arrives, and closing sends what is pending."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from conftest import Process

API_KEY = "test-key-6f1d2c9a8b7e"


def _write_calls(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("/proc/<pid>/io has no syscw")


def test_head_and_body_leave_in_one_write(uvicorn_process: Process) -> None:
    pid = uvicorn_process.pid
    with httpx.Client(base_url=uvicorn_process.base_url) as client:
        client.get("/healthz")
        before = _write_calls(pid)
        for _ in range(200):
            assert client.get("/healthz").json() == {"status": "ok"}
        calls = _write_calls(pid) - before
    # One write for the answer and one for its access-log line; uvicorn alone makes three
    # (head, body, log). A little room for the driver's background monitoring.
    assert calls <= 200 * 2 + 20, f"{calls} write calls for 200 answers"


def _connect(process: Process) -> socket.socket:
    host, port = process.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_until(sock: socket.socket, marker: bytes, deadline_s: float) -> bytes:
    data = b""
    sock.settimeout(deadline_s)
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_continue_is_sent_before_the_body_arrives(uvicorn_process: Process) -> None:
    body = b'{"id": "joined-continue", "score": 0.5}'
    with _connect(uvicorn_process) as sock:
        sock.sendall(
            b"POST /internal-insert HTTP/1.1\r\nhost: apiserver\r\n"
            b"content-type: application/json\r\nexpect: 100-continue\r\n"
            + f"x-api-key: {API_KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        )
        began = time.monotonic()
        interim = _read_until(sock, b"\r\n\r\n", deadline_s=5)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        assert time.monotonic() - began < 2
        sock.sendall(body)
        answer = _read_until(sock, b'"score":0.5', deadline_s=10)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert b'"id":"joined-continue"' in answer


def test_pipelined_answers_in_order_and_close_sends_everything(
    uvicorn_process: Process,
) -> None:
    with _connect(uvicorn_process) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nhost: apiserver\r\n\r\n"
            b"GET /nothing-here HTTP/1.1\r\nhost: apiserver\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nhost: apiserver\r\nconnection: close\r\n\r\n"
        )
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(65536):  # until the server closes
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"404", b"200"], data
    assert data.endswith(b'{"status":"ok"}'), data
