"""What the app keeps for its lifetime (settings, metrics, the repository)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from apiserver.metrics import Metrics
from apiserver.repository import RecordRepository
from apiserver.settings import Settings


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    _repository: RecordRepository | None = None

    def __post_init__(self) -> None:
        self.api_key = self.settings.api_key.get_secret_value().encode()

    @property
    def repository(self) -> RecordRepository:
        if self._repository is None:
            msg = "the repository exists only while the app's lifespan runs"
            raise RuntimeError(msg)
        return self._repository

    @repository.setter
    def repository(self, value: RecordRepository | None) -> None:
        self._repository = value


def state_of(request: Request) -> AppState:
    state = request.app.state.stack
    assert isinstance(state, AppState)
    return state
