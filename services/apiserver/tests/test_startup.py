"""The server refuses to start without a usable API key: one line, non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from apiserver.repository import connect
from apiserver.settings import Settings, describe_error


def start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APISERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "apiserver"],
        env={**clean, "APISERVER_PORT": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_to_start_without_api_key() -> None:
    result = start()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("apiserver: refusing to start: APISERVER_API_KEY is not set")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["", "k3y-42", "fifteen-chars-x"])
def test_refuses_too_short_api_key(key: str) -> None:
    result = start(APISERVER_API_KEY=key)
    assert result.returncode == 2
    assert "APISERVER_API_KEY" in result.stderr
    assert "at least 16 characters" in result.stderr
    assert "too short" in result.stderr or not key
    assert not key or key not in result.stderr  # the secret is not echoed


def test_names_every_bad_variable_without_the_secret() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(api_key="s3cret-s3cret-s3cret", port=0, mongodb_timeout_ms=5)  # type: ignore[arg-type]
    text = describe_error(info.value)
    assert "APISERVER_PORT" in text
    assert "APISERVER_MONGODB_TIMEOUT_MS" in text
    assert "s3cret" not in text


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APISERVER_API_KEY", "k" * 16)
    monkeypatch.setenv("APISERVER_MONGODB_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("APISERVER_MONGODB_TIMEOUT_MS", "2500")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.mongodb_uri == "mongodb://db.example:27017/"
    assert (settings.mongodb_database, settings.mongodb_collection) == ("uploads", "records")
    assert settings.mongodb_timeout_ms == 2500
    assert settings.port == 8000
    assert "k" * 16 not in repr(settings)


def test_the_client_is_bounded_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APISERVER_API_KEY", "k" * 16)
    monkeypatch.setenv("APISERVER_MONGODB_MAX_POOL_SIZE", "7")
    monkeypatch.setenv("APISERVER_MONGODB_TIMEOUT_MS", "2500")
    client = connect(Settings())  # type: ignore[call-arg]
    options = client.options
    assert options.pool_options.max_pool_size == 7
    assert options.pool_options.connect_timeout == 2.5
    assert options.server_selection_timeout == 2.5


def test_the_server_side_deadline_stays_below_the_socket_timeout() -> None:
    key = "k" * 16
    assert Settings(api_key=key).max_time_ms == 3000  # type: ignore[arg-type]
    assert Settings(api_key=key, mongodb_timeout_ms=2500).max_time_ms == 1500  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        Settings(api_key=key, mongodb_timeout_ms=2500, mongodb_max_time_ms=2500)  # type: ignore[arg-type]
    text = describe_error(info.value)
    assert text.startswith("APISERVER_MONGODB_MAX_TIME_MS (2500) must be below")
    assert "APISERVER_MONGODB_TIMEOUT_MS (2500)" in text


def test_a_write_chunk_fits_in_the_write_statements_in_flight() -> None:
    result = start(
        APISERVER_API_KEY="k" * 16,
        APISERVER_MONGODB_WRITE_CHUNK="64",
        APISERVER_MONGODB_MAX_WRITE_STATEMENTS="48",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "apiserver: refusing to start: APISERVER_MONGODB_WRITE_CHUNK (64) must not exceed "
        "APISERVER_MONGODB_MAX_WRITE_STATEMENTS (48)"
    )
