"""``python -m apiserver`` (or ``apiserver``): check settings, then serve with uvicorn."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from apiserver.coalesce import JoinedWritesProtocol
from apiserver.logs import configure_logging
from apiserver.settings import Settings, describe_error


def main() -> int:
    try:
        settings = Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        print(f"apiserver: refusing to start: {describe_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    uvicorn.run(
        "apiserver.app:app_from_env",
        factory=True,
        http=JoinedWritesProtocol,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
