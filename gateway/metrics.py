"""Prometheus metrics of this process."""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("loyalty_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("loyalty_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY)
OUTBOX = Counter("loyalty_outbox_deliveries_total", "Outbox delivery attempts", ["topic", "outcome"], registry=REGISTRY)


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
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
