"""Log lines are single JSON objects carrying the extra fields."""

from __future__ import annotations

import json
import logging
import sys

from apiserver.logs import JsonFormatter


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    record = logging.makeLogRecord(
        {"name": "apiserver.access", "levelname": "INFO", "msg": "request %s", "args": ("x",)}
    )
    record.route = "/internal-read"
    record.status = 200
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "request x"
    assert entry["logger"] == "apiserver.access"
    assert (entry["route"], entry["status"]) == ("/internal-read", 200)
    assert entry["ts"].endswith("+00:00")

    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.getLogger("t").makeRecord("t", logging.ERROR, "f", 1, "failed", (), None)
        failing.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failing))
    assert "ValueError: boom" in entry["exc"]
    assert "\n" not in JsonFormatter().format(failing)
