"""Prometheus metrics of one process, in a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_Series = tuple[Counter, Histogram, Counter | None]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "apiserver_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "apiserver_http_request_duration_seconds",
            "Time from request start to the last response byte, by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.errors = Counter(
            "apiserver_http_errors",
            "HTTP answers with a 4xx or 5xx status, by route template and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        # The labelled children of each (method, route, status), looked up once: labels() takes
        # a lock and builds its key on every call. Bounded like the series themselves.
        self._series: dict[tuple[str, str, int], _Series] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            code = str(status)
            series = (
                self.requests.labels(method, route, code),
                self.duration.labels(method, route),
                self.errors.labels(route, code) if status >= 400 else None,
            )
            self._series[key] = series
        requests, duration, errors = series
        requests.inc()
        duration.observe(seconds)
        if errors is not None:
            errors.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
