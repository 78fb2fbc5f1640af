"""The PIPELINE_* environment: names, defaults and validation of the non-secret values.

Secrets (the MongoDB URI, the S3 secret key) are passed to Dagster as ``dg.EnvVar`` so they
are read when a run starts and never shown in the UI; everything else is read here, when the
code location loads, so a bad value stops the load with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.delta import DEFAULT_TARGET_FILE_SIZE

DEFAULT_CRON = "0 * * * *"  # hourly
DEFAULT_DELTA_URI = ".cache/delta/records"  # relative to the working directory (local runs)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A PIPELINE_* variable holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    mongodb_database: str
    mongodb_collection: str
    mongodb_timeout_ms: int
    delta_uri: str
    delta_target_file_size: int
    s3_endpoint_url: str | None
    s3_access_key_id: str | None
    s3_region: str
    has_s3_secret: bool
    schedule_cron: str
    schedule_enabled: bool


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _text(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        msg = f"{name} must be a positive integer, got {raw!r}"
        raise SettingsError(msg)
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    msg = f"{name} must be one of {sorted(_TRUE | _FALSE)}, got {raw!r}"
    raise SettingsError(msg)


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    endpoint = _optional(env, "PIPELINE_S3_ENDPOINT_URL")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        msg = f"PIPELINE_S3_ENDPOINT_URL must start with http:// or https://, got {endpoint!r}"
        raise SettingsError(msg)
    return Settings(
        mongodb_database=_text(env, "PIPELINE_MONGODB_DATABASE", "uploads"),
        mongodb_collection=_text(env, "PIPELINE_MONGODB_COLLECTION", "records"),
        mongodb_timeout_ms=_positive_int(env, "PIPELINE_MONGODB_TIMEOUT_MS", 5_000),
        delta_uri=_text(env, "PIPELINE_DELTA_URI", DEFAULT_DELTA_URI),
        delta_target_file_size=_positive_int(
            env, "PIPELINE_DELTA_TARGET_FILE_SIZE", DEFAULT_TARGET_FILE_SIZE
        ),
        s3_endpoint_url=endpoint,
        s3_access_key_id=_optional(env, "PIPELINE_S3_ACCESS_KEY_ID"),
        s3_region=_text(env, "PIPELINE_S3_REGION", "us-east-1"),
        has_s3_secret=bool(_optional(env, "PIPELINE_S3_SECRET_ACCESS_KEY")),
        schedule_cron=_text(env, "PIPELINE_SCHEDULE_CRON", DEFAULT_CRON),
        schedule_enabled=_flag(env, "PIPELINE_SCHEDULE_ENABLED", default=True),
    )
