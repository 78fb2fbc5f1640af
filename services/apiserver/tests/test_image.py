"""The apiserver image for real: built by the set-up step (make prepare) from the committed
Dockerfile, and run the way the apiserver Deployment of the local inventory runs it. Every
`docker run` setting (user, read-only root filesystem, capabilities, no-new-privileges, the
/tmp emptyDir, resources, env from the Secrets' keys, ports, probes, grace period) is derived
from the manifests the role renders (stacktools.cluster.podspec); the MongoDB is FerretDB on
Docker's bridge address, which only this machine and its containers reach."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stacktools.builds import docker, images
from stacktools.cluster import podspec
from stacktools.cluster.render import Rendered, render
from stacktools.servers.container import Container, bridge_gateway
from stacktools.servers.ferretdb import FerretDB

pytestmark = pytest.mark.images

INVENTORY = "local"  # what `make deploy` deploys
SERVICE = "apiserver"
# What the image may add to its base: the service's virtual environment and nothing else
# (measured 52 MB; a build tool, a cache or the sources in the runtime stage would show here).
MAX_ADDED_MB = 70


@pytest.fixture(scope="module")
def image() -> images.Image:
    built = images.image(SERVICE)
    print(f"\n{SERVICE} image: {built.describe()}")
    return built


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(INVENTORY, tmp_path_factory.mktemp("rendered"), roles=(SERVICE,))


@pytest.fixture(scope="module")
def deployment(rendered: Rendered) -> dict[str, Any]:
    return rendered.find(SERVICE, "Deployment", SERVICE)


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


@dataclass
class Running:
    container: Container
    ferretdb: FerretDB
    api_key: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.container.url("http"), headers={"x-api-key": self.api_key}, timeout=30
        )


def start(
    image: images.Image, rendered: Rendered, deployment: dict[str, Any], folder: Path
) -> Running:
    """FerretDB on the bridge, then the container with the Deployment's settings; the test
    values of the Secrets' keys are a fresh API key and that FerretDB's URI."""
    ferretdb = FerretDB(folder / "ferretdb", host=bridge_gateway())
    ferretdb.start()
    api_key = secrets.token_urlsafe(24)
    wanted = {"api-key": api_key, "uri": ferretdb.uri}
    values = {
        doc["metadata"]["name"]: {key: wanted[key] for key in doc["data"]}
        for doc in rendered.manifests(SERVICE)
        if doc["kind"] == "Secret"
    }
    settings = podspec.run_settings(
        pod_of(deployment), SERVICE, secrets=values, scratch=folder / "volumes"
    )
    container = Container(image.ref, settings, SERVICE)
    try:
        container.start(timeout=120)
    except Exception:
        container.stop()
        ferretdb.stop()
        raise
    return Running(container, ferretdb, api_key)


@pytest.fixture(scope="module")
def running(
    image: images.Image,
    rendered: Rendered,
    deployment: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    state = start(image, rendered, deployment, tmp_path_factory.mktemp("apiserver"))
    try:
        yield state
    finally:
        state.container.stop()
        state.ferretdb.stop()


@pytest.fixture
def own(
    image: images.Image, rendered: Rendered, deployment: dict[str, Any], tmp_path: Path
) -> Iterator[Running]:
    """A container and FerretDB of the test's own, for tests that stop one of them."""
    state = start(image, rendered, deployment, tmp_path)
    try:
        yield state
    finally:
        state.container.stop()
        state.ferretdb.stop()


def items_of(body: Any) -> list[dict[str, Any]]:
    """Records of a read: a page object (``items``) or a bare JSON array."""
    found: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return found


def test_the_deployment_runs_the_image_built_from_the_committed_files(
    image: images.Image, deployment: dict[str, Any]
) -> None:
    (container,) = pod_of(deployment)["containers"]
    assert container["image"].rsplit(":", 1)[1] == image.tag, (
        f"the role deploys {container['image']} (working tree) but the set-up step built "
        f"{image.ref} from HEAD: commit the changes to services/{SERVICE} or uv.lock"
    )
    inspected = docker.inspect_image(image.ref)
    assert inspected is not None
    assert inspected["Config"]["User"] == "10001:10001"
    base = docker.inspect_image(image.base)
    assert base is not None
    added_mb = (image.size - int(base["Size"])) / 1e6
    print(f"{image.ref}: {image.size / 1e6:.0f} MB, {added_mb:.0f} MB over its base")
    assert added_mb < MAX_ADDED_MB, f"the image adds {added_mb:.0f} MB to its base"


def test_probes_pass_through_the_deployments_definitions(
    running: Running, deployment: dict[str, Any]
) -> None:
    (container,) = pod_of(deployment)["containers"]
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("liveness", "readiness")
    }
    assert probes == {"liveness": "/healthz", "readiness": "/readyz"}
    for kind in ("startup", "liveness", "readiness"):
        result = running.container.probe(kind)
        assert result.passed, result.detail


def test_upsert_read_and_batch(running: Running) -> None:
    record_id = f"image-{uuid.uuid4().hex}"
    with running.client() as client:
        created = client.post("/internal-insert", json={"id": record_id, "score": 0.25})
        assert created.status_code == 200, created.text
        assert created.json()["id"] == record_id
        updated = client.post("/internal-insert", json={"id": record_id, "score": 0.75})
        assert updated.json()["score"] == 0.75
        assert updated.json()["created_at"] == created.json()["created_at"]
        read = client.get("/internal-read", params={"id": record_id})
        assert read.status_code == 200, read.text
        assert [(r["id"], r["score"]) for r in items_of(read.json())] == [(record_id, 0.75)]
        batch = [{"id": f"{record_id}-{n}", "score": n / 10} for n in range(10)]
        written = client.post("/internal-insert/batch", json={"records": batch})
        assert written.status_code == 200, written.text
        assert written.json()["inserted"] == 10
        for record in batch[::3]:
            found = items_of(client.get("/internal-read", params={"id": record["id"]}).json())
            assert [(r["id"], r["score"]) for r in found] == [(record["id"], record["score"])]
        refused = client.post(
            "/internal-insert", json={"id": record_id, "score": 0.5}, headers={"x-api-key": "x"}
        )
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"


def test_logs_are_json_lines_on_stdout(running: Running) -> None:
    with running.client() as client:
        assert client.get("/healthz").status_code == 200
    stdout, stderr = running.container.output()
    lines = stdout.splitlines()
    assert lines, f"nothing on stdout; stderr:\n{stderr[-2000:]}"
    entries = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in entries)
    assert not stderr.strip(), f"stderr is not empty:\n{stderr[-2000:]}"


def test_root_filesystem_read_only_user_and_privileges(running: Running) -> None:
    state = running.container.inspect()
    host_config: dict[str, Any] = state["HostConfig"]  # type: ignore[assignment]
    assert host_config["ReadonlyRootfs"] is True
    script = (
        "import errno, os\n"
        "try:\n"
        "    open('/opt/venv/written', 'w')\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode[exc.errno])\n"
        "open('/tmp/written', 'w').write('ok')\n"
        "print(os.getuid(), os.getgid(), sorted(os.getgroups()))\n"
        "status = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in l)\n"
        "print(status['CapEff'].strip(), status['NoNewPrivs'].strip())\n"
    )
    result = running.container.exec(["python", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "EROFS",  # the root filesystem refuses the write: not a permission, a read-only mount
        "10001 10001 [10001]",
        "0000000000000000 1",  # no capabilities, no privilege escalation
    ]


def test_sigterm_stops_it_within_the_grace_period(own: Running) -> None:
    stopped = own.container.terminate()
    grace = own.container.settings.grace_seconds
    print(f"apiserver container: exit {stopped.code} {stopped.seconds:.2f} s after SIGTERM")
    assert stopped.seconds < grace, f"still running {stopped.seconds:.1f} s after SIGTERM"
    assert stopped.code == 0


def test_503_while_mongodb_is_down_and_recovery(own: Running) -> None:
    record_id = f"outage-{uuid.uuid4().hex}"
    own.ferretdb.stop()
    began = time.monotonic()
    unready = own.container.probe("readiness")
    assert not unready.passed, unready.detail
    with own.client() as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["error"] == "database_unavailable"
        write = client.post("/internal-insert", json={"id": record_id, "score": 0.5})
        assert write.status_code == 503, write.text
    assert own.container.probe("liveness").passed, "liveness must not fail for MongoDB"
    print(f"503 answered {time.monotonic() - began:.1f} s after FerretDB stopped")
    own.ferretdb.start()
    readiness = own.container.settings.probes["readiness"]
    own.container.wait_for_probe("readiness", readiness.period * readiness.failure_threshold)
    with own.client() as client:
        write = client.post("/internal-insert", json={"id": record_id, "score": 0.5})
        assert write.status_code == 200, write.text
