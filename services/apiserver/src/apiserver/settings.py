"""Runtime settings, read from ``APISERVER_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_API_KEY_LENGTH = 16

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Everything the service reads from its environment; there is no default API key."""

    model_config = SettingsConfigDict(env_prefix="APISERVER_", extra="ignore", frozen=True)

    api_key: Annotated[SecretStr, Field(min_length=MIN_API_KEY_LENGTH)]
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    mongodb_database: Annotated[str, Field(min_length=1)] = "uploads"
    mongodb_collection: Annotated[str, Field(min_length=1)] = "records"
    # Bounds server selection, connection set-up and every socket read; /readyz uses a
    # third of it (at least 200 ms) for its ping.
    mongodb_timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 5000
    # Statements per MongoDB update command in a batch. FerretDB 1.24.2 never answers an
    # update in which 100 or more statements modify existing documents; 50 is safe there.
    mongodb_write_chunk: Annotated[int, Field(ge=1, le=1000)] = 50
    # Connections (so MongoDB commands in flight) per process; the driver's default. FerretDB
    # 1.24.2 (SQLite) deadlocks for good once 100 connections each hold a matched document
    # of an update or findAndModify in flight: keep pool size x write chunk under 100 there.
    mongodb_max_pool_size: Annotated[int, Field(ge=1, le=1000)] = 100
    log_level: LogLevel = "INFO"
    access_log: bool = True
    # Binding every interface is what a container needs; the Service fronts it.
    host: str = "0.0.0.0"  # noqa: S104
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1

    @property
    def ping_timeout_s(self) -> float:
        return max(self.mongodb_timeout_ms / 3000, 0.2)


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, without echoing secret values."""
    parts: list[str] = []
    for item in error.errors():
        name = "APISERVER_" + "_".join(str(part) for part in item["loc"]).upper()
        wanted = f"a random secret of at least {MIN_API_KEY_LENGTH} characters"
        if name == "APISERVER_API_KEY" and item["type"] == "missing":
            parts.append(f"{name} is not set; set it to {wanted} (there is no default key)")
        elif name == "APISERVER_API_KEY":
            parts.append(f"{name} is too short; set it to {wanted}")
        elif item["type"] == "missing":
            parts.append(f"{name} is not set")
        else:
            parts.append(f"{name}: {item['msg']}")
    return "; ".join(parts)
