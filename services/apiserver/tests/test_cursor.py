"""Page cursors round-trip any id and reject anything the service did not issue."""

from __future__ import annotations

import pytest

from apiserver.cursor import InvalidCursorError, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "record_id", ["a", "id-0001", "ünïcödé ✓", "x" * 256, "🚀" * 256, "a/b?c=d&e"]
)
def test_round_trip(record_id: str) -> None:
    token = encode_cursor(record_id)
    assert "=" not in token
    assert all(c.isalnum() or c in "-_" for c in token)
    assert decode_cursor(token) == record_id


@pytest.mark.parametrize(
    "token",
    ["", "!!!!", "YQ==", "YQ=", "a", "Y Q", "_w", "/w", encode_cursor("x" * 257), "A" * 5000],
)
def test_rejects_garbage(token: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(token)
