"""The apiserver as the Gateway publishes it: the rendered HTTPRoute `apiserver` of each
inventory, applied to requests the way the Gateway API specifies (path and header matching
with its precedence, URLRewrite ReplacePrefixMatch, RequestHeaderModifier), in front of the
real app on a real MongoDB wire server.

What a user of the printed `/docs` URL meets: the OpenAPI document lists only paths the
Gateway routes and every operation in it answers through the Gateway; no answer redirects to
a path outside the Gateway's routes; `GET /external-read` pages by its Link header.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from pymongo import MongoClient

from apiserver.app import create_app
from apiserver.settings import Settings

pytestmark = [pytest.mark.schemas, pytest.mark.anyio]

INVENTORIES = ("local", "staging", "production")

API_KEY = "gateway-test-key-3c9e1f"
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/internal-insert"): {"id": "through-the-gateway", "score": 0.25},
    ("post", "/internal-insert/batch"): {"records": [{"id": "batch-1", "score": 0.5}]},
    ("get", "/internal-read"): None,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _under(path: str, prefix: str) -> bool:
    """PathPrefix: whole path elements (`/abc` does not match `/abcd`)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@dataclass(frozen=True)
class Rule:
    match: dict[str, Any]
    filters: list[dict[str, Any]]

    def matches(self, path: str, headers: httpx.Headers) -> bool:
        wanted = self.match["path"]
        if wanted["type"] == "Exact":
            found = path == wanted["value"]
        else:
            found = _under(path, wanted["value"])
        return found and all(
            headers.get(header["name"]) == header["value"]
            for header in self.match.get("headers", [])
        )

    def precedence(self) -> tuple[bool, int, int]:
        """Gateway API: an exact path, then the longest prefix, then the most header matches."""
        path = self.match["path"]
        return path["type"] == "Exact", len(path["value"]), len(self.match.get("headers", []))

    def apply(self, path: str, headers: httpx.Headers) -> str:
        for item in self.filters:
            if item["type"] == "URLRewrite":
                rewrite = item["urlRewrite"]["path"]
                assert rewrite["type"] == "ReplacePrefixMatch", rewrite
                prefix = self.match["path"]["value"].rstrip("/")
                path = rewrite["replacePrefixMatch"].rstrip("/") + path[len(prefix) :] or "/"
            elif item["type"] == "RequestHeaderModifier":
                for header in item["requestHeaderModifier"].get("set", []):
                    headers[header["name"]] = header["value"]
            else:
                pytest.fail(f"the test does not know filter {item['type']}")
        return path


class GatewayTransport(httpx.AsyncBaseTransport):
    """The HTTPRoute in front of the app: 404 where no rule matches, as the Gateway answers."""

    def __init__(self, route: dict[str, Any], app: httpx.AsyncBaseTransport) -> None:
        self.rules = [
            Rule(match, rule.get("filters", []))
            for rule in route["spec"]["rules"]
            for match in rule["matches"]
        ]
        self.app = app

    def routed(self, path: str, headers: httpx.Headers) -> Rule | None:
        matching = [rule for rule in self.rules if rule.matches(path, headers)]
        return max(matching, key=Rule.precedence) if matching else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = httpx.Headers(request.headers)
        rule = self.routed(request.url.path, headers)
        if rule is None:
            return httpx.Response(404, text="no route (the Gateway)", request=request)
        path = rule.apply(request.url.path, headers)
        forwarded = httpx.Request(
            request.method,
            request.url.copy_with(path=path),
            headers=headers,
            content=await request.aread(),
        )
        return await self.app.handle_async_request(forwarded)


def apiserver_route(manifests: list[Any]) -> dict[str, Any]:
    """The HTTPRoute apiserver among an inventory's rendered manifests (conftest.Manifest)."""
    routes = [m.doc for m in manifests if m.kind == "HTTPRoute" and m.name == "apiserver"]
    assert len(routes) == 1, "one HTTPRoute apiserver"
    return routes[0]


@pytest.fixture
async def gateway(
    request: pytest.FixtureRequest,
    rendered_manifests: dict[str, list[Any]],
    mongodb_uri: str,
) -> AsyncIterator[httpx.AsyncClient]:
    inventory: str = request.param
    settings = Settings(
        api_key=API_KEY,  # type: ignore[arg-type]
        mongodb_uri=mongodb_uri,
        mongodb_database="gateway_tests",
        mongodb_collection=f"records_{uuid.uuid4().hex[:12]}",
        access_log=False,
    )
    app = create_app(settings)
    route = apiserver_route(rendered_manifests[inventory])
    async with app.router.lifespan_context(app):
        transport = GatewayTransport(route, httpx.ASGITransport(app=app))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
    mongo: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    mongo[settings.mongodb_database].drop_collection(settings.mongodb_collection)
    mongo.close()


inventories = pytest.mark.parametrize("gateway", INVENTORIES, indirect=True)


@inventories
async def test_docs_describe_and_call_what_the_gateway_routes(gateway: httpx.AsyncClient) -> None:
    page = await gateway.get("/docs")
    assert page.status_code == 200
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    spec = await gateway.get("/openapi.json")
    assert spec.status_code == 200
    paths: dict[str, dict[str, Any]] = spec.json()["paths"]
    assert set(paths) == {"/external-insert", "/external-insert/batch", "/external-read"}
    direct = {
        (method, path): operation
        for path, item in create_app(Settings(api_key=API_KEY)).openapi()["paths"].items()  # type: ignore[arg-type]
        for method, operation in item.items()
    }
    for path, item in paths.items():
        for method, operation in item.items():
            internal = next(key for key, op in direct.items() if op == operation)
            response = await gateway.request(
                method,
                path,
                json=BODIES[internal],
                headers={"x-api-key": API_KEY},
            )
            assert response.status_code == 200, f"{method.upper()} {path}: {response.text}"


@inventories
async def test_no_answer_redirects_outside_the_gateway(gateway: httpx.AsyncClient) -> None:
    key = {"x-api-key": API_KEY}
    calls = [
        ("GET", "/external-read/", None),
        ("GET", "/external-read", None),
        ("POST", "/external-insert/", {"id": "slash", "score": 0.5}),
        ("POST", "/external-insert/batch/", {"records": [{"id": "slash-b", "score": 0.5}]}),
        ("GET", "/docs/", None),
        ("GET", "/openapi.json/", None),
    ]
    for method, path, body in calls:
        response = await gateway.request(method, path, json=body, headers=key)
        location = response.headers.get("location")
        if location is not None:
            target = urlsplit(urljoin(str(response.url), location)).path
            routed = gateway._transport.routed(target, httpx.Headers())  # type: ignore[attr-defined]
            assert routed is not None, f"{method} {path} redirects to {target}, not routed"
        assert response.status_code == 200, f"{method} {path}: {response.status_code}"


@inventories
async def test_pages_follow_the_link_header_through_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    key = {"x-api-key": API_KEY}
    records = [{"id": f"p{n}", "score": 0.5} for n in range(5)]
    seeded = await gateway.post("/external-insert/batch", json={"records": records}, headers=key)
    assert seeded.status_code == 200
    seen: list[str] = []
    url: str | None = "/external-read?limit=2"
    while url is not None:
        response = await gateway.get(url, headers=key)
        assert response.status_code == 200, response.text
        seen += [item["id"] for item in response.json()]
        target = response.links.get("next", {}).get("url")
        url = None if target is None else urljoin(str(response.url), target)
        assert url is None or urlsplit(url).path == "/external-read"
    assert seen == [f"p{n}" for n in range(5)]
