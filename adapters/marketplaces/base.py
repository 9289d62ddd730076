"""What every marketplace adapter answers (one module per platform, registered in ``PLATFORMS``)."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from datetime import datetime
from typing import Any, Mapping, Protocol
from zoneinfo import ZoneInfo

import aiohttp

from loyalty_core.channels import Connected
from loyalty_core.clock import Clock
from loyalty_core.errors import BadRequest, InvalidSignature
from loyalty_core.marketplace import MarketEvent


@dataclass(frozen=True)
class OpenApi:
    """A platform's open API as an adapter calls it: one HTTP session of the process, the base URL
    (``<PLATFORM>_API_BASE_URL``, else the platform's own), Redis for what all processes share (an
    access token) and the clock."""

    http: aiohttp.ClientSession
    base_url: str
    cache: Any  # gateway.redis.KeySpace (adapters never import the gateway)
    clock: Clock


class Platform(Protocol):
    name: str
    base_url: str  # its open API, unless <PLATFORM>_API_BASE_URL says otherwise

    def url_check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """The app id when the delivery is the platform's check of a newly configured push URL (it
        names no shop: it is verified with any shop of that app, answered with the ack and kept
        nowhere), else None."""

    def shop_of(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The shop id the delivery names (its channel holds the secret to verify it with);
        ``BadRequest`` when the body is no delivery of this platform."""

    def verify(self, channel: Connected, body: bytes, headers: Mapping[str, str]) -> None:
        """``InvalidSignature`` unless the platform signed this body for this shop."""

    def events(self, body: bytes, now: datetime) -> list[MarketEvent]:
        """The delivery as the core's events (``BadRequest`` when it cannot be read); ``now`` for
        an event that says no time. An event whose push only names its order says ``needs_detail``."""

    def ack(self, channel: Connected, body: bytes, headers: Mapping[str, str], now: datetime) -> tuple[bytes, str]:
        """The body and content type the platform expects once the delivery is kept."""

    async def detail(self, channel: Connected, event: MarketEvent, api: OpenApi) -> MarketEvent:
        """The event completed from the platform's API (the order's buyer, lines, amounts), no longer
        ``needs_detail``; ``PlatformUnavailable`` when the platform refuses or does not answer."""


class Pushing:
    """What most pushing platforms share: every push names its shop, and carries its whole order."""

    def url_check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return None

    async def detail(self, channel: Connected, event: MarketEvent, api: OpenApi) -> MarketEvent:
        return event


BEIJING = ZoneInfo("Asia/Shanghai")
MOST_FEN = 10**12


def text_id(value, longest: int) -> str:
    """An id a platform sent: a number or printable text of at most ``longest`` characters ("" for
    none); BadRequest for anything else (a list, control characters, an absurd length)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(f"not an id: {str(value)[:40]!r}")
    text = str(value)
    if len(text) > longest or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadRequest(f"not an id: {text[:40]!r}")
    return text


def section(value) -> dict:
    """A part of a platform's JSON that should be an object: it, or {}."""
    return value if isinstance(value, dict) else {}


def whole(value, low: int, high: int, what: str) -> int:
    """A whole number a platform sent (an int or its ASCII digits) from ``low`` to ``high``;
    BadRequest ("not ``what``") otherwise (never a float)."""
    if isinstance(value, str) and digits(value) and len(value) <= len(str(high)):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"not {what}: {str(value)[:20]!r}")
    return value


def yuan(value) -> int:
    """``"188.00"`` → 18800 fen; BadRequest for anything that is not yuan with at most two decimals."""
    try:
        amount = Decimal(str(value)) * 100
        exact = amount.is_finite() and amount == amount.to_integral_value()
    except (InvalidOperation, ValueError):
        exact = False
    if not exact or not 0 <= amount <= MOST_FEN:
        raise BadRequest(f"not an amount in yuan: {str(value)[:20]!r}")
    return int(amount)


def beijing_time(text, default: datetime) -> datetime:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time, or ``default``."""
    try:
        return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except (TypeError, ValueError):
        return default


def digits(text: str) -> bool:
    """Only the ASCII digits 0-9 (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def check_signature(expected: str, given: str, secret: str | None, refusal: str) -> None:
    """``InvalidSignature`` (``refusal``) unless the shop has a secret and ``given`` is ``expected``
    (hex, either case, compared in constant time)."""
    if not secret or not hmac.compare_digest(expected.lower().encode(), given.lower().encode("utf-8", "replace")):
        raise InvalidSignature(refusal)
