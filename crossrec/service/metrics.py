"""Prometheus metrics: request latency per route, errors per route and status, Kafka publish latency.

With several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` (``crossrec serve`` does): every
worker writes its samples there and ``/metrics`` aggregates all of them.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["REQUEST_SECONDS", "REQUEST_ERRORS", "PUBLISH_SECONDS", "RECOMMEND_CACHE", "SEARCH_CACHE", "RequestMetrics", "render"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_SECONDS = Histogram("crossrec_request_seconds", "Request latency by route", ["method", "route"], buckets=_BUCKETS)
REQUEST_ERRORS = Counter("crossrec_request_errors_total", "Responses with status >= 400 by route", ["method", "route", "status"])
PUBLISH_SECONDS = Histogram("crossrec_kafka_publish_seconds", "Send -> broker acknowledgement of one event post",
                            buckets=_BUCKETS)
RECOMMEND_CACHE = Counter("crossrec_recommend_cache_total", "Recommendation requests answered from the per-process "
                          "cache (hit) or ranked (miss)", ["result"])
SEARCH_CACHE = Counter("crossrec_search_cache_total", "Text searches answered from the per-process cache (hit) "
                       "or searched (miss)", ["result"])


class RequestMetrics:
    """ASGI middleware: latency per route template and errors per route and status. Plain ASGI,
    not ``BaseHTTPMiddleware``, whose per-request task and stream pair cost more CPU than a cached
    search answer does."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # unless the app starts a response: an exception became a 500 further out

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The route's template (/users/{user_id}/...), not the raw path: bounded label values.
            name = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], name).observe(time.perf_counter() - start)
            if status >= 400:
                REQUEST_ERRORS.labels(scope["method"], name, str(status)).inc()


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
