"""L4.5 charts: every Helm release of the roles, rendered by Helm from the pinned chart with
exactly what the role's Helm task passes (tests/render: values combined with
``*_helm_extra_values``, flags), for every inventory; linted with ``--strict``; every object
validated strictly against the Kubernetes 1.36 schemas and the CRDs' schemas; rendered alike by
Helm 3 and Helm 4; and checked against what the roles expect of the charts' objects (the
Services the Gateway routes to, the Secrets the charts read, the labels Prometheus selects,
the image of Dagster's user code, the names the teardown deletes).

The Helm clients and the charts come from the set-up step (stacktools.builds.helm / .charts).
Dagster's results are indicative where the chart is the stand-in of shared/charts (see
shared/charts/SOURCES.md): its test ids say ``indicative`` and the session header says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_job_name_from_run_id
from dagster_k8s.launcher import K8sRunLauncher
from kube_schemas import CLUSTER_SCOPED_CORE, crds, document_errors
from kubernetes.client import ApiClient

from stacktools.builds import charts, helm
from stacktools.builds.controlplane import KUBERNETES_VERSION
from stacktools.cluster.crds import PINNED, crds_root, load_crds

pytestmark = pytest.mark.charts

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = ("local", "staging", "production")
RELEASES = tuple(pinned.release for pinned in charts.PINNED)
KUBE_VERSION = KUBERNETES_VERSION.removeprefix("v")
MAJORS = (3, 4)
# The Kubernetes definitions the Dagster charts' values schemas refer to by URL (unreachable
# offline), resolved to kubernetes-validate's local copy for `helm lint`.
REMOTE_DEFINITIONS = (
    "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/_definitions.json",
    "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json",
)


def release_id(release: str) -> str:
    """Test id of a release; Dagster's says when its results are only indicative."""
    if release == "dagster" and charts.chart("dagster").stand_in:
        return "dagster-indicative"
    return release


def _ids(release: str) -> str:
    try:
        return release_id(release)
    except charts.ChartError:
        return release


@dataclass(frozen=True)
class Rendered:
    """What ``helm template`` made of one release for one inventory."""

    inventory: str
    release: str
    namespace: str
    objects: list[dict[str, Any]]

    def find(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.release} [{self.inventory}]: {kind} {name}: {len(found)}"
        return found[0]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


@pytest.fixture(scope="session")
def helm_clients() -> dict[int, Path]:
    """The Helm 3 and Helm 4 binaries of the set-up step (fails naming `make prepare`)."""
    return {major: helm.binary(major) for major in MAJORS}


@pytest.fixture(scope="session")
def chart_files() -> dict[str, charts.ChartFile]:
    return charts.charts()


def template_command(helm_binary: Path, chart: Path, release: Any, values: Path) -> list[str]:
    """``helm template`` with what kubernetes.core.helm passes to ``helm upgrade -i``."""
    command = [
        str(helm_binary),
        "template",
        release.name,
        str(chart),
        "--namespace",
        release.namespace,
        "--values",
        str(values),
        "--kube-version",
        KUBE_VERSION,
    ]
    if not release.skip_crds:
        command.append("--include-crds")
    if release.skip_schema_validation:
        command.append("--skip-schema-validation")
    if release.disable_hook:
        command.append("--no-hooks")
    return command


def with_namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Namespaced objects without a namespace get the release's, as Helm does at install."""
    for obj in objects:
        group = obj.get("apiVersion", "").rpartition("/")[0]
        crd = crds().get((group, obj.get("kind", "")))
        namespaced = (
            crd["spec"]["scope"] == "Namespaced"
            if crd
            else obj.get("kind") not in CLUSTER_SCOPED_CORE
        )
        if namespaced:
            obj.setdefault("metadata", {}).setdefault("namespace", namespace)
    return objects


@pytest.fixture(scope="session")
def templated(
    rendered: dict[str, Path],
    rendered_releases: dict[str, dict[str, Any]],
    helm_clients: dict[int, Path],
    chart_files: dict[str, charts.ChartFile],
) -> dict[tuple[int, str, str], Rendered]:
    """(Helm major, inventory, release) -> the chart's objects for the role's values."""
    jobs = []
    for inventory in INVENTORIES:
        for name, release in rendered_releases[inventory].items():
            values = rendered[inventory] / release.role / "helm" / f"{name}.values.yaml"
            for major, binary in helm_clients.items():
                command = template_command(binary, chart_files[name].path, release, values)
                jobs.append(((major, inventory, name), release.namespace, command))

    def run(job: tuple[tuple[int, str, str], str, list[str]]) -> tuple[Any, str, Any]:
        key, namespace, command = job
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        return key, namespace, result

    found: dict[tuple[int, str, str], Rendered] = {}
    failures = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for key, namespace, result in pool.map(run, jobs):
            if result.returncode != 0:
                failures.append(f"Helm {key[0]} {key[2]} [inventories/{key[1]}]: {result.stderr}")
                continue
            objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
            found[key] = Rendered(key[1], key[2], namespace, with_namespace(objects, namespace))
    assert not failures, "helm template failed:\n" + "\n".join(failures)
    return found


def test_the_roles_install_the_pinned_charts(
    rendered_releases: dict[str, dict[str, Any]], chart_files: dict[str, charts.ChartFile]
) -> None:
    for inventory in INVENTORIES:
        releases = rendered_releases[inventory]
        assert sorted(releases) == sorted(RELEASES), inventory
        for name, release in releases.items():
            pinned = charts.BY_RELEASE[name]
            assert (release.chart_ref, release.chart_version) == (pinned.name, pinned.version)
            assert release.chart_repo_url == pinned.repo_url
            assert chart_files[name].name == pinned.name


@pytest.mark.parametrize("release", RELEASES, ids=_ids)
@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_object_of_the_release_is_valid(
    templated: dict[tuple[int, str, str], Rendered], inventory: str, release: str
) -> None:
    rendered = templated[(3, inventory, release)]
    assert rendered.objects, f"{release} renders nothing"
    errors = [
        f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {error}"
        for obj in rendered.objects
        for error in document_errors(obj)
    ]
    assert not errors, f"{release} [inventories/{inventory}]:\n" + "\n".join(errors)


def trimmed(value: Any) -> Any:
    """``value`` with whitespace at line ends and trailing blank lines of strings removed: Helm 4
    keeps a template's trailing whitespace-only line inside a multi-line string (the Dagster
    chart's workspace.yaml) where Helm 3 drops it; nothing else may differ."""
    if isinstance(value, dict):
        return {key: trimmed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trimmed(item) for item in value]
    if isinstance(value, str) and "\n" in value:
        return "\n".join(line.rstrip() for line in value.splitlines()).rstrip("\n")
    return value


@pytest.mark.parametrize("release", RELEASES, ids=_ids)
@pytest.mark.parametrize("inventory", INVENTORIES)
def test_helm_3_and_helm_4_render_the_same_objects(
    templated: dict[tuple[int, str, str], Rendered], inventory: str, release: str
) -> None:
    def key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"

    helm3 = {key(obj): trimmed(obj) for obj in templated[(3, inventory, release)].objects}
    helm4 = {key(obj): trimmed(obj) for obj in templated[(4, inventory, release)].objects}
    assert sorted(helm3) == sorted(helm4)
    different = [name for name in helm3 if helm3[name] != helm4[name]]
    assert not different, different


@cache
def lintable_chart(chart: Path, workdir: Path) -> Path:
    """The chart itself, or, when its values schemas load Kubernetes definitions by URL (the
    Dagster charts), an unpacked copy whose schemas load kubernetes-validate's local copy of
    the Kubernetes 1.36 definitions instead (`$defs` also published as `definitions`, the
    pointer form these schemas use). Nothing else of the chart changes."""
    with tarfile.open(chart) as archive:
        schemas = [m.name for m in archive if m.name.endswith("values.schema.json")]
        texts = [archive.extractfile(name).read().decode() for name in schemas]  # type: ignore[union-attr]
    if not any(url in text for url in REMOTE_DEFINITIONS for text in texts):
        return chart
    target = workdir / chart.name.removesuffix(".tgz")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(chart) as archive:
        archive.extractall(target, filter="data")
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads(
        (
            folder
            / f"v{KUBERNETES_VERSION.removeprefix('v').rsplit('.', 1)[0]}.0-local"
            / "_definitions.json"
        ).read_text()
    )
    definitions["definitions"] = definitions["$defs"]
    local = target / "kubernetes-definitions.json"
    local.write_text(json.dumps(definitions))
    for name in schemas:
        path = target / name
        text = path.read_text()
        for url in REMOTE_DEFINITIONS:
            text = text.replace(url, local.as_uri())
        path.write_text(text)
    (top,) = {name.split("/")[0] for name in schemas}
    return target / top


@pytest.mark.parametrize("release", RELEASES, ids=_ids)
@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("major", MAJORS, ids=lambda major: f"helm{major}")
def test_the_chart_lints_strictly_with_the_roles_values(  # noqa: PLR0917 (fixtures)
    rendered: dict[str, Path],
    rendered_releases: dict[str, dict[str, Any]],
    helm_clients: dict[int, Path],
    chart_files: dict[str, charts.ChartFile],
    tmp_path_factory: pytest.TempPathFactory,
    major: int,
    inventory: str,
    release: str,
) -> None:
    spec = rendered_releases[inventory][release]
    values = rendered[inventory] / spec.role / "helm" / f"{release}.values.yaml"
    chart = lintable_chart(chart_files[release].path, tmp_path_factory.getbasetemp() / "lint")
    command = [
        str(helm_clients[major]),
        "lint",
        "--strict",
        str(chart),
        "--namespace",
        spec.namespace,
        "--values",
        str(values),
        "--kube-version",
        KUBE_VERSION,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout + result.stderr


# What the roles expect of the charts' objects ---------------------------------------------
def role_objects(rendered_manifests: dict[str, list[Any]], inventory: str) -> list[dict[str, Any]]:
    return [manifest.doc for manifest in rendered_manifests[inventory]]


def pods_of(rendered: Rendered) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment, StatefulSet and DaemonSet."""
    for obj in rendered.objects:
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}:
            yield obj, obj["spec"]["template"]


def selected(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects ``labels``;
    ``{}`` selects everything, ``None`` nothing."""
    if selector is None:
        return False
    tests = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, _: key in labels,
        "DoesNotExist": lambda key, _: key not in labels,
    }
    return selector.get("matchLabels", {}).items() <= labels.items() and all(
        tests[item["operator"]](item["key"], item.get("values") or [])
        for item in selector.get("matchExpressions", [])
    )


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    """The number of a container port given by number or by name."""
    for item in container.get("ports", []):
        if port in (item["containerPort"], item.get("name")):
            return int(item["containerPort"])
    return None


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_gateway_routes_to_chart_services_that_reach_a_ready_checked_port(
    templated: dict[tuple[int, str, str], Rendered],
    rendered_manifests: dict[str, list[Any]],
    inventory: str,
) -> None:
    """Each backend of an HTTPRoute that no role renders (Grafana, the Dagster webserver) is a
    Service of a chart, on that port, selecting pods whose container listens on the Service's
    targetPort and is readiness-probed on that same port."""
    ours = {
        (obj["metadata"]["namespace"], obj["metadata"]["name"])
        for obj in role_objects(rendered_manifests, inventory)
        if obj["kind"] == "Service"
    }
    releases = [templated[(3, inventory, release)] for release in RELEASES]
    checked = []
    for route in role_objects(rendered_manifests, inventory):
        if route["kind"] != "HTTPRoute":
            continue
        for rule in route["spec"]["rules"]:
            for ref in rule.get("backendRefs", []):
                namespace = ref.get("namespace", route["metadata"]["namespace"])
                if (namespace, ref["name"]) in ours:
                    continue
                backend = f"{namespace}/{ref['name']}:{ref['port']}"
                where = f"HTTPRoute {route['metadata']['name']} -> {backend}"
                services = [
                    (rendered, svc)
                    for rendered in releases
                    for svc in rendered.of_kind("Service")
                    if (svc["metadata"]["namespace"], svc["metadata"]["name"])
                    == (namespace, ref["name"])
                ]
                assert len(services) == 1, f"{where}: no chart renders that Service"
                rendered, service = services[0]
                (port,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]] or [
                    None
                ]
                assert port is not None, (
                    f"{where}: the Service has ports {service['spec']['ports']}"
                )
                pods = [
                    pod
                    for _, pod in pods_of(rendered)
                    if selected(
                        {"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"]
                    )
                ]
                assert pods, f"{where}: the Service selects no pod of {rendered.release}"
                for pod in pods:
                    target = port.get("targetPort", port["port"])
                    listening = [c for c in pod["spec"]["containers"] if container_port(c, target)]
                    assert listening, f"{where}: no container listens on {target}"
                    for container in listening:
                        probe = container.get("readinessProbe", {}).get("httpGet")
                        assert probe, f"{where}: {container['name']} has no HTTP readiness probe"
                        assert container_port(container, probe["port"]) == container_port(
                            container, target
                        ), f"{where}: probed on {probe['port']}, serving on {target}"
                checked.append(where)
    assert len(checked) == 2, checked  # Grafana and the Dagster webserver


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_dagster_webserver_serves_on_an_unprivileged_port_as_a_non_root_user(
    templated: dict[tuple[int, str, str], Rendered], inventory: str
) -> None:
    """UID 10001 with every capability dropped cannot bind a port below 1024 where the runtime
    does not allow unprivileged low ports (containerd 1.7, CRI-O): the webserver's port must be
    1024 or above, the same for its container, its Service and its probe."""
    rendered = templated[(3, inventory, "dagster")]
    service = rendered.find("Service", "dagster-dagster-webserver")
    deployment = rendered.find("Deployment", "dagster-dagster-webserver")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    (port,) = service["spec"]["ports"]
    listening = container_port(container, port.get("targetPort", port["port"]))
    assert listening is not None, container["ports"]
    assert listening >= 1024, container["ports"]
    assert container_port(container, container["readinessProbe"]["httpGet"]["port"]) == listening


def monitors(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_prometheus_selects_the_roles_monitors_and_rules(
    templated: dict[tuple[int, str, str], Rendered],
    rendered_manifests: dict[str, list[Any]],
    inventory: str,
) -> None:
    (prometheus,) = templated[(3, inventory, "kube-prometheus-stack")].of_kind("Prometheus")
    spec = prometheus["spec"]
    ours = role_objects(rendered_manifests, inventory)
    namespaces = {
        obj["metadata"]["name"]: obj["metadata"].get("labels", {})
        for obj in ours
        if obj["kind"] == "Namespace"
    }
    pairs = {
        "ServiceMonitor": ("serviceMonitorSelector", "serviceMonitorNamespaceSelector"),
        "PodMonitor": ("podMonitorSelector", "podMonitorNamespaceSelector"),
        "PrometheusRule": ("ruleSelector", "ruleNamespaceSelector"),
    }
    for kind, (selector, namespace_selector) in pairs.items():
        found = monitors(ours, kind)
        assert found, f"the roles render no {kind}"
        for obj in found:
            name = f"{kind} {obj['metadata']['namespace']}/{obj['metadata']['name']}"
            assert selected(spec.get(selector), obj["metadata"].get("labels", {})), (
                f"{name}: Prometheus' {selector} {spec.get(selector)} does not select it"
            )
            namespace = obj["metadata"]["namespace"]
            # A nil namespace selector means Prometheus' own namespace only.
            in_scope = (
                selected(
                    spec[namespace_selector],
                    namespaces[namespace] | {"kubernetes.io/metadata.name": namespace},
                )
                if spec.get(namespace_selector) is not None
                else namespace == prometheus["metadata"]["namespace"]
            )
            assert in_scope, f"{name}: outside {namespace_selector} {spec.get(namespace_selector)}"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_grafana_reads_the_roles_admin_secret_and_finds_its_dashboards(
    templated: dict[tuple[int, str, str], Rendered],
    rendered_manifests: dict[str, list[Any]],
    inventory: str,
) -> None:
    rendered = templated[(3, inventory, "kube-prometheus-stack")]
    grafana = rendered.find("Deployment", "kube-prometheus-stack-grafana")
    ours = role_objects(rendered_manifests, inventory)
    secrets = {
        (obj["metadata"]["namespace"], obj["metadata"]["name"]): set(obj.get("data", {}))
        | set(obj.get("stringData", {}))
        for obj in ours
        if obj["kind"] == "Secret"
    }
    containers = grafana["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for container in containers for item in container.get("env", [])}
    for variable in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        keys = secrets.get((rendered.namespace, ref["name"]))
        assert keys is not None, f"{variable}: Secret {ref['name']} is not one the role renders"
        assert ref["key"] in keys, (
            f"{variable}: the role's Secret {ref['name']} has no {ref['key']}"
        )
    sidecar = next(c for c in containers if c["name"] == "grafana-sc-dashboard")
    sidecar_env = {item["name"]: item.get("value") for item in sidecar["env"]}
    dashboards = [
        obj
        for obj in ours
        if obj["kind"] == "ConfigMap"
        and obj["metadata"].get("labels", {}).get(sidecar_env["LABEL"])
        == sidecar_env["LABEL_VALUE"]
    ]
    assert len(dashboards) == 2, "the sidecar finds neither dashboard of the monitoring role"
    assert sidecar_env.get("NAMESPACE") == "ALL"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_postgresql_secret_holds_exactly_the_keys_the_chart_reads(
    templated: dict[tuple[int, str, str], Rendered],
    rendered_manifests: dict[str, list[Any]],
    inventory: str,
) -> None:
    """The role generates the Secret; Dagster and the PostgreSQL subchart read it. Every key
    they read must be there, and the Secret must not claim keys nobody reads."""
    rendered = templated[(3, inventory, "dagster")]
    (secret,) = [
        obj
        for obj in role_objects(rendered_manifests, inventory)
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == "dagster-postgresql"
    ]
    read: set[str] = set()
    for _, pod in pods_of(rendered):
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "dagster-postgresql":
                    read.add(ref["key"])
            for source in container.get("envFrom", []):
                assert source.get("secretRef", {}).get("name") != "dagster-postgresql"
        for volume in pod["spec"].get("volumes", []):
            assert volume.get("secret", {}).get("secretName") != "dagster-postgresql"
    assert read, "nothing reads the PostgreSQL Secret"
    assert set(secret["data"]) == read, (
        f"the Secret has {sorted(secret['data'])}, read: {sorted(read)}"
    )
    assert not any(obj["kind"] == "Secret" for obj in rendered.objects), (
        "the chart renders a Secret"
    )


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_dagster_runs_the_pipeline_image_and_its_run_pods_run_restricted(
    templated: dict[tuple[int, str, str], Rendered],
    registries: dict[str, str],
    ansible: Any,
    tmp_path: Path,
    inventory: str,
) -> None:
    """The code location runs the pipeline image at the tag playbooks/kind.yml builds; and the
    Job that Dagster launches for a run, built here by dagster-k8s (the version of the pipeline
    image) from the chart's instance ConfigMap and the code location's container context exactly
    as its K8sRunLauncher does, is a valid Job whose pod meets the restricted Pod Security level
    of the namespace's warning (it does not inherit the code location's security settings)."""
    rendered = templated[(3, inventory, "dagster")]
    code = rendered.find("Deployment", "dagster-dagster-user-deployments-pipeline")
    (container,) = code["spec"]["template"]["spec"]["containers"]
    tag = ansible.run(
        "ansible",
        "localhost",
        "-m",
        "debug",
        "-a",
        "msg={{ lookup('gateway_api_stack.showcase.stack_image_tag', 'pipeline') }}",
    )
    assert tag.returncode == 0, tag.stdout + tag.stderr
    prefix = f"{registries[inventory]}/" if registries[inventory] else ""
    assert container["image"] == f"{prefix}gateway-api-stack/pipeline:{tag.stdout.split()[-1]}"
    context = json.loads(
        next(
            e["value"]
            for e in container["env"]
            if e["name"] == "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"
        )
    )
    instance = yaml.safe_load(
        rendered.find("ConfigMap", "dagster-instance")["data"]["dagster.yaml"]
    )
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    kubeconfig = tmp_path / "kubeconfig"  # the launcher loads one; nothing is contacted
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "unused"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    config = instance["run_launcher"]["config"] | {
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    launcher = K8sRunLauncher(**config)
    origin = JobPythonOrigin(
        "records_export",
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=ModuleCodePointer("pipeline.definitions", "defs", None),
            container_image=container["image"],
            container_context=context,
        ),
    )
    run = DagsterRun(
        job_name="records_export",
        run_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        job_code_origin=origin,
    )
    run_context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    job = construct_dagster_k8s_job(
        job_config=run_context.get_k8s_job_config(
            job_image=container["image"], run_launcher=launcher
        ),
        args=["dagster", "api", "execute_run", "{}"],
        job_name=get_job_name_from_run_id(run.run_id),
        pod_name=get_job_name_from_run_id(run.run_id),
        component="run_worker",
        user_defined_k8s_config=run_context.run_k8s_config,
        labels={},
        env_vars=[],
    )
    manifest = ApiClient().sanitize_for_serialization(job) | {
        "apiVersion": "batch/v1",
        "kind": "Job",
    }
    manifest["metadata"]["namespace"] = rendered.namespace
    assert document_errors(manifest) == []
    pod = manifest["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["image"] == container["image"]
    assert worker["imagePullPolicy"] == container["imagePullPolicy"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    assert worker["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    # A read-only root filesystem still needs its scratch folders (/tmp and Dagster's local
    # instance in DAGSTER_HOME), the same as the code location's.
    code_mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert code_mounts >= {"/tmp", "/opt/dagster/dagster_home"}, code_mounts
    assert {m["mountPath"] for m in worker["volumeMounts"]} >= code_mounts


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_teardown_deletes_what_the_operators_create_by_the_names_the_charts_give_them(
    templated: dict[tuple[int, str, str], Rendered], inventory: str
) -> None:
    """Running operators create objects outside their releases, which Helm's uninstall does not
    know: the prometheus-operator its kubelet Service in kube-system, the MongoDB operator its
    ValidatingWebhookConfiguration. The roles' teardowns delete them by name; those names must
    be the ones the charts configure the operators with."""
    defaults = {
        role: yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
        for role in ("monitoring", "mongodb")
    }
    operator = templated[(3, inventory, "kube-prometheus-stack")].find(
        "Deployment", "kube-prometheus-stack-operator"
    )
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    release = defaults["monitoring"]["monitoring_release_name"]
    assert f"--kubelet-service=kube-system/{release}-kubelet" in args
    teardown = (REPO / "roles/monitoring/tasks/teardown.yml").read_text()
    assert 'name: "{{ monitoring_release_name }}-kubelet"' in teardown
    mongodb = templated[(3, inventory, "mongodb-kubernetes")].find(
        "Deployment", "mongodb-kubernetes-operator"
    )
    env = {
        e["name"]: e.get("value")
        for e in mongodb["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MDB_WEBHOOK_NAME"] == defaults["mongodb"]["mongodb_operator_webhook_name"]
    assert (
        'name: "{{ mongodb_operator_webhook_name }}"'
        in (REPO / "roles/mongodb/tasks/teardown.yml").read_text()
    )


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_mongodb_operator_watches_only_what_the_role_applies_the_crd_of(
    templated: dict[tuple[int, str, str], Rendered],
    rendered_releases: dict[str, dict[str, Any]],
    inventory: str,
) -> None:
    """One way for the CRDs, as the monitoring role does: the role applies the CRD the operator
    needs, server-side, before every upgrade; the chart's own crds/ (installed once, never
    upgraded by Helm) is skipped. So the operator must watch nothing else."""
    release = rendered_releases[inventory]["mongodb-kubernetes"]
    assert release.skip_crds is True
    assert rendered_releases[inventory]["kube-prometheus-stack"].skip_crds is True
    operator = templated[(3, inventory, "mongodb-kubernetes")].find(
        "Deployment", "mongodb-kubernetes-operator"
    )
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    watched = [
        arg.removeprefix("-watch-resource=") for arg in args if arg.startswith("-watch-resource=")
    ]
    assert watched == ["mongodbcommunity"], args
    assert not templated[(3, inventory, "mongodb-kubernetes")].of_kind("CustomResourceDefinition")
    # What the role applies instead (crd.yml, from the source crd_manifests.yml reads, which must
    # hold the MongoDBCommunity CRD): the CRD of exactly the resource the operator watches.
    source = yaml.safe_load((REPO / "roles/mongodb/tasks/crd_manifests.yml").read_text())
    assert "'spec.names.kind', 'equalto', 'MongoDBCommunity'" in json.dumps(source)
    mongodb = [file for file in PINNED if file.path.startswith("mongodb/")]
    (crd,) = load_crds(crds_root(), mongodb).values()
    assert crd["spec"]["names"]["kind"] == "MongoDBCommunity"
    assert crd["spec"]["names"]["plural"] == watched[0]


def test_the_dagster_release_installs_where_the_schema_urls_are_out_of_reach(
    rendered: dict[str, Path],
    rendered_releases: dict[str, dict[str, Any]],
    helm_clients: dict[int, Path],
    chart_files: dict[str, charts.ChartFile],
) -> None:
    """Offline, as on an air-gapped cluster (every HTTPS request goes to a proxy that is not
    there): the chart's values schemas cannot load the Kubernetes definitions they refer to by
    URL, so the install works only because the role skips the schema check (the schema is
    checked with local definitions by the lint test above)."""
    offline = {
        **os.environ,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    for inventory in INVENTORIES:
        release = rendered_releases[inventory]["dagster"]
        assert release.skip_schema_validation is True
        values = rendered[inventory] / "dagster" / "helm" / "dagster.values.yaml"
        for major, binary in helm_clients.items():
            command = template_command(binary, chart_files["dagster"].path, release, values)
            with_role_flags = subprocess.run(
                command, capture_output=True, text=True, env=offline, timeout=300, check=False
            )
            assert with_role_flags.returncode == 0, f"Helm {major}: {with_role_flags.stderr}"
            checked = [arg for arg in command if arg != "--skip-schema-validation"]
            without = subprocess.run(
                checked, capture_output=True, text=True, env=offline, timeout=300, check=False
            )
            assert without.returncode != 0, f"Helm {major} loaded the remote schemas offline"
            assert "_definitions.json" in without.stderr, without.stderr


PREFLIGHT_FAILURE = "helm {helm} and kubernetes.core {core}"
COLLECTION_VERSION = "gateway_api_stack.showcase.stack_collection_version"


def bundled_only(tmp_path: Path) -> dict[str, str]:
    """Environment in which Ansible loads the kubernetes.core bundled with the pinned
    ``ansible`` package (6.2.0), whatever a Galaxy install put into collections/installed:
    the collections path is an empty folder and the checkout seen as this collection
    (collections/ansible_collections/gateway_api_stack: the roles' FQCN lookups), and the
    virtualenv is still scanned."""
    empty = tmp_path / "no-collections"
    empty.mkdir(exist_ok=True)
    return {"ANSIBLE_COLLECTIONS_PATH": os.pathsep.join((str(empty), str(REPO / "collections")))}


def run_site_with_helm(ansible: Any, helm_binary: Path, tmp_path: Path) -> str:
    """site.yml's preflight with this helm first on PATH and the bundled kubernetes.core; no
    cluster is needed to get past the tool checks (a missing kubeconfig stops it right after
    them)."""
    result = ansible.run(
        "ansible-playbook",
        "-i",
        "inventories/local",
        "playbooks/site.yml",
        "-e",
        f"stack_kubeconfig={tmp_path / 'no-kubeconfig'}",
        PATH=f"{helm_binary.parent}{os.pathsep}{ansible.bin_dir}{os.pathsep}{os.environ['PATH']}",
        **bundled_only(tmp_path),
    )
    assert result.returncode != 0
    return " ".join(result.stdout.split())


def test_the_preflight_refuses_helm_4_with_a_kubernetes_core_older_than_6_4(
    ansible: Any, helm_clients: dict[int, Path], tmp_path: Path
) -> None:
    core = ansible.run(
        "ansible", "localhost", "-m", "debug", "-a",
        f"msg={{{{ lookup('{COLLECTION_VERSION}', 'kubernetes.core').values() | join(' ') }}}}",
        **bundled_only(tmp_path),
    )  # fmt: skip
    assert core.returncode == 0, core.stdout + core.stderr
    version, path = core.stdout.split()[-2:]
    assert "site-packages" in Path(path).parts, core.stdout
    assert tuple(int(part) for part in version.split(".")) < (6, 4, 0), (
        f"the bundled kubernetes.core {version} supports Helm 4: check_collections' limits"
        " and the preflight's minimums are out of date"
    )
    output = run_site_with_helm(ansible, helm_clients[4], tmp_path)
    helm4 = helm.binary_version(helm_clients[4])
    assert PREFLIGHT_FAILURE.format(helm=helm4, core=version) in output
    assert "Helm 4 needs kubernetes.core >= 6.4.0" in output
    assert "stack_kubeconfig points to" not in output  # it stopped before the cluster checks


def test_the_preflight_accepts_helm_3_with_the_bundled_kubernetes_core(
    ansible: Any, helm_clients: dict[int, Path], tmp_path: Path
) -> None:
    output = run_site_with_helm(ansible, helm_clients[3], tmp_path)
    assert "cannot work together:" not in output
    assert (
        f"stack_kubeconfig points to {tmp_path / 'no-kubeconfig'}, which does not exist" in output
    )
