"""The points mall: rewards bought with points, each giving one coupon of its template.

A redemption is one transaction: the member's row is locked (their ``per_member_limit`` is
counted one redemption at a time), the reward's ``redeemed`` count is raised by a guarded update
(``stock`` holds across processes), the points are taken by a guarded ledger entry (never below
zero: 422 ``insufficient_points``) and drawn from the lots that expire first, the coupon is
issued (within its template's own stock and limit), and the redemption is written under its
cause, so the same request can never take the points twice. Any refusal rolls all of it back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import codes, coupons, ledger, outbox, points, sql
from .errors import (AlreadyExists, CouponLimitReached, CouponOutOfStock, DuplicateEntry, NotFound)
from .members import balance_changed, shown_balances
from .models import CouponTemplate, Reward
from .unit import Seal, confirm, seal_with, sealing


@dataclass(frozen=True)
class RewardSpec:
    name: str
    points: int
    template_id: int
    stock: int | None = None
    per_member_limit: int | None = None
    active: bool = True


async def create_reward(chain_id: int, spec: RewardSpec, seal: Seal | None = None) -> Reward:
    if not await CouponTemplate.exists(chain_id=chain_id, id=spec.template_id):
        raise NotFound(f"No coupon template {spec.template_id}")
    try:
        async with in_transaction():
            reward = await Reward.create(chain_id=chain_id, name=spec.name, points=spec.points,
                                         template_id=spec.template_id, stock=spec.stock,
                                         per_member_limit=spec.per_member_limit, active=spec.active)
            await seal_with(seal, reward)
    except IntegrityError as error:
        raise AlreadyExists(f"A reward named {spec.name!r} exists already") from error
    return reward


def reward_view(reward: Reward) -> dict:
    return {"id": reward.id, "name": reward.name, "points": reward.points, "template_id": reward.template_id,
            "stock": reward.stock, "redeemed": reward.redeemed,
            "left": None if reward.stock is None else max(reward.stock - reward.redeemed, 0),
            "per_member_limit": reward.per_member_limit, "active": reward.active,
            "created_at": reward.created_at.isoformat()}


BY_KEY = "SELECT result FROM reward_redemptions WHERE chain_id = $1 AND key = $2"
TAKE_STOCK = ("UPDATE rewards SET redeemed = redeemed + 1 WHERE chain_id = $1 AND id = $2 AND active "
              "AND (stock IS NULL OR redeemed < stock) RETURNING id, name, points, template_id, per_member_limit")
REWARD = "SELECT id, active FROM rewards WHERE chain_id = $1 AND id = $2"
HELD = "SELECT count(*) AS n FROM reward_redemptions WHERE chain_id = $1 AND member_id = $2 AND reward_id = $3"
INSERT = ("INSERT INTO reward_redemptions (chain_id, member_id, reward_id, key, points, coupon_code, result, created_at) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")


async def redeem(chain_id: int, member_id: int, reward_id: int, now: datetime, cause: str, zone: str,
                 channel: str = "admin", seal: Seal | None = None) -> dict:
    """Take the reward's points and issue its coupon, once per ``cause``; the answer."""
    key = f"mall:{cause}"
    try:
        async with in_transaction():
            return await _redeem(chain_id, member_id, reward_id, now, key, zone, channel, seal)
    except (IntegrityError, DuplicateEntry):  # this cause redeemed already (a retry that took over its lease)
        if done := await sql.rows(BY_KEY, chain_id, key):
            return _json(done[0]["result"])
        raise


async def _redeem(chain_id: int, member_id: int, reward_id: int, now: datetime, key: str, zone: str, channel: str,
                  seal: Seal | None) -> dict:
    await codes.lock_active_member(chain_id, member_id, "This member is frozen: no spending")
    reward = await _take_stock(chain_id, reward_id)
    limit = reward["per_member_limit"]
    if limit is not None and (await sql.rows(HELD, chain_id, member_id, reward_id))[0]["n"] >= limit:
        raise CouponLimitReached(f"A member may redeem {reward['name']!r} {limit} times; this one has")
    price = int(reward["points"])
    entry = await ledger.post(chain_id, ledger.Entry(
        key=key, kind="mall", member_id=member_id, channel=channel, reason=f"reward {reward['name']}",
        ref=f"reward:{reward_id}", occurred_at=now, zone=zone,
        legs=[ledger.Leg("points", -price, member_id, guard=True), ledger.Leg("points_redeemed", price)]))
    await points.take_from_lots(chain_id, member_id, price)
    coupon, issued = await coupons.issue_within(chain_id, member_id, int(reward["template_id"]), now, f"reward:{key}",
                                                member_locked=True)
    balances = shown_balances(entry.accounts)
    answer = {"reward_id": reward_id, "member_id": member_id, "points": price, "coupon": coupon, "balances": balances}
    events, params, _ = outbox.inserting(chain_id, [
        balance_changed(member_id, entry.id, balances), issued,
        ("reward.redeemed", {"member_id": member_id, "reward_id": reward_id, "points": price, "code": coupon["code"]})],
        now)
    *_, stored = await sql.together(
        (INSERT, [chain_id, member_id, reward_id, key, price, coupon["code"], orjson.dumps(answer).decode(), now]),
        (events, params), await sealing(seal, answer))
    confirm(seal, stored)
    return answer


async def _take_stock(chain_id: int, reward_id: int) -> dict:
    if taken := await sql.rows(TAKE_STOCK, chain_id, reward_id):
        return taken[0]
    found = await sql.rows(REWARD, chain_id, reward_id)
    if not found or not found[0]["active"]:
        raise NotFound(f"No reward {reward_id} in the mall")
    raise CouponOutOfStock(f"Reward {reward_id} is sold out")


def _json(value) -> dict:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value
