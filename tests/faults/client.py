"""The fault tests' HTTP client: signed POS calls and admin calls that record every answer, and
the retry rule of a careful till (same Idempotency-Key and body until a definitive answer)."""
from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
import orjson

from gateway.auth import signature

CLIENT_TIMEOUT = 15.0  # far above the ~5 s the gateway must answer within, so a hang shows as one


@dataclass
class Answer:
    """One HTTP exchange as the client saw it; ``status`` None: no answer (refused, reset, timeout)."""

    method: str
    path: str
    base: str
    sent_at: float  # time.monotonic()
    elapsed: float
    status: int | None
    body: Any = None
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def problem(self) -> bool:
        return self.content_type.startswith("application/problem+json")

    def __str__(self) -> str:
        what = self.error or f"{self.status} {self.code or ''}".strip()
        return f"{self.method} {self.base}{self.path} at {self.sent_at:.2f} took {self.elapsed:.2f}s: {what}"


@dataclass(frozen=True)
class Signed:
    """A POS request exactly as sent (headers included), so that it can be replayed byte for byte."""

    method: str
    path: str
    raw: bytes
    headers: dict[str, str]


class Client:
    def __init__(self, session: aiohttp.ClientSession, admin_key: str = "", terminal_id: str = "",
                 terminal_secret: str = "") -> None:
        self.session = session
        self.admin_key = admin_key
        self.terminal_id = terminal_id
        self.terminal_secret = terminal_secret
        self.log: list[Answer] = []

    def sign(self, method: str, path: str, body: Any = None, idempotency_key: str | None = None) -> Signed:
        raw = orjson.dumps(body) if body is not None else b""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
        headers = {"X-Terminal-Id": self.terminal_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": signature(self.terminal_secret, method, path, timestamp, nonce, raw),
                   "Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return Signed(method, path, raw, headers)

    async def send(self, base: str, signed: Signed) -> Answer:
        return await self._exchange(base, signed.method, signed.path, signed.raw, signed.headers)

    async def pos(self, base: str, method: str, path: str, body: Any = None,
                  idempotency_key: str | None = None) -> Answer:
        """Signed afresh (new timestamp and nonce) on every call."""
        return await self.send(base, self.sign(method, path, body, idempotency_key))

    async def admin(self, base: str, method: str, path: str, body: Any = None,
                    idempotency_key: str | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return await self._exchange(base, method, path, orjson.dumps(body) if body is not None else b"", headers)

    async def _exchange(self, base: str, method: str, path: str, raw: bytes, headers: dict[str, str]) -> Answer:
        sent_at = time.monotonic()
        try:
            async with self.session.request(method, base + path, data=raw, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)) as response:
                text = await response.text()
                answer = Answer(method, path, base, sent_at, time.monotonic() - sent_at, response.status,
                                _json(text), response.headers.get("Content-Type", ""), dict(response.headers))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            answer = Answer(method, path, base, sent_at, time.monotonic() - sent_at, None,
                            error=f"{type(error).__name__}: {error}")
        self.log.append(answer)
        return answer


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def retryable(answer: Answer) -> bool:
    """No answer, a 5xx, or the key still held by a run that may have died: send it again."""
    return answer.status is None or answer.status >= 500 or (
        answer.status == 409 and answer.code == "request_in_progress")


async def until_definitive(attempt: Callable[[], Awaitable[Answer]], deadline: float,
                           pause: tuple[float, float] = (0.05, 0.3)) -> Answer:
    """Repeat ``attempt`` (the same key and body each time) until it is not retryable; fails the
    test if that takes past ``deadline`` (time.monotonic())."""
    tries: list[Answer] = []
    while True:
        answer = await attempt()
        tries.append(answer)
        if not retryable(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError("no definitive answer in time; last tries:\n" + "\n".join(map(str, tries[-5:])))
        await asyncio.sleep(random.uniform(*pause))
