"""A till's order payload -> the core's ``OrderInput``.

A sale's ``occurred_at`` lies within 7 days before and 5 minutes after the server's clock. An
online order's dynamic member code must be valid when the order is received; only an offline
upload resolves it against ``occurred_at`` (the sale was made while the till was offline, and
codes are remembered for a day). Only a dynamic code is kept on the order, where a unique
constraint lets it commit one order only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from loyalty_core import codes
from loyalty_core.crypto import Vault
from loyalty_core.errors import LoyaltyError, MemberNotFound, ValidationFailed, field_errors
from loyalty_core.models import Member
from loyalty_core.orders import OrderInput, Payment, check_sale_time
from loyalty_core.rules.pricing import Line
from loyalty_core.unit import Opening

from .schemas import OrderIn, PreviewIn


def source(store_id: int) -> str:
    return f"store:{store_id}"


async def member_named(member_code: str | None, member_id: int | None, chain_id: int, cache: codes.Cache,
                       vault: Vault, at: datetime, opening: Opening | None = None) -> tuple[Member | None, str | None]:
    """The member a till's body names, by what the scanner read (checked at ``at``) or by id, with a
    dynamic code's single-use key; nobody (a guest) when it names none. ``opening`` (the gateway's
    Idempotency-Key claim) goes with the look-up, or alone for a guest."""
    if member_code:
        return await codes.find_member(cache, vault, chain_id, member_code, at, opening=opening)
    if member_id:
        member = await codes.member_by_id(chain_id, member_id, opening=opening)
        if member.unclaimed:  # a marketplace buyer's holder is nobody at the till
            raise MemberNotFound(f"No member {member_id}")
        return member, None
    if opening is not None:
        await opening.alone()
    return None, None


async def to_core(body: PreviewIn, store_id: int, chain_id: int, cache: codes.Cache, vault: Vault,
                  now: datetime, offline: bool = False, opening: Opening | None = None) -> OrderInput:
    occurred_at = body.occurred_at or now
    check_sale_time(occurred_at, now)
    member, dynamic = await member_named(body.member_code, body.member_id, chain_id, cache, vault,
                                         occurred_at if offline else now, opening)
    return OrderInput(
        source=source(store_id), txn_id=body.txn_id or "preview", occurred_at=occurred_at, store_id=store_id,
        lines=[Line(sku=l.sku, category=l.category, qty=l.qty, unit_price=l.unit_price, amount=l.amount)
               for l in body.lines],
        member=member, member_code=dynamic, coupons=list(body.coupons), redeem_points=body.redeem_points,
        payments=[Payment(p.method, p.amount) for p in body.payments], received_at=now,
    )


@dataclass(frozen=True)
class Rejected:
    """A batch order refused before anything was tried, with the ``txn_id`` it carried (if any)."""

    txn_id: str | None
    error: LoyaltyError


def parse_batch_order(raw: dict, index: int) -> OrderIn | Rejected:
    """One order of a batch, validated as strictly as a single order, on its own: one bad order
    rejects only itself."""
    txn_id = raw.get("txn_id") if isinstance(raw.get("txn_id"), str) else None
    try:
        # the stdlib writes any integer back (orjson stops at 64 bits); the bounds then refuse it
        order = OrderIn.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as error:
        return Rejected(txn_id, ValidationFailed(field_errors(error.errors(include_url=False)),
                                                 detail=f"orders[{index}] has invalid fields"))
    if order.occurred_at is None:
        return Rejected(txn_id, ValidationFailed([{"field": "occurred_at", "message": "an offline sale needs its time"}],
                                                 detail=f"orders[{index}] has invalid fields"))
    return order


def in_occurred_order(parsed: list[OrderIn | Rejected]) -> list[tuple[int, OrderIn | Rejected]]:
    """Invalid orders first (they touch nothing), then the rest by ``occurred_at``, stable."""
    def when(item: tuple[int, OrderIn | Rejected]) -> tuple[int, float, int]:
        index, value = item
        if isinstance(value, Rejected):
            return (0, 0.0, index)
        return (1, value.occurred_at.timestamp(), index)

    return sorted(enumerate(parsed), key=when)
