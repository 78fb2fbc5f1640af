"""Every class of bad input answers 4xx with the JSON error shape, and writes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
MIB = 1024 * 1024


def record_body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


BAD_INSERTS: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("malformed json", b'{"id": "a", "score": ', JSON, 400, "malformed_json"),
    ("not json at all", b"id=a&score=0.5", JSON, 400, "malformed_json"),
    ("array instead of object", b"[1, 2]", JSON, 422, "validation_error"),
    ("id is a number", record_body(id=5, score=0.5), JSON, 422, "validation_error"),
    ("id is null", record_body(id=None, score=0.5), JSON, 422, "validation_error"),
    ("score is a string", record_body(id="a", score="0.5"), JSON, 422, "validation_error"),
    ("score is a boolean", record_body(id="a", score=True), JSON, 422, "validation_error"),
    ("score is null", record_body(id="a", score=None), JSON, 422, "validation_error"),
    ("score below 0", record_body(id="a", score=-0.001), JSON, 422, "validation_error"),
    ("score above 1", record_body(id="a", score=1.0001), JSON, 422, "validation_error"),
    ("score NaN", b'{"id": "a", "score": NaN}', JSON, 422, "validation_error"),
    ("score Infinity", b'{"id": "a", "score": Infinity}', JSON, 422, "validation_error"),
    ("score -Infinity", b'{"id": "a", "score": -Infinity}', JSON, 422, "validation_error"),
    ("empty id", record_body(id="", score=0.5), JSON, 422, "validation_error"),
    ("id of 257 characters", record_body(id="x" * 257, score=0.5), JSON, 422, "validation_error"),
    ("unknown field", record_body(id="a", score=0.5, extra=1), JSON, 422, "validation_error"),
    ("missing score", record_body(id="a"), JSON, 422, "validation_error"),
    ("empty body", b"", JSON, 422, "validation_error"),
    (
        "text/plain",
        record_body(id="a", score=0.5),
        {"content-type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    ("no content type", record_body(id="a", score=0.5), {}, 415, "unsupported_media_type"),
    (
        "body over 1 MiB",
        record_body(id="a", score=0.5, pad="x" * MIB),
        JSON,
        413,
        "content_too_large",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [case[1:] for case in BAD_INSERTS],
    ids=[case[0] for case in BAD_INSERTS],
)
async def test_bad_insert(
    service: Service, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    response = await service.client.post("/internal-insert", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert payload["error"] == code
    assert isinstance(payload["message"], str)
    assert payload["message"]
    assert "Traceback" not in response.text
    assert service.collection.count_documents({}) == 0


async def test_validation_errors_name_the_field_without_echoing_input(service: Service) -> None:
    response = await service.client.post("/internal-insert", json={"id": "a", "score": 7})
    details = response.json()["details"]
    assert details == [
        {"loc": ["body", "score"], "msg": details[0]["msg"], "type": "less_than_equal"}
    ]


async def test_streamed_body_over_1_mib_without_content_length(service: Service) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"id": "a", "score": 0.5, "pad": "'
        for _ in range(20):
            yield b"x" * 64 * 1024
        yield b'"}'

    response = await service.client.post("/internal-insert", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"] == "content_too_large"
    assert service.collection.count_documents({}) == 0


async def test_body_just_under_1_mib_is_accepted_then_validated(service: Service) -> None:
    # The size guard lets it through; the model rejects the unknown field.
    body = record_body(id="a", score=0.5, pad="x" * (MIB - 100))
    assert len(body) <= MIB
    response = await service.client.post("/internal-insert", content=body, headers=JSON)
    assert response.status_code == 422


def batch(records: list[dict[str, object]]) -> dict[str, object]:
    return {"records": records}


GOOD = {"id": "fine", "score": 0.5}
BAD_BATCHES: list[tuple[str, object, str]] = [
    (
        "1001 records",
        batch([{"id": f"r{n}", "score": 0.5} for n in range(1001)]),
        "validation_error",
    ),
    ("no records", batch([]), "validation_error"),
    ("bare list", [GOOD], "validation_error"),
    ("one bad record among good ones", batch([GOOD, {"id": "", "score": 0.5}]), "validation_error"),
    (
        "one NaN among good ones",
        batch([GOOD, {"id": "n", "score": float("nan")}]),
        "validation_error",
    ),
    ("unknown top-level field", {"records": [GOOD], "upsert": True}, "validation_error"),
    (
        "duplicate ids",
        batch([GOOD, {"id": "x", "score": 0.1}, {**GOOD, "score": 0.9}]),
        "duplicate_ids",
    ),
]


@pytest.mark.parametrize(
    ("payload", "code"), [case[1:] for case in BAD_BATCHES], ids=[case[0] for case in BAD_BATCHES]
)
async def test_bad_batch_writes_nothing(service: Service, payload: object, code: str) -> None:
    # json.dumps writes NaN as the bare token NaN, which Python's parser accepts.
    response = await service.client.post(
        "/internal-insert/batch", content=json.dumps(payload).encode(), headers=JSON
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert service.collection.count_documents({}) == 0


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 1001}, 422, "validation_error"),
        ({"limit": "ten"}, 422, "validation_error"),
        ({"id": ""}, 422, "validation_error"),
        ({"id": "x" * 257}, 422, "validation_error"),
        ({"cursor": "not a cursor!"}, 400, "invalid_cursor"),
        ({"cursor": "YQ=="}, 400, "invalid_cursor"),  # padded: not what the service issues
        ({"cursor": "_w"}, 400, "invalid_cursor"),  # decodes to invalid UTF-8
    ],
)
async def test_bad_read_parameters(
    service: Service, params: dict[str, object], status: int, code: str
) -> None:
    response = await service.client.get("/internal-read", params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


async def test_unknown_route_and_wrong_method_are_json(service: Service) -> None:
    missing = await service.client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await service.client.delete("/internal-read")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
