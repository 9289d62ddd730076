"""One mapping from errors to RFC 9457 problem+json, for every route, known or not."""
from __future__ import annotations

import orjson
import structlog
from aiohttp import web

from loyalty_core.errors import LoyaltyError

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


def problem(status: int, code: str, title: str, detail: str | None = None, **extra) -> web.Response:
    body = {"type": f"https://loyalty.example/problems/{code}", "title": title, "status": status,
            "detail": detail or title, "code": code, **extra}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json")


def from_error(error: LoyaltyError) -> web.Response:
    return problem(error.status, error.code, error.title, error.detail, **error.extra)


@web.middleware
async def problem_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoyaltyError as error:
        return from_error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code, title = HTTP_CODES.get(error.status, ("http_error", error.reason))
        detail = f"No route {request.method} {request.path}" if error.status in (404, 405) else error.text
        response = problem(error.status, code, title, detail)
        if error.status == 405:
            response.headers["Allow"] = error.headers.get("Allow", "")
        return response
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return problem(500, "internal_error", "Internal error", "The gateway failed; the request may be retried.")
