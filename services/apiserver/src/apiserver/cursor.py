"""Opaque page cursors: the URL-safe base64 (unpadded) of the last id of a page."""

from __future__ import annotations

import base64
import binascii

from apiserver.models import MAX_ID_LENGTH

_MAX_TOKEN = 4 * MAX_ID_LENGTH * 4 // 3 + 4  # 256 chars of up to 4 UTF-8 bytes each


class InvalidCursorError(ValueError):
    """The cursor was not produced by this service."""


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(token: str) -> str:
    if not token or len(token) > _MAX_TOKEN:
        raise InvalidCursorError(token)
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        last_id = raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidCursorError(token) from None
    # Only canonical encodings of a valid id are accepted.
    if not 1 <= len(last_id) <= MAX_ID_LENGTH or encode_cursor(last_id) != token:
        raise InvalidCursorError(token)
    return last_id
