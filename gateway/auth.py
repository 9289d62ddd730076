"""Who is calling: an admin key with a role, a POS terminal's signature, or a member token."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Coroutine

from aiohttp import web

from loyalty_core import sessions
from loyalty_core.chains import find_admin_key
from loyalty_core.errors import (Forbidden, InvalidSignature, ReplayedRequest, StaleRequest,
                                 Unauthorized)
from loyalty_core.models import Terminal

from .services import Services

SKEW_SECONDS = 300

RIGHTS: dict[str, set[str]] = {
    "owner": {"read", "members", "coupons", "configure", "keys", "jobs"},
    "operator": {"read", "members", "coupons"},
    "auditor": {"read"},
}


@dataclass(frozen=True)
class Principal:
    chain_id: int
    kind: str
    actor: str
    role: str | None = None
    key_id: int | None = None
    store_id: int | None = None
    terminal_id: int | None = None
    member_id: int | None = None
    session_id: int | None = None
    channel_id: int | None = None
    openid: str | None = None
    app_id: str | None = None


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not _printable_ascii(token, 256):
        raise Unauthorized("Send Authorization: Bearer <key>")
    return token


def _printable_ascii(value: str, longest: int) -> bool:
    return len(value) <= longest and value.isascii() and value.isprintable()


HEX = frozenset("0123456789abcdefABCDEF")


async def admin(request: web.Request, right: str) -> Principal:
    key = await find_admin_key(bearer(request))
    if key is None:
        raise Unauthorized("Unknown or revoked admin key")
    if right not in RIGHTS[key.role]:
        raise Forbidden(f"The {key.role} role may not do this")
    return Principal(chain_id=key.chain_id, kind="admin", actor=f"admin_key:{key.id}", role=key.role, key_id=key.id)


@dataclass(frozen=True)
class TerminalKey:
    """What checking a terminal's signature needs, kept by ``Services.terminals`` for a second."""

    id: int
    chain_id: int
    store_id: int
    terminal_id: str
    secret: str


async def _active_terminal(terminal_id: str, services: Services) -> TerminalKey | None:
    row = await Terminal.get_or_none(terminal_id=terminal_id, active=True)
    if row is None:
        return None
    return TerminalKey(row.id, row.chain_id, row.store_id, row.terminal_id, services.vault.decrypt(row.secret_enc))


async def _first_use(services: Services, chain_id: int, terminal_pk: int, nonce: str) -> bool:
    """Record the nonce for the skew window; False if it was recorded before. The value is this
    request's own mark, so a write that the Redis client resent after a broken connection (the
    first one had landed) is still recognised as ours, not as a replay."""
    key = services.cache.key(f"{{chain:{chain_id}}}", "nonce", terminal_pk, nonce)
    mark = secrets.token_hex(8)
    if await services.cache.redis.set(key, mark, nx=True, ex=2 * SKEW_SECONDS):
        return True
    return await services.cache.redis.get(key) == mark


def signature(secret: str, method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The POS signature of API.md: hex HMAC-SHA256 over method, path, timestamp, nonce, body hash."""
    message = "\n".join([method.upper(), path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    # surrogateescape: a path that is not UTF-8 is signed as the bytes that were sent
    return hmac.new(secret.encode(), message.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


async def terminal(request: web.Request, body: bytes, services: Services) -> Principal:
    """A signed request of an active terminal, its nonce used for the first time."""
    principal, first_use = await terminal_signed(request, body, services)
    await first_use
    return principal


async def terminal_signed(request: web.Request, body: bytes, services: Services
                          ) -> tuple[Principal, Coroutine[Any, Any, None]]:
    """The terminal whose signature the request carries, and the check of its nonce still to
    await (a Redis command), for a caller that reads meanwhile: it raises ``ReplayedRequest``
    when the nonce was used before. Everything but the nonce is checked here."""
    terminal_id = request.headers.get("X-Terminal-Id", "")
    timestamp = request.headers.get("X-Timestamp", "")
    nonce = request.headers.get("X-Nonce", "")
    given = request.headers.get("X-Signature", "")
    if not (terminal_id and timestamp and nonce and given):
        raise Unauthorized("Send X-Terminal-Id, X-Timestamp, X-Nonce and X-Signature")
    if not 16 <= len(nonce) or not _printable_ascii(nonce, 64):
        raise Unauthorized("X-Nonce must be 16-64 printable ASCII characters")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise Unauthorized("X-Timestamp must be unix seconds")
    if len(given) != 64 or not HEX.issuperset(given):
        raise Unauthorized("X-Signature must be 64 hex digits")
    if not _printable_ascii(terminal_id, 40):
        raise Unauthorized("Unknown terminal")
    row = await services.terminals.get(terminal_id, lambda: _active_terminal(terminal_id, services))
    if row is None:
        raise Unauthorized("Unknown terminal")
    if abs(services.clock.now().timestamp() - int(timestamp)) > SKEW_SECONDS:
        raise StaleRequest(f"X-Timestamp is more than {SKEW_SECONDS} s away from the gateway's clock")
    expected = signature(row.secret, request.method, request.raw_path, timestamp, nonce, body)
    if not hmac.compare_digest(expected, given.lower()):
        raise InvalidSignature("X-Signature does not match this request")
    principal = Principal(chain_id=row.chain_id, kind="terminal", actor=f"terminal:{row.terminal_id}",
                          store_id=row.store_id, terminal_id=row.id)
    return principal, _nonce_unused(services, row, nonce)


async def _nonce_unused(services: Services, row: TerminalKey, nonce: str) -> None:
    if not await _first_use(services, row.chain_id, row.id, nonce):
        raise ReplayedRequest("This X-Nonce was used already")


async def member(request: web.Request, services: Services) -> Principal:
    """A member token from ``POST /v1/mp/login``; the session may not have joined yet (``member_id``
    None: only joining and logging out accept it, see ``Call.member_id``)."""
    found = await sessions.find_session(bearer(request), services.clock.now())
    if found is None:
        raise Unauthorized("Unknown, expired or revoked member token: log in again")
    member_id = found["member_id"]
    return Principal(chain_id=int(found["chain_id"]), kind="member",
                     actor=f"member:{member_id}" if member_id else f"member_session:{found['id']}",
                     member_id=int(member_id) if member_id else None, session_id=int(found["id"]),
                     channel_id=int(found["channel_id"]), openid=found["openid"], app_id=found["app_id"])
