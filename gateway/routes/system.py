"""Health, readiness, metrics and the API's own description."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from loyalty_core.errors import LoyaltyError

from .. import db, openapi
from ..api import Call
from ..metrics import REGISTRY
from . import API


class NotReady(LoyaltyError):
    code, status, title = "not_ready", 503, "Not ready"


@API.route("GET", "/healthz", auth=None, summary="The process is up", tag="system")
async def healthz(call: Call):
    return {"status": "ok"}


@API.route("GET", "/readyz", auth=None, summary="Database and Redis are reachable", tag="system",
           errors=("not_ready",))
async def readyz(call: Call):
    failed = []
    try:
        await db.ping()
    except Exception as error:  # a probe reports, it never raises
        failed.append(f"database: {type(error).__name__}")
    try:
        await call.services.cache.redis.ping()
    except Exception as error:
        failed.append(f"redis: {type(error).__name__}")
    if failed:
        raise NotReady("; ".join(failed))
    return {"status": "ready", "database": "ok", "redis": "ok"}


@API.route("GET", "/metrics", auth=None, summary="Prometheus metrics", tag="system")
async def metrics(call: Call):
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


@API.route("GET", "/openapi.json", auth=None, summary="This API as OpenAPI 3.1", tag="system")
async def openapi_json(call: Call):
    return openapi.build(API.operations, version="1")


@API.route("GET", "/docs", auth=None, summary="Human-readable API reference", tag="system")
async def docs(call: Call):
    return web.Response(text=openapi.docs_page(openapi.build(API.operations, version="1")), content_type="text/html")
