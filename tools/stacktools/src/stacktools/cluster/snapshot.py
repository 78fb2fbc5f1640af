"""Every object a cluster holds, by identity, to prove what a playbook leaves behind.

``take`` lists every resource the API server can list (core and every API group, at its
preferred version, cluster-scoped and in every namespace) and records each object as
``group/kind namespace/name``. ``compare`` tells which objects appeared and which vanished
between two snapshots, less what may legitimately remain: CustomResourceDefinitions (teardown
keeps CRDs unless asked, because other workloads may use them) and the APIService entries the
API server registers on its own for the groups of those CRDs.

Events are left out: they are records of what happened (and expire), not state.

Command line (used by the Molecule ``controlplane`` scenario)::

    python -m stacktools snapshot take --kubeconfig KUBECONFIG --out before.json
    python -m stacktools snapshot compare before.json after.json   # JSON; exit 1 on leftovers
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

IGNORED_KINDS = frozenset({("", "Event"), ("events.k8s.io", "Event")})
CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
APISERVICE = ("apiregistration.k8s.io", "APIService")


class SnapshotError(RuntimeError):
    """The cluster cannot be read; the message says which request failed."""


@dataclass(frozen=True, order=True)
class ObjectId:
    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        kind = f"{self.group}/{self.kind}" if self.group else self.kind
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{kind} {where}"


class Client:
    """GET requests to the API server of a kubeconfig (certificates or token embedded)."""

    def __init__(self, kubeconfig: Path, context: str | None = None) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        name = context or config.get("current-context")
        contexts = {item["name"]: item["context"] for item in config.get("contexts", [])}
        if name not in contexts:
            raise SnapshotError(f"{kubeconfig} has no context {name!r}")
        clusters = {item["name"]: item["cluster"] for item in config.get("clusters", [])}
        users = {item["name"]: item["user"] for item in config.get("users", [])}
        cluster, user = clusters[contexts[name]["cluster"]], users[contexts[name]["user"]]
        self.server = str(cluster["server"]).rstrip("/")
        self._tmp = tempfile.TemporaryDirectory(prefix="stack-snapshot-")
        self.context = ssl.create_default_context(
            cafile=self._file(cluster, "certificate-authority")
        )
        self.headers = {"Accept": "application/json"}
        if "token" in user:
            self.headers["Authorization"] = f"Bearer {user['token']}"
        else:
            cert = self._file(user, "client-certificate")
            if cert is None:
                raise SnapshotError(f"{kubeconfig}: user of context {name!r} has no credentials")
            self.context.load_cert_chain(cert, self._file(user, "client-key"))

    def _file(self, section: dict[str, Any], field: str) -> str | None:
        if f"{field}-data" in section:
            path = Path(self._tmp.name) / field
            path.write_bytes(base64.b64decode(section[f"{field}-data"]))
            return str(path)
        return str(section[field]) if field in section else None

    def get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.server + path, headers=self.headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:  # noqa: S310
                data: dict[str, Any] = json.load(response)
                return data
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SnapshotError(f"GET {self.server}{path} failed: {exc}") from exc


def _group_versions(client: Client) -> Iterator[tuple[str, str]]:
    """(group, "/api/v1" or "/apis/<group>/<preferred version>") for every served group."""
    yield "", "/api/v1"
    for group in client.get("/apis").get("groups", []):
        yield group["name"], f"/apis/{group['preferredVersion']['groupVersion']}"


def take(client: Client) -> list[ObjectId]:
    """Every listable object of the cluster (Events excepted), sorted."""
    found: set[ObjectId] = set()
    for group, base in _group_versions(client):
        for resource in client.get(base).get("resources", []):
            if "/" in resource["name"] or "list" not in resource.get("verbs", []):
                continue  # a subresource, or a kind that cannot be listed (reviews, bindings)
            if (group, resource["kind"]) in IGNORED_KINDS:
                continue
            listing = client.get(f"{base}/{resource['name']}")
            for item in listing.get("items", []):
                meta = item.get("metadata", {})
                found.add(
                    ObjectId(group, resource["kind"], meta.get("namespace", ""), meta["name"])
                )
    return sorted(found)


def _crd_groups(objects: Iterable[ObjectId]) -> set[str]:
    """Groups of the CRDs among ``objects`` (a CRD is named <plural>.<group>)."""
    return {obj.name.split(".", 1)[1] for obj in objects if (obj.group, obj.kind) == CRD}


def compare(before: Sequence[ObjectId], after: Sequence[ObjectId]) -> dict[str, list[str]]:
    """What appeared (less the CRDs teardown keeps and their APIServices) and what vanished."""
    old, new = set(before), set(after)
    appeared = new - old
    kept_crds = {obj for obj in appeared if (obj.group, obj.kind) == CRD}
    groups = _crd_groups(new)
    kept_apis = {
        obj
        for obj in appeared
        if (obj.group, obj.kind) == APISERVICE and obj.name.split(".", 1)[-1] in groups
    }
    return {
        "left_behind": [str(obj) for obj in sorted(appeared - kept_crds - kept_apis)],
        "vanished": [str(obj) for obj in sorted(old - new)],
        "kept_crds": [obj.name for obj in sorted(kept_crds)],
        "kept_apiservices": [obj.name for obj in sorted(kept_apis)],
    }


def save(objects: Sequence[ObjectId], path: Path) -> None:
    rows = [[obj.group, obj.kind, obj.namespace, obj.name] for obj in objects]
    path.write_text(json.dumps(rows, indent=0) + "\n")


def load(path: Path) -> list[ObjectId]:
    return [ObjectId(*row) for row in json.loads(path.read_text())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools snapshot",
        description="Record every object of a cluster; compare two records.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    take_cmd = commands.add_parser("take", help="record every object of the cluster")
    take_cmd.add_argument("--kubeconfig", type=Path, required=True)
    take_cmd.add_argument("--context", default=None)
    take_cmd.add_argument("--out", type=Path, required=True)
    compare_cmd = commands.add_parser(
        "compare", help="print what appeared and vanished (JSON); exit 1 unless nothing did"
    )
    compare_cmd.add_argument("before", type=Path)
    compare_cmd.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "take":
            objects = take(Client(args.kubeconfig, args.context))
            save(objects, args.out)
            print(f"{len(objects)} objects recorded in {args.out}", file=sys.stderr)
            return 0
        result = compare(load(args.before), load(args.after))
    except (SnapshotError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 1 if result["left_behind"] or result["vanished"] else 0


if __name__ == "__main__":
    sys.exit(main())
