"""Prometheus metrics of this process."""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("loyalty_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("loyalty_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY)
OUTBOX = Counter("loyalty_outbox_deliveries_total", "Outbox delivery attempts", ["topic", "outcome"], registry=REGISTRY)


# The labelled children, looked up once per (method, route, status): ``labels()`` checks and locks
# on every call, a cost on every request of a till.
_COUNTED: dict[tuple[str, str, int], object] = {}
_TIMED: dict[tuple[str, str], object] = {}


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _observe(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "other"  # any token is a method to aiohttp: keep the labels few
    counted = _COUNTED.get((method, route, status))
    if counted is None:
        counted = _COUNTED.setdefault((method, route, status), REQUESTS.labels(method, route, str(status)))
    timed = _TIMED.get((method, route))
    if timed is None:
        timed = _TIMED.setdefault((method, route), LATENCY.labels(method, route))
    counted.inc()
    timed.observe(seconds)


@web.middleware
async def metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Outermost: it counts the answer the client got, problem+json ones (4xx, 5xx) included."""
    started = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        _observe(request.method, route, status, time.perf_counter() - started)
