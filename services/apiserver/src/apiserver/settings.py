"""Runtime settings, read from ``APISERVER_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
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
    # The server-side deadline (maxTimeMS) of every query and write, below the socket timeout:
    # a command that cannot finish in time is stopped by the database itself and answered
    # 504 at once, instead of running on after the driver gave up (and was retried).
    # Unset: three fifths of the timeout above (3000 ms by default), leaving the database time
    # to notice the deadline and answer before the socket times out (FerretDB on a busy
    # machine took up to 1.3 s to stop a scan).
    mongodb_max_time_ms: Annotated[int | None, Field(ge=10, le=120_000)] = None
    # Statements per MongoDB update command in a batch (at most the write statements below;
    # under them, so that single upserts still run beside a batch).
    mongodb_write_chunk: Annotated[int, Field(ge=1, le=1000)] = 32
    # Write statements (one per record) in flight in this process; a batch's update command
    # takes one per statement. FerretDB 1.24 keeps a backend connection for each in-flight
    # statement that matched a document until its command ends, and needs one more to write:
    # once every connection is held that way (100 on SQLite, 50 on PostgreSQL) it waits
    # forever. 48 keeps one process under both; MongoDB has no such limit.
    mongodb_max_write_statements: Annotated[int, Field(ge=1, le=10_000)] = 48
    # Connections per process (the driver's default); writes are bounded above.
    mongodb_max_pool_size: Annotated[int, Field(ge=1, le=1000)] = 100
    log_level: LogLevel = "INFO"
    access_log: bool = True
    # Binding every interface is what a container needs; the Service fronts it.
    host: str = "0.0.0.0"  # noqa: S104
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mongodb_max_time_ms is not None and (
            self.mongodb_max_time_ms >= self.mongodb_timeout_ms
        ):
            msg = (
                f"APISERVER_MONGODB_MAX_TIME_MS ({self.mongodb_max_time_ms}) must be below "
                f"APISERVER_MONGODB_TIMEOUT_MS ({self.mongodb_timeout_ms}), so that the database "
                "stops a slow command before the driver gives up on it"
            )
            raise ValueError(msg)
        if self.mongodb_write_chunk > self.mongodb_max_write_statements:
            msg = (
                f"APISERVER_MONGODB_WRITE_CHUNK ({self.mongodb_write_chunk}) must not exceed "
                f"APISERVER_MONGODB_MAX_WRITE_STATEMENTS ({self.mongodb_max_write_statements})"
            )
            raise ValueError(msg)
        return self

    @property
    def max_time_ms(self) -> int:
        """maxTimeMS of every command: the setting, or three fifths of the socket timeout."""
        if self.mongodb_max_time_ms is not None:
            return self.mongodb_max_time_ms
        return self.mongodb_timeout_ms * 3 // 5

    @property
    def ping_timeout_s(self) -> float:
        return max(self.mongodb_timeout_ms / 3000, 0.2)


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, without echoing secret values."""
    parts: list[str] = []
    for item in error.errors():
        if not item["loc"]:  # a rule across variables; its message names them
            parts.append(str(item["msg"]).removeprefix("Value error, "))
            continue
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
