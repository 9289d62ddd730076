"""What every marketplace adapter answers (one module per platform, registered in ``PLATFORMS``)."""
from __future__ import annotations

from datetime import datetime
from typing import Mapping, Protocol

from loyalty_core.channels import Connected
from loyalty_core.marketplace import MarketEvent


class Platform(Protocol):
    name: str

    def shop_of(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The shop id the delivery names (its channel holds the secret to verify it with);
        ``BadRequest`` when the body is no delivery of this platform."""

    def verify(self, channel: Connected, body: bytes, headers: Mapping[str, str]) -> None:
        """``InvalidSignature`` unless the platform signed this body for this shop."""

    def events(self, body: bytes, now: datetime) -> list[MarketEvent]:
        """The delivery as the core's events (``BadRequest`` when it cannot be read); ``now`` for
        an event that says no time."""

    def ack(self) -> tuple[bytes, str]:
        """The body and content type the platform expects once the delivery is kept."""
