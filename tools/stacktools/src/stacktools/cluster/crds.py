"""The upstream CRDs the manifest tests validate against, and their schemas as JSON Schemas.

Where the CRDs come from (:func:`crds_root`):

1. ``CRDS_DIR`` when set (an error if it is not a folder);
2. ``<repo>/../shared/crds``, the offline copy next to the repository, when it exists;
3. otherwise the pinned upstream files, downloaded once into ``<cache>/crds`` with the same
   layout and checked against their git blob SHA-1s (the table of shared/crds/SOURCES.md);
   a clone of a repository on this machine takes them from the ``shared/crds`` beside it.

:func:`custom_resource_schema` turns a CRD version's ``openAPIV3Schema`` (a Kubernetes
*structural* schema, OpenAPI v3.0 dialect) into a JSON Schema (draft 2020-12) that rejects
what the API server would reject without running CEL: wrong types, enum values, patterns,
bounds, missing required fields and unknown fields (pruned or refused by the server unless
``x-kubernetes-preserve-unknown-fields``). ``x-kubernetes-validations`` (CEL) rules are *not*
evaluated here; a live API server checks them (the control-plane tests).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacktools.builds.gobuild import file_lock
from stacktools.paths import cache_dir, crds_dir, origin_shared_dir

GATEWAY_API_VERSION = "v1.5.1"
PROMETHEUS_OPERATOR_VERSION = "v0.93.0"
MONGODB_KUBERNETES_VERSION = "1.10.0"
ISTIO_VERSION = "1.30.3"

_RAW = "https://raw.githubusercontent.com"
_GATEWAY = f"{_RAW}/kubernetes-sigs/gateway-api/{GATEWAY_API_VERSION}/config/crd/experimental"
_PROMETHEUS = (
    f"{_RAW}/prometheus-operator/prometheus-operator/{PROMETHEUS_OPERATOR_VERSION}"
    "/example/prometheus-operator-crd-full"
)
_MONGODB = f"{_RAW}/mongodb/mongodb-kubernetes/{MONGODB_KUBERNETES_VERSION}/config/crd/bases"
_ISTIO = f"{_RAW}/istio/istio/{ISTIO_VERSION}/manifests/charts/base/files"


@dataclass(frozen=True)
class CrdFile:
    """One pinned upstream file: its place under the CRDs folder, its URL, its git blob SHA-1."""

    path: str
    url: str
    blob_sha1: str


def _gateway(name: str, sha1: str) -> CrdFile:
    folder = f"gateway-api-{GATEWAY_API_VERSION}/experimental"
    return CrdFile(f"{folder}/{name}", f"{_GATEWAY}/{name}", sha1)


# The project targets Gateway API v1.5.1, experimental channel (TCPRoute v1alpha2 lives only
# there); the folders of other versions under shared/crds are deliberately not read.
PINNED: tuple[CrdFile, ...] = (
    _gateway(
        "gateway.networking.k8s.io_backendtlspolicies.yaml",
        "8c48eea69ad5688e2fb71fb53992d2bc46a1ebca",
    ),
    _gateway(
        "gateway.networking.k8s.io_gatewayclasses.yaml", "cdf8336d629ea440e6dd889272f98489d17bfaef"
    ),
    _gateway("gateway.networking.k8s.io_gateways.yaml", "3f67ac434ec68a6aefe4591868fba8983aa1881f"),
    _gateway(
        "gateway.networking.k8s.io_grpcroutes.yaml", "8ad22055baa5ac3ec7fee74d23b4b9b08011f560"
    ),
    _gateway(
        "gateway.networking.k8s.io_httproutes.yaml", "b7711700275821e5125fb340ada85c2d7519fa8b"
    ),
    _gateway(
        "gateway.networking.k8s.io_listenersets.yaml", "da3bbafaec8349378ca1e12af40a22feaa41ee86"
    ),
    _gateway(
        "gateway.networking.k8s.io_referencegrants.yaml",
        "0ef79a79ccabf4ed42159bc80594c28e5cfa585f",
    ),
    _gateway(
        "gateway.networking.k8s.io_tcproutes.yaml", "1a4022645598d565b35a9d60c0a4cb42806dfb6a"
    ),
    _gateway(
        "gateway.networking.k8s.io_tlsroutes.yaml", "dae92f9bec22dd2a9bdad1d11623bd46571951f8"
    ),
    _gateway(
        "gateway.networking.k8s.io_udproutes.yaml", "849df554945ed3c96964dff486d22ea7c3e5b686"
    ),
    _gateway(
        "gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml",
        "f53a2b9eca680df8c6c98fc8a415a92503bafa04",
    ),
    _gateway(
        "gateway.networking.x-k8s.io_xmeshes.yaml", "7eb4f24cb430d75f7b5c90ff2af5df348e00566a"
    ),
    CrdFile(
        "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
        f"{_PROMETHEUS}/monitoring.coreos.com_podmonitors.yaml",
        "5c1bde3d4a5f3131fd6c148ab933193b867173f2",
    ),
    CrdFile(
        "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
        f"{_PROMETHEUS}/monitoring.coreos.com_prometheusrules.yaml",
        "b423c3225b18489ca7bbc5091f38f7003c4bf3fc",
    ),
    CrdFile(
        "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
        f"{_PROMETHEUS}/monitoring.coreos.com_servicemonitors.yaml",
        "f5736255990a0e152851fadb55f84d6fd0f91d87",
    ),
    CrdFile(
        "mongodb/mongodbcommunity.mongodb.com_mongodbcommunity.yaml",
        f"{_MONGODB}/mongodbcommunity.mongodb.com_mongodbcommunity.yaml",
        "d7eacf0901e526ab1754223c92f0bc556124ec29",
    ),
    CrdFile(
        "istio/crd-all.gen.yaml",
        f"{_ISTIO}/crd-all.gen.yaml",
        "7318e07ffdaca66dbbfdc4e27e93da74eabdd3a2",
    ),
)


# All ten prometheus-operator CRDs of v0.93.1, the appVersion of kube-prometheus-stack 88.5.3: the
# chart's objects (Prometheus, Alertmanager, monitors, rules) are validated against them and the
# control-plane scenario's monitoring role applies them. Byte-identical to the `crds` subchart of
# that chart's tag (the files shared/crds/prometheus-operator-v0.93.1 was copied from).
KUBE_PROMETHEUS_STACK_VERSION = "88.5.3"
_KPS_CRDS = (
    f"{_RAW}/prometheus-community/helm-charts/kube-prometheus-stack-{KUBE_PROMETHEUS_STACK_VERSION}"
    "/charts/kube-prometheus-stack/charts/crds/crds"
)
PROMETHEUS_OPERATOR_CHART_VERSION = "v0.93.1"
PROMETHEUS_OPERATOR_ALL: tuple[CrdFile, ...] = tuple(
    CrdFile(
        f"prometheus-operator-{PROMETHEUS_OPERATOR_CHART_VERSION}/{name}",
        f"{_KPS_CRDS}/{name}",
        sha1,
    )
    for name, sha1 in (
        ("crd-alertmanagerconfigs.yaml", "c2d707abc55b968ea41fed7d52b1a01404d7af84"),
        ("crd-alertmanagers.yaml", "a89d32d2e856631848a22311b20b732676cf160e"),
        ("crd-podmonitors.yaml", "8f666377536e800ed9f2388a738ccecd2ba1df57"),
        ("crd-probes.yaml", "f6baf158efc7a9480ddd88a3b4aaf03a3d091bd3"),
        ("crd-prometheusagents.yaml", "ed3aad853c647ce0ca2c85f17be510a6c5e07771"),
        ("crd-prometheuses.yaml", "5f6d7ae5b7c5199e92d3ff8b8505c18205eadf4d"),
        ("crd-prometheusrules.yaml", "51df89caf29d114aff4a16601394fee366c325b3"),
        ("crd-scrapeconfigs.yaml", "03579a2bb2801354df41ce6dec21c6b14afd374a"),
        ("crd-servicemonitors.yaml", "97cc8d9b4cb2642928aa26065d02f5859c202d33"),
        ("crd-thanosrulers.yaml", "2953a01da32dce1400d0d9e271c2518be4a51291"),
    )
)


# The bundle the istiod of the tests needs (it watches TCPRoute v1 only; see builds.istiod),
# in `gateway-api/` as in shared/crds; read by the istiod tests alone.
ISTIOD_GATEWAY_API_VERSION = "v1.6.1"
_ISTIOD_GATEWAY = (
    f"{_RAW}/kubernetes-sigs/gateway-api/{ISTIOD_GATEWAY_API_VERSION}/config/crd/experimental"
)
ISTIOD_BUNDLE: tuple[CrdFile, ...] = tuple(
    CrdFile(f"gateway-api/experimental/{name}", f"{_ISTIOD_GATEWAY}/{name}", sha1)
    for name, sha1 in (
        (
            "gateway.networking.k8s.io_backendtlspolicies.yaml",
            "7c389651fc53ce25bf49399c9e009b3ec638ee48",
        ),
        (
            "gateway.networking.k8s.io_gatewayclasses.yaml",
            "05b72c167eccc0132088a2e7558ada0b4a3db679",
        ),
        ("gateway.networking.k8s.io_gateways.yaml", "066f6093e8c0df49e23d6c7498776c2edb678273"),
        ("gateway.networking.k8s.io_grpcroutes.yaml", "8287ecf0c8d318e46f685ba92752a8e955b23262"),
        ("gateway.networking.k8s.io_httproutes.yaml", "28cc90471fb4fc55299eb533b4b3050069d47ecb"),
        ("gateway.networking.k8s.io_listenersets.yaml", "021c03601d2b576bc192a13d55e2fb8620fc40f5"),
        (
            "gateway.networking.k8s.io_referencegrants.yaml",
            "5428cca0ca329e782faf23250b9adc1351c5c909",
        ),
        ("gateway.networking.k8s.io_tcproutes.yaml", "23515e298f352fc32fee5b5e40ae01a14380a814"),
        ("gateway.networking.k8s.io_tlsroutes.yaml", "a8169c7d1aad10a91208c43f8b6a38afc57bbc20"),
        ("gateway.networking.k8s.io_udproutes.yaml", "f6a826d67139b7b8f08ac858d8a9703eb692999d"),
        ("gateway.networking.x-k8s.io_xbackends.yaml", "5670a8e6fde122ee7770738b5917179880a98f85"),
        (
            "gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml",
            "6eafcd648a449faa49540544959fefcff8e89943",
        ),
        ("gateway.networking.x-k8s.io_xmeshes.yaml", "41f0c766f90690493af8323c0a05e7692d81e294"),
    )
)


class CrdLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading a plain ``=`` as the string "=", as YAML 1.2 parsers (the
    API server, Helm) do: the AlertmanagerConfig CRD lists it among its enum values, and YAML 1.1
    (PyYAML) resolves it to a "value" tag that the safe loader refuses."""


def _plain_string(loader: CrdLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


CrdLoader.add_constructor("tag:yaml.org,2002:value", _plain_string)


class CrdError(RuntimeError):
    """The CRDs cannot be found, downloaded or used; the message says which and why."""


def git_blob_sha1(data: bytes) -> str:
    """The SHA-1 git gives a file with this content (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def local_mirrors() -> list[Path]:
    """``shared/crds`` beside the repository this clone was made from, when its ``origin`` is
    a folder on this machine (``git clone /work/main /tmp/ci``): files are still verified."""
    mirror = origin_shared_dir("crds")
    return [mirror] if mirror is not None else []


def download(
    dest: Path,
    files: Iterable[CrdFile] = PINNED,
    timeout: float = 60.0,
    mirrors: Iterable[Path] = (),
) -> Path:
    """Fetch every missing file of ``files`` into ``dest``, verified; returns ``dest``.

    A file is taken from the first of ``mirrors`` holding it with the pinned blob SHA-1, else
    from its URL."""
    mirrors = list(mirrors)
    with file_lock(dest.parent / f".{dest.name}.lock"):
        for item in files:
            target = dest / item.path
            if target.is_file() and git_blob_sha1(target.read_bytes()) == item.blob_sha1:
                continue
            data = _from_mirrors(item, mirrors)
            if data is None:
                data = _fetch(item, timeout)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(target)
    return dest


def _from_mirrors(item: CrdFile, mirrors: list[Path]) -> bytes | None:
    for mirror in mirrors:
        copy = mirror / item.path
        if copy.is_file():
            data = copy.read_bytes()
            if git_blob_sha1(data) == item.blob_sha1:
                return data
    return None


def _fetch(item: CrdFile, timeout: float) -> bytes:
    if not item.url.startswith("https://"):
        raise CrdError(f"refusing to download {item.url}: not https")
    try:
        with urllib.request.urlopen(item.url, timeout=timeout) as response:  # noqa: S310
            data: bytes = response.read()
    except OSError as exc:
        raise CrdError(f"cannot download {item.url}: {exc}") from exc
    actual = git_blob_sha1(data)
    if actual != item.blob_sha1:
        raise CrdError(f"{item.url} has git blob {actual}, expected {item.blob_sha1}")
    return data


def crds_root() -> Path:
    """The CRDs folder: CRDS_DIR, else ../shared/crds, else the pinned download (cached)."""
    try:
        return crds_dir()
    except FileNotFoundError:
        if os.environ.get("CRDS_DIR"):
            raise
    files = (*PINNED, *ISTIOD_BUNDLE, *PROMETHEUS_OPERATOR_ALL)
    return download(cache_dir() / "crds", files, mirrors=local_mirrors())


def load_crds(
    root: Path, files: Iterable[CrdFile] = PINNED
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every CustomResourceDefinition in ``files`` under ``root``, by (group, kind)."""
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for item in files:
        path = root / item.path
        if not path.is_file():
            raise CrdError(f"{path} is missing; the CRDs folder must be laid out like shared/crds")
        for doc in yaml.load_all(path.read_text(), Loader=CrdLoader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names = doc["spec"]["names"]
                index[(doc["spec"]["group"], names["kind"])] = doc
    return index


def served_version(crd: Mapping[str, Any], version: str) -> Mapping[str, Any]:
    """The CRD's entry for ``version``; CrdError if it is absent or not served."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            if not entry.get("served", False):
                raise CrdError(f"{crd['metadata']['name']} does not serve version {version}")
            return entry  # type: ignore[no-any-return]
    known = [entry["name"] for entry in crd["spec"]["versions"]]
    raise CrdError(f"{crd['metadata']['name']} has no version {version} (it has {known})")


def custom_resource_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a custom resource of ``crd`` at ``version``.

    The root ``metadata`` keeps the CRD's own schema (``type: object``, open): callers
    validate metadata against ObjectMeta themselves, as the API server does.
    """
    schema = served_version(crd, version)["schema"]["openAPIV3Schema"]
    converted = to_json_schema(schema)
    properties = converted.setdefault("properties", {})
    properties["metadata"] = {"type": "object"}
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    return converted


# Keys of an OpenAPI v3 schema that carry no validation (or none we can check here).
_NOT_VALIDATING = frozenset(
    {"description", "example", "externalDocs", "default", "title", "format", "nullable"}
)
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties"})
_SUBSCHEMAS = frozenset({"items", "additionalProperties", "not"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})


def to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Translate one structural-schema node (recursively) into JSON Schema 2020-12."""
    return _kubernetes_extensions(node, _translated_keywords(node))


def _translated_keywords(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in _NOT_VALIDATING:
            continue
        if key in _SUBSCHEMA_MAPS:
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMAS and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [to_json_schema(sub) for sub in value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            # OpenAPI 3.0: a flag on minimum/maximum; JSON Schema: the bound itself.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value and bound in node:
                out[key] = node[bound]
        else:
            out[key] = value
    if "exclusiveMinimum" in out:
        out.pop("minimum", None)
    if "exclusiveMaximum" in out:
        out.pop("maximum", None)
    return out


def _kubernetes_extensions(node: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        embedded = out.setdefault("properties", {})
        for field in ("apiVersion", "kind"):
            embedded.setdefault(field, {"type": "string"})
        embedded.setdefault("metadata", {"type": "object"})
    if (
        node.get("type") == "object"
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        # Structural schemas prune unknown fields; a strict apply refuses them.
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        int_or_string = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        out = {"allOf": [out, int_or_string]} if out else int_or_string
    return out
