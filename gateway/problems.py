"""One mapping from errors to RFC 9457 problem+json, for every route, known or not.

This is also the one place where a failing service becomes an answer: when PostgreSQL or Redis
is down, restarting, refusing connections or too slow (the driver's timeouts, see
``gateway/settings.py`` and ``gateway/redis.py``), whatever the driver raised is answered 503
``service_unavailable`` with ``Retry-After``, never 500. A request cut off that way commits
wholly or not at all (one transaction), so the same request with the same Idempotency-Key may be
sent again.
"""
from __future__ import annotations

import socket

import asyncpg
import orjson
import redis.exceptions
import structlog
from aiohttp import web
from tortoise.exceptions import DBConnectionError

from loyalty_core.errors import LoyaltyError, ServiceUnavailable

log = structlog.get_logger("gateway")

HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}
RETRY_AFTER_SECONDS = 1
SERVICE_NAMES = {"database": "The database", "redis": "Redis"}

# What asyncpg and Tortoise raise while PostgreSQL is stopping, down, starting up or too slow
# (seen in tests/faults): AdminShutdownError and CannotConnectNowError (class 57, operator
# intervention, which also holds a cancelled statement), ConnectionDoesNotExistError (class 08),
# too many connections, and Tortoise's DBConnectionError (the database is missing).
DATABASE_DOWN = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
                 asyncpg.TooManyConnectionsError, DBConnectionError)
# redis-py's ConnectionError covers refused, reset and "loading the dataset"; TimeoutError its
# socket and connect timeouts; OutOfMemoryError a Redis at its maxmemory refusing a write (it
# must not evict: docs/scaling.md); in a Redis Cluster, a slot without a node (CLUSTERDOWN, or
# not covered by the map the client has).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.OutOfMemoryError,
              redis.exceptions.ClusterDownError, redis.exceptions.SlotNotCoveredError)


def problem(status: int, code: str, title: str, detail: str | None = None, **extra) -> web.Response:
    body = {"type": f"https://loyalty.example/problems/{code}", "title": title, "status": status,
            "detail": detail or title, "code": code, **extra}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json")


def from_error(error: LoyaltyError) -> web.Response:
    return problem(error.status, error.code, error.title, error.detail, **error.extra)


def unavailable(error: BaseException) -> str | None:
    """``"database"`` or ``"redis"`` when this error, or one it was raised from or while handling,
    says that service is unreachable; else None (a bug, answered 500)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, REDIS_DOWN):
            return "redis"
        if isinstance(current, DATABASE_DOWN) or _lost_connection(current) or _network(current):
            return "database"
        current = current.__cause__ or current.__context__
    return None


def _lost_connection(error: BaseException) -> bool:
    # "connection is closed", "cannot call Transaction.rollback(): the underlying connection is
    # closed": a pooled connection the server dropped, used or rolled back afterwards. "cannot
    # switch to state 12; another operation (2) is in progress": a pooled connection that got the
    # server's unsolicited FATAL (shutting down) just before it was used (asyncpg issue #1069).
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in str(error)
    return isinstance(error, asyncpg.InternalClientError) and str(error).startswith("cannot switch to state")


def _network(error: BaseException) -> bool:
    # refused, reset, broken pipe; a connect or command timeout (asyncpg raises TimeoutError); a
    # host that does not resolve; plain OSError: asyncio's "Multiple exceptions" when every address
    # of a host failed, or an unreachable network. Not file errors (FileNotFoundError & co).
    return isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)) or type(error) is OSError


@web.middleware
async def problem_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoyaltyError as error:
        response = from_error(error)
        if error.status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code, title = HTTP_CODES.get(error.status, ("http_error", error.reason))
        detail = f"No route {request.method} {request.path}" if error.status in (404, 405) else error.text
        response = problem(error.status, code, title, detail)
        if error.status == 405:
            response.headers["Allow"] = error.headers.get("Allow", "")
        return response
    except Exception as error:
        service = unavailable(error)
        if service is None:
            log.exception("unhandled_error", method=request.method, path=request.path)
            return problem(500, "internal_error", "Internal error", "The gateway failed; the request may be retried.")
        log.warning("service_unavailable", service=service, error=f"{type(error).__name__}: {error}"[:300],
                    method=request.method, path=request.path)
        response = from_error(ServiceUnavailable(
            f"{SERVICE_NAMES[service]} is unavailable; send the request again (with the same Idempotency-Key)."))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
