"""Real requests through the Gateway's listeners: the rewrites, the weighted and header
splits, the TCP route, ReferenceGrants and stack-insert, checked where the requests arrive
(the backends' access logs), not only by the answers.

The same module runs against the local Traefik data plane (``make test-dataplane``) and
against Istio's Gateway on kind (molecule/default/verify.yml); see conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
import pytest

from stacktools.traffic.client import LoadResult, request, run_load
from stacktools.traffic.stats import binomial_interval
from stacktools.traffic.target import READ, Target

# The first test also starts the local data plane (minutes: a control plane, two Ansible runs,
# dagster-webserver), and three tests run the gateway role again.
pytestmark = [pytest.mark.dataplane, pytest.mark.timeout(1800)]

RECORD_FIELDS = {"id", "score", "created_at", "updated_at"}
# The load during a route change: a routed path (weighted like the others) whose answer needs
# no database, so that a failure counted there is the Gateway's, never a slow FerretDB.
LOAD = "/docs"
SPLIT_REQUESTS = 2000
WORKERS = 16


def records_of(body: Any) -> list[dict[str, Any]]:
    """The records of a read answer: a JSON array, or (older apiservers) ``{"items": [...]}``."""
    if isinstance(body, list):
        return body
    assert isinstance(body, dict), body
    assert isinstance(body.get("items"), list), body
    return list(body["items"])


def entries_since(
    target: Target,
    marks: dict[str, Any],
    want: Callable[[list[dict[str, Any]], list[dict[str, Any]]], bool],
    timeout: float = 15.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stable, canary) access entries since ``marks``, once ``want`` holds (lines are
    written after the answer) or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        stable, canary = target.stable.since(marks["stable"]), target.canary.since(marks["canary"])
        if want(stable, canary) or time.monotonic() > deadline:
            return stable, canary
        time.sleep(0.25)


def mongo(target: Target) -> pymongo.MongoClient[dict[str, Any]]:
    """MongoDB through the Gateway's TCP listener."""
    return pymongo.MongoClient(target.mongodb_uri, serverSelectionTimeoutMS=10_000)


def marks(target: Target) -> dict[str, Any]:
    return {"stable": target.stable.mark(), "canary": target.canary.mark()}


def reads(entries: list[dict[str, Any]]) -> int:
    return sum(1 for e in entries if e["path"] == "/internal-read")


def measure_split(target: Target, count: int, headers: dict[str, str]) -> tuple[int, int]:
    """Send ``count`` reads; return how many the stable and the canary backend received."""
    before = marks(target)
    result = run_load(target.apiserver_url, READ, headers, count=count, workers=WORKERS)
    assert result.failed == 0, f"{result.failed} of {count} reads failed: {result.statuses}"
    stable, canary = entries_since(target, before, lambda s, c: reads(s) + reads(c) >= count)
    return reads(stable), reads(canary)


def test_the_target(target: Target) -> None:
    print(f"\ntraffic target: {target.description}")
    answer = request(target.apiserver_url, "GET", READ, headers=target.headers)
    assert answer.status == 200, answer.body[:300]


def test_rewrites_reach_the_apiserver_as_internal_paths(target: Target) -> None:
    record_id = f"traffic-{uuid.uuid4().hex}"
    before = marks(target)
    one = request(
        target.apiserver_url,
        "POST",
        "/external-insert",
        {"id": record_id, "score": 0.25},
        headers=target.headers,
    )
    assert one.status == 200, one.body[:300]
    assert set(one.json()) >= RECORD_FIELDS
    batch = request(
        target.apiserver_url,
        "POST",
        "/external-insert/batch",
        {"records": [{"id": f"{record_id}-{n}", "score": n / 10} for n in (1, 2)]},
        headers=target.headers,
    )
    assert batch.status == 200, batch.body[:300]
    assert batch.json()["inserted"] == 2
    read = request(
        target.apiserver_url, "GET", f"/external-read?id={record_id}", headers=target.headers
    )
    assert read.status == 200, read.body[:300]
    [record] = records_of(read.json())
    assert set(record) >= RECORD_FIELDS
    assert (record["id"], record["score"]) == (record_id, 0.25)

    wanted = {
        ("POST", "/internal-insert"),
        ("POST", "/internal-insert/batch"),
        ("GET", "/internal-read"),
    }

    def arrived(stable: list[dict[str, Any]], canary: list[dict[str, Any]]) -> bool:
        return wanted <= {(e["method"], e["path"]) for e in stable + canary}

    stable, canary = entries_since(target, before, arrived)
    seen = [(e["method"], e["path"], e["status"]) for e in stable + canary]
    assert arrived(stable, canary), f"the backends logged {seen}, expected {sorted(wanted)}"
    assert not [s for s in seen if s[1].startswith("/external")], seen


@pytest.mark.parametrize(
    "path", ["/internal-read", "/internal-insert", "/external-readers", "/nothing-here"]
)
def test_paths_outside_the_routes_are_404_at_the_gateway(target: Target, path: str) -> None:
    before = marks(target)
    answer = request(target.apiserver_url, "GET", path, headers=target.headers)
    assert answer.status == 404, f"GET {path}: {answer.status} {answer.body[:200]!r}"
    # Routed paths still arrive (no rewrite for /docs), so the logs are being read ...
    assert request(target.apiserver_url, "GET", "/docs").status == 200
    stable, canary = entries_since(
        target, before, lambda s, c: any(e["path"] == "/docs" for e in s + c)
    )
    paths = [e["path"] for e in stable + canary]
    assert "/docs" in paths
    # ... and the 404 came from the Gateway: no backend received the request.
    assert path not in paths, f"{path} reached a backend: {paths}"


PUBLIC_PATHS = ["/external-insert", "/external-insert/batch", "/external-read"]


def _header(answer: Any, name: str) -> str | None:
    """A response header by name, whatever case the Gateway wrote it in."""
    found = [v for k, v in answer.headers.items() if k.lower() == name]
    assert len(found) <= 1, f"{name} given {len(found)} times"
    return found[0] if found else None


def test_docs_through_the_gateway_describe_the_routed_paths(target: Target) -> None:
    """The printed /docs URL: the document lists the public paths, each answers through the
    Gateway, and no answer redirects (a redirect would name an internal path)."""
    spec = request(target.apiserver_url, "GET", "/openapi.json")
    assert spec.status == 200, spec.body[:300]
    assert sorted(spec.json()["paths"]) == PUBLIC_PATHS, sorted(spec.json()["paths"])
    assert request(target.apiserver_url, "GET", "/docs").status == 200
    for path in ("/external-read", "/external-read/"):
        answer = request(target.apiserver_url, "GET", f"{path}?limit=1", headers=target.headers)
        assert answer.status == 200, f"GET {path}: {answer.status} {answer.body[:200]!r}"
        assert _header(answer, "location") is None


def test_reads_page_by_the_link_header_through_the_gateway(target: Target) -> None:
    """Each page a JSON array; the next one named by an RFC 8288 Link header which, resolved
    against the URL called, stays on /external-read and continues in id order."""
    for n in range(4):
        one = request(
            target.apiserver_url,
            "POST",
            "/external-insert",
            {"id": f"page-{uuid.uuid4().hex}-{n}", "score": 0.5},
            headers=target.headers,
        )
        assert one.status == 200, one.body[:300]
    url = "/external-read?limit=1"
    seen: list[str] = []
    for _ in range(3):
        page = request(target.apiserver_url, "GET", url, headers=target.headers)
        assert page.status == 200, f"GET {url}: {page.status} {page.body[:300]!r}"
        body = page.json()
        assert isinstance(body, list), body
        assert len(body) == 1, body
        seen.append(body[0]["id"])
        link = _header(page, "link")
        assert link is not None, f"GET {url}: no Link header, though more records follow"
        reference, rel = link.split(";", 1)
        assert rel.strip() == 'rel="next"', link
        url = urllib.parse.urljoin(url, reference.strip().removeprefix("<").removesuffix(">"))
        assert urllib.parse.urlsplit(url).path == "/external-read", link
    assert seen == sorted(set(seen)), f"pages not in ascending id order: {seen}"


def test_dagster_listener_serves_the_pipeline(target: Target) -> None:
    info = request(target.dagster_url, "GET", "/server_info")
    assert info.status == 200, info.body[:300]
    assert "dagster_webserver_version" in info.json()
    query = (
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name } } } } }"
    )
    answer = request(target.dagster_url, "POST", "/graphql", {"query": query})
    assert answer.status == 200, answer.body[:300]
    nodes = answer.json()["data"]["repositoriesOrError"]["nodes"]
    jobs = {job["name"] for node in nodes for job in node["jobs"]}
    assert "export_records" in jobs, answer.json()


def test_grafana_listener_reaches_its_backend(target: Target) -> None:
    path, text = target.grafana_check
    answer = request(target.grafana_url, "GET", path)
    assert answer.status == 200, answer.body[:300]
    assert text in answer.body.decode(), answer.body[:300]


def test_weighted_split_is_within_the_binomial_interval(target: Target) -> None:
    stable, canary = measure_split(target, SPLIT_REQUESTS, target.headers)
    assert stable + canary == SPLIT_REQUESTS, (stable, canary)
    low, high = binomial_interval(SPLIT_REQUESTS, target.canary_weight / 100, 0.999)
    print(
        f"\ncanary weight {target.canary_weight}: {canary} of {SPLIT_REQUESTS} reads at the "
        f"canary ({100 * canary / SPLIT_REQUESTS:.2f} %), 99.9 % interval [{low}, {high}]"
    )
    assert low <= canary <= high


def test_ab_header_sends_everything_to_the_canary(target: Target) -> None:
    name, value = target.ab_header
    assert name, "the deployment has no A/B header (gateway_apiserver_ab_header)"
    stable, canary = measure_split(target, 300, {**target.headers, name: value})
    assert (stable, canary) == (0, 300)


def test_tcp_listener_writes_and_reads_mongodb(target: Target) -> None:
    record_id = f"tcp-{uuid.uuid4().hex}"
    now = datetime.now(UTC).replace(microsecond=0)
    with mongo(target) as client:
        records = client["uploads"]["records"]
        records.insert_one({"_id": record_id, "score": 0.5, "created_at": now, "updated_at": now})
        found = records.find_one({"_id": record_id})
    assert found is not None
    assert found["score"] == 0.5
    # Written through the TCP listener, read through the HTTP listener: one database.
    read = request(
        target.apiserver_url, "GET", f"/external-read?id={record_id}", headers=target.headers
    )
    assert read.status == 200, read.body[:300]
    [record] = records_of(read.json())
    assert set(record) >= RECORD_FIELDS
    assert (record["id"], record["score"]) == (record_id, 0.5)


def test_stack_insert_through_the_gateway_fails_no_record(target: Target) -> None:
    count = 1000
    with mongo(target) as client:
        before = client["uploads"]["records"].count_documents({})
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "stack-insert"),
                "--count",
                str(count),
                # make test-insert's defaults (COUNT=1000, CONCURRENCY=32, BATCH_SIZE=0).
                "--concurrency",
                "32",
                "--batch-size",
                "0",
                "--base-url",
                target.apiserver_url,
            ],
            env={**os.environ, "APISERVER_API_KEY": target.api_key},
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        after = client["uploads"]["records"].count_documents({})
    print(f"\nstack-insert through the Gateway: {result.stdout.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
    assert after - before == count


def _load_during(
    target: Target, change: Callable[[], subprocess.CompletedProcess[str]]
) -> tuple[LoadResult, subprocess.CompletedProcess[str], tuple[int, int]]:
    """Run a load on :data:`LOAD` while ``change`` runs (and 3 s after); at most 15 minutes.
    Returns the load, the change's result and how many load requests reached (stable, canary)."""
    stop = threading.Event()
    outcome: dict[str, LoadResult] = {}
    before = marks(target)

    def load() -> None:
        outcome["load"] = run_load(
            target.apiserver_url,
            LOAD,
            target.headers,
            seconds=900,
            workers=8,
            pause=0.05,  # at most ~160 requests/s: a steady load that leaves the role its CPU
            stop=stop,
        )

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(2)
        changed = change()
        time.sleep(3)
    finally:
        stop.set()
        thread.join()
    sent = outcome["load"].sent

    def docs(entries: list[dict[str, Any]]) -> int:
        return sum(1 for e in entries if e["path"] == LOAD)

    stable, canary = entries_since(target, before, lambda s, c: docs(s) + docs(c) >= sent)
    return outcome["load"], changed, (docs(stable), docs(canary))


def test_weight_change_with_the_role_drops_no_request(target: Target) -> None:
    """``--tags gateway`` with weight 0, then back, each under a steady load of 8 clients: every
    request answered 200, the load spanned the switch (the canary got some of it while it had
    weight), and afterwards the canary gets nothing, then its share again."""
    load, changed, (stable, canary) = _load_during(
        target, lambda: target.run_gateway_role(gateway_apiserver_canary_weight=0)
    )
    print(
        f"\nweight {target.canary_weight} -> 0 under load: {load}; stable/canary {stable}/{canary}"
    )
    try:
        assert changed.returncode == 0, changed.stdout[-3000:]
        assert load.failed == 0, (
            f"{load.failed} of {load.sent} requests failed: {load.statuses} {load.errors[:5]}"
        )
        assert stable + canary == load.sent
        assert canary > 0, "the load ended before the switch (no request reached the canary)"
        # Weight 0 sends none to the canary.
        assert measure_split(target, 400, target.headers) == (400, 0)
    finally:
        load, restored, (stable, canary) = _load_during(target, target.run_gateway_role)
    print(f"weight 0 -> {target.canary_weight} under load: {load}; stable/canary {stable}/{canary}")
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert load.failed == 0, (
        f"{load.failed} of {load.sent} requests failed: {load.statuses} {load.errors[:5]}"
    )
    assert stable + canary == load.sent
    assert canary > 0, "no request of the load reached the canary after the switch"
    stable, canary = measure_split(target, 1000, target.headers)
    low, high = binomial_interval(1000, target.canary_weight / 100, 0.999)
    assert low <= canary <= high, (stable, canary)


def _route_condition(target: Target, route: str, kind: str) -> dict[str, Any] | None:
    found = target.kube.get(
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{target.gateway_namespace}/httproutes/{route}"
    )
    for parent in found.get("status", {}).get("parents", []):
        for condition in parent.get("conditions", []):
            if condition["type"] == kind:
                return dict(condition)
    return None


def test_referencegrant_removed_then_restored(target: Target) -> None:
    grant = (
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{target.apiserver_namespace}"
        f"/referencegrants/{target.gateway_namespace}-routes"
    )
    assert target.kube.exists(grant), f"the gateway role's ReferenceGrant {grant} is missing"
    try:
        target.kube.delete(grant)
        deadline = time.monotonic() + 90
        while True:
            resolved = _route_condition(target, "apiserver", "ResolvedRefs")
            if resolved is not None and resolved["status"] == "False":
                break
            assert time.monotonic() < deadline, f"ResolvedRefs still {resolved}"
            time.sleep(1)
        assert resolved["reason"] == "RefNotPermitted", resolved
        # The spec: requests to a rule whose backends are all invalid get a 500.
        before = marks(target)
        deadline = time.monotonic() + 60
        while True:
            statuses = [
                request(target.apiserver_url, "GET", READ, headers=target.headers).status
                for _ in range(20)
            ]
            if set(statuses) == {500} or time.monotonic() > deadline:
                break
            time.sleep(1)
            before = marks(target)
        assert set(statuses) == {500}, statuses
        stable, canary = (
            target.stable.since(before["stable"]),
            target.canary.since(before["canary"]),
        )
        assert reads(stable) + reads(canary) == 0, "a request reached a backend without a grant"
    finally:
        restored = target.run_gateway_role()
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert target.kube.exists(grant)
    resolved = _route_condition(target, "apiserver", "ResolvedRefs")
    assert resolved is not None
    assert resolved["status"] == "True", resolved
    deadline = time.monotonic() + 60
    while request(target.apiserver_url, "GET", READ, headers=target.headers).status != 200:
        assert time.monotonic() < deadline, "traffic did not flow again after the grant came back"
        time.sleep(1)
    result = run_load(target.apiserver_url, READ, target.headers, count=100, workers=4)
    assert result.failed == 0, result.statuses
