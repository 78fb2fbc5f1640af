"""``dagster-webserver`` on the pipeline's definitions (``pipeline.definitions``): the Dagster
UI backend of the Gateway's dagster listener. Its instance (run storage) lives in its folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from stacktools.servers.http import BackendError, HttpBackend


class DagsterWebserver(HttpBackend):
    name = "dagster-webserver"
    ready_path = "/server_info"

    def __init__(
        self, directory: Path, host: str, port: int, *, mongodb_uri: str, netns: Path | None = None
    ) -> None:
        super().__init__(directory, host, port, netns)
        self.mongodb_uri = mongodb_uri

    def command(self) -> tuple[list[str], dict[str, str]]:
        executable = Path(sys.executable).parent / "dagster-webserver"
        if not executable.is_file():
            found = shutil.which("dagster-webserver")
            if found is None:
                msg = "dagster-webserver is not installed (make setup installs the pipeline)"
                raise BackendError(msg)
            executable = Path(found)
        home = self.directory / "dagster-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").touch()
        argv = [
            str(executable),
            "-m",
            "pipeline.definitions",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        env = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PIPELINE_MONGODB_URI": self.mongodb_uri,
            "PIPELINE_DELTA_URI": str(self.directory / "delta" / "records"),
        }
        return argv, env
