"""The pipeline image for real: built by the set-up step (make prepare) from the committed
Dockerfile and run the way the cluster runs it. The pod comes from the values the dagster role
renders for the local inventory, mapped as the chart's user-code Deployment maps them
(stacktools.cluster.dagster_chart); the `docker run` settings from that pod
(stacktools.cluster.podspec). The code server gets the chart's `dagster api grpc` command; an
export runs in the image as a run pod would (`dagster job execute`, with the code server's
env, Secrets, volumes and security settings, which the chart passes on to launched runs) and
writes the Delta table into the folder that stands for the PVC; the host reads it back."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pymongo import MongoClient

from pipeline.schedules import JOB_NAME
from stacktools.builds import docker, images
from stacktools.cluster import dagster_chart, podspec
from stacktools.cluster.render import Rendered, render
from stacktools.servers.container import Container, bridge_gateway
from stacktools.servers.ferretdb import FerretDB

pytestmark = pytest.mark.images

INVENTORY = "local"  # what `make deploy` deploys
SERVICE = "pipeline"
ROLE = "dagster"
VALUES = "dagster.values.yaml"  # <release>.values.yaml: what the role passes
RECORDS = 2_000
DATABASE = "uploads"  # PIPELINE_MONGODB_DATABASE of the rendered values (checked below)


@pytest.fixture(scope="module")
def image() -> images.Image:
    built = images.image(SERVICE)
    print(f"\n{SERVICE} image: {built.describe()}")
    return built


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(INVENTORY, tmp_path_factory.mktemp("rendered"), roles=(ROLE,))


@pytest.fixture(scope="module")
def values(rendered: Rendered) -> dict[str, Any]:
    return rendered.values(ROLE, VALUES)


@dataclass
class Deployed:
    """FerretDB with records, the code server's settings, the Secrets' test values, and the
    folders standing for the PVC and the pod's scratch volumes."""

    ferretdb: FerretDB
    settings: podspec.RunSettings
    secrets: dict[str, dict[str, str]]
    claims: dict[str, Path]
    scratch: Path
    delta_uri: str

    @property
    def delta_table(self) -> Path:
        (folder,) = self.claims.values()
        return folder / self.delta_uri.rsplit("/", 1)[1]


def secret_values(rendered: Rendered, mongodb_uri: str) -> dict[str, dict[str, str]]:
    """Test values for the keys of the Secrets the role renders for Dagster: FerretDB's URI,
    a fresh random value for every other key (passwords)."""
    wanted = {"PIPELINE_MONGODB_URI": mongodb_uri}
    return {
        doc["metadata"]["name"]: {key: wanted.get(key, uuid.uuid4().hex) for key in doc["data"]}
        for doc in rendered.manifests(ROLE)
        if doc["kind"] == "Secret"
    }


def seed(uri: str, count: int) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    documents: list[dict[str, Any]] = [
        {"_id": f"img-{n:06d}", "score": random.random(), "created_at": now, "updated_at": now}
        for n in range(count)
    ]
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    with client:
        client[DATABASE]["records"].insert_many(documents)


@pytest.fixture(scope="module")
def deployed(
    image: images.Image,
    rendered: Rendered,
    values: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:
    folder = tmp_path_factory.mktemp("pipeline")
    ferretdb = FerretDB(folder / "ferretdb", host=bridge_gateway())
    ferretdb.start()
    try:
        seed(ferretdb.uri, RECORDS)
        pod = dagster_chart.user_code_pod(values, SERVICE, image.ref)
        (claim,) = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        ]
        claims = {claim: folder / "claims" / claim}
        secrets = secret_values(rendered, ferretdb.uri)
        scratch = folder / "volumes"
        settings = podspec.run_settings(
            pod, dagster_chart.CHART_NAME, secrets=secrets, scratch=scratch, claims=claims
        )
        mount = next(
            m["mountPath"]
            for m in pod["containers"][0]["volumeMounts"]
            if m["name"] in {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        )
        delta_uri = settings.env["PIPELINE_DELTA_URI"]
        assert delta_uri.startswith(mount + "/"), (delta_uri, mount)
        assert settings.env["PIPELINE_MONGODB_DATABASE"] == DATABASE
        yield Deployed(ferretdb, settings, secrets, claims, scratch, delta_uri)
    finally:
        ferretdb.stop()


@pytest.fixture(scope="module")
def code_server(image: images.Image, deployed: Deployed) -> Iterator[Container]:
    container = Container(image.ref, deployed.settings, "pipeline-code")
    try:
        container.start(timeout=300)
        yield container
    finally:
        container.stop()


def test_the_chart_runs_the_image_built_from_the_committed_files(
    image: images.Image, values: dict[str, Any]
) -> None:
    deployment = dagster_chart.user_deployment(values, SERVICE)
    assert deployment["image"]["tag"] == image.tag, (
        f"the role deploys tag {deployment['image']['tag']} (working tree) but the set-up "
        f"step built {image.ref} from HEAD: commit the changes to services/{SERVICE} or uv.lock"
    )
    inspected = docker.inspect_image(image.ref)
    assert inspected is not None
    assert inspected["Config"]["User"] == "10001:10001"
    print(f"{image.ref}: {image.size / 1e6:.0f} MB")


def test_code_server_answers_the_grpc_health_check(
    code_server: Container, deployed: Deployed
) -> None:
    args = list(deployed.settings.args)
    assert args[:3] == ["dagster", "api", "grpc"]
    probe = deployed.settings.probes["readiness"]
    # Ready as the kubelet decides it: a pass before failureThreshold probes in a row fail.
    result = code_server.wait_for_probe("readiness", probe.period * probe.failure_threshold)
    assert result.passed, result.detail
    print(f"grpc-health-check passed in {result.seconds:.1f} s (probe timeout {probe.timeout:g} s)")
    assert probe.command[:4] == ("dagster", "api", "grpc-health-check", "-p")
    # What the chart's run workers (K8sRunLauncher) need from this image, and what only the
    # tests need (polars) stays out.
    modules = code_server.exec(
        ["python", "-c", "import dagster_postgres, dagster_k8s, importlib.util as u; "
         "print(u.find_spec('polars'))"]
    )  # fmt: skip
    assert modules.returncode == 0, modules.stderr
    assert modules.stdout.strip() == "None"


def test_an_export_run_in_the_image_writes_the_delta_table(
    image: images.Image, deployed: Deployed, values: dict[str, Any], code_server: Container
) -> None:
    args = ["dagster", "job", "execute", "-m", "pipeline.definitions", "-j", JOB_NAME]
    pod = dagster_chart.run_pod(values, SERVICE, image.ref, args)
    config_maps = {
        dagster_chart.instance_config_map("dagster"): {
            dagster_chart.INSTANCE_KEY: dagster_chart.instance_yaml(values)
        }
    }
    settings = podspec.run_settings(
        pod,
        dagster_chart.CHART_NAME,
        secrets=deployed.secrets,
        scratch=deployed.scratch / "run",
        claims=deployed.claims,
        config_maps=config_maps,
    )
    run = Container(image.ref, settings, "pipeline-run")
    try:
        run.start(timeout=60)
        exit_code = run.wait(timeout=600)
        log = run.logs()
    finally:
        run.stop()
    assert exit_code == 0, log[-4000:]
    assert "RUN_SUCCESS" in log, log[-4000:]
    table = deployed.delta_table
    written = pl.read_delta(str(table)).sort("id")
    client: MongoClient[dict[str, Any]] = MongoClient(
        deployed.ferretdb.uri, serverSelectionTimeoutMS=10_000
    )
    with client:
        documents: list[dict[str, Any]] = sorted(
            client[DATABASE]["records"].find(), key=lambda d: str(d["_id"])
        )
    assert written["id"].to_list() == [d["_id"] for d in documents]
    assert written["score"].to_list() == [d["score"] for d in documents]
    stamps = written["updated_at"].dt.replace_time_zone(None).to_list()
    assert stamps == [d["updated_at"] for d in documents]
    assert written["exported_at"].null_count() == 0
    owners = {path.stat().st_uid for path in table.rglob("*")}
    assert owners == {deployed.settings.user[0]}, "written by the pod's user"


def test_code_server_stops_within_the_grace_period(image: images.Image, deployed: Deployed) -> None:
    container = Container(image.ref, deployed.settings, "pipeline-stop")
    try:
        container.start(timeout=300)
        stopped = container.terminate()
    finally:
        container.stop()
    grace = deployed.settings.grace_seconds
    print(f"pipeline code server: exit {stopped.code} {stopped.seconds:.2f} s after SIGTERM")
    assert stopped.seconds < grace, f"still running {stopped.seconds:.1f} s after SIGTERM"
