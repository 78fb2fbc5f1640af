"""Keyset pagination: the body is a JSON array of records (what clients of the original demo
iterate); the next page is announced as ``Link: <...>; rel="next"`` (RFC 8288), a reference
relative to the URL called. Pages in id order, no record twice, none that existed at start
lost, even while other clients insert between page fetches."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

if TYPE_CHECKING:
    import httpx
    from conftest import Service


def next_url(response: httpx.Response) -> str | None:
    """The rel="next" target resolved against the URL called, as RFC 8288 says; None on the
    last page."""
    target = response.links.get("next", {}).get("url")
    return None if target is None else urljoin(str(response.url), target)


async def read_all(service: Service, url: str) -> tuple[list[str], int]:
    """Every id, following rel="next" from ``url``; and the number of pages."""
    seen: list[str] = []
    pages = 0
    next_page: str | None = url
    while next_page is not None:
        response = await service.client.get(next_page)
        assert response.status_code == 200, response.text
        body: Any = response.json()
        assert isinstance(body, list)
        seen += [item["id"] for item in body]
        pages += 1
        next_page = next_url(response)
    return seen, pages


pytestmark = pytest.mark.anyio


async def seed(service: Service, ids: list[str]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        response = await service.client.post(
            "/internal-insert/batch",
            json={"records": [{"id": rid, "score": 0.5} for rid in chunk]},
        )
        assert response.status_code == 200
        assert response.json()["failed"] == 0


async def test_pages_cover_the_collection_exactly_once(service: Service) -> None:
    ids = [f"id-{n:04d}" for n in range(250)]
    await seed(service, ids)
    seen, pages = await read_all(service, "/internal-read?limit=100")
    assert pages == 3
    assert seen == sorted(ids)


async def test_link_header_is_rfc8288_next_relative_to_the_url_called(service: Service) -> None:
    await seed(service, [f"r{n:03d}" for n in range(5)])
    first = await service.client.get("/internal-read", params={"limit": 2})
    assert [item["id"] for item in first.json()] == ["r000", "r001"]
    link = first.headers["link"]
    target, rel = link.split(";", 1)
    assert rel.strip() == 'rel="next"'
    assert target.startswith("<?")
    assert target.endswith(">")
    query = parse_qs(target[2:-1])
    assert query["limit"] == ["2"]
    assert set(query) == {"limit", "cursor"}
    # Resolved against whatever path the client called (through the Gateway, the public one).
    resolved = urljoin("https://api.example.com/external-read?limit=2", target[1:-1])
    assert urlsplit(resolved).path == "/external-read"
    second = await service.client.get(urljoin(str(first.url), target[1:-1]))
    assert [item["id"] for item in second.json()] == ["r002", "r003"]
    last = await service.client.get(next_url(second) or "")
    assert [item["id"] for item in last.json()] == ["r004"]
    assert "link" not in last.headers


async def test_old_clients_iterate_the_array(service: Service) -> None:
    """The original demo's clients: GET /internal-read, iterate the records."""
    await seed(service, ["a", "b"])
    response = await service.client.get("/internal-read")
    assert [(item["id"], item["score"]) for item in response.json()] == [("a", 0.5), ("b", 0.5)]
    assert "link" not in response.headers


async def test_default_limit_is_100(service: Service) -> None:
    await seed(service, [f"r{n:03d}" for n in range(120)])
    response = await service.client.get("/internal-read")
    assert len(response.json()) == 100
    assert "limit=100" in response.headers["link"]
    rest = await service.client.get(next_url(response) or "")
    assert len(rest.json()) == 20


async def test_limit_1000_is_allowed(service: Service) -> None:
    await seed(service, [f"r{n:04d}" for n in range(1001)])
    response = await service.client.get("/internal-read", params={"limit": 1000})
    assert len(response.json()) == 1000
    rest = await service.client.get(next_url(response) or "")
    assert [item["id"] for item in rest.json()] == ["r1000"]


async def test_concurrent_inserts_between_pages(service: Service) -> None:
    rng = random.Random(7)
    initial = [f"{rng.randrange(10**6):06d}-start" for _ in range(300)]
    initial = sorted(set(initial))
    await seed(service, initial)

    async def writer(stop: asyncio.Event) -> int:
        written = 0
        while not stop.is_set():
            # New ids land before and after the cursor; existing ids are updated in place.
            rid = f"{rng.randrange(10**6):06d}-new" if written % 3 else rng.choice(initial)
            response = await service.client.post(
                "/internal-insert", json={"id": rid, "score": rng.random()}
            )
            assert response.status_code == 200
            written += 1
            await asyncio.sleep(0)
        return written

    stop = asyncio.Event()
    writers = [asyncio.create_task(writer(stop)) for _ in range(4)]
    seen: list[str] = []
    next_page: str | None = "/internal-read?limit=37"
    while next_page is not None:
        response = await service.client.get(next_page)
        assert response.status_code == 200
        seen += [item["id"] for item in response.json()]
        next_page = next_url(response)
        await asyncio.sleep(0.01)  # let the writers run between pages
    stop.set()
    written = sum(await asyncio.gather(*writers))
    assert written > 0
    assert len(seen) == len(set(seen)), "a record appeared on two pages"
    assert seen == sorted(seen)
    assert set(initial) <= set(seen), "a record that existed at the start was skipped"
