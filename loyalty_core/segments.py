"""Rule segments: the members a campaign is for, picked by what the ledger keeps per member.

Every rule reads per-member figures kept in the transactions of the causes themselves (the
lifetime row's latest order time, the monthly rows' orders and spend, ``member_figures``), the
member row (tier), their identities (channels) and tags: never the orders themselves. A segment
is evaluated when it is read, page by page in member id order, so it is always current.

Rules (all optional; a member must meet every one given):

- ``recency_days: {min, max}``: days since the latest order (a member who never ordered is
  outside any recency rule);
- ``activity``: ``active`` (an order in the last ``active_days``, default 30), ``sleeping``
  (the latest between that and ``churned_days``, default 90), ``churned`` (longer ago);
- ``frequency: {min, max}``: orders in the last ``window_months`` (default 12, whole months of
  the chain's calendar, the current one included; wholly refunded orders do not count);
- ``monetary: {min, max}``: fen paid in those months (refunds taken off);
- ``tiers: [codes]``, ``channels: [channels]`` (an identity on any of them: ``card``,
  ``wechat``, a marketplace), ``tags: [tags]`` (all of them).

Issuing a coupon to a segment (``issue_coupons``) gives each member at most one coupon of that
template per segment (key ``segment:<segment>:<template>:<member>``), each in its own short
transaction: the same request again, or a later one for members who joined the segment since,
gives nobody a second coupon, and one cut short is finished by sending it again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError

from . import coupons, sql, tiers
from .errors import AlreadyExists, CouponLimitReached, CouponOutOfStock, MemberFrozen, MemberNotFound, NotFound
from .models import Segment
from .program import Program

BATCH = 500


@dataclass(frozen=True)
class Query:
    where: str
    params: list


def _between(column: str, bounds: dict | None, params: list, scale=lambda v: v, flip: bool = False) -> list[str]:
    """``column`` within ``{min, max}`` (``flip``: the bounds are ages, the column a time)."""
    found = []
    for name, op in (("min", ">="), ("max", "<=")):
        value = (bounds or {}).get(name)
        if value is None:
            continue
        params.append(scale(value))
        found.append(f"{column} {({'>=': '<=', '<=': '>='}[op] if flip else op)} ${len(params)}")
    return found


def build(rules: dict, chain_id: int, program: Program, now: datetime) -> Query:
    """The WHERE clause over ``members m`` (and ``life``, their lifetime figures row)."""
    params: list = [chain_id]
    where = ["m.chain_id = $1", "m.erased_at IS NULL", "m.merged_into IS NULL", "NOT m.unclaimed"]
    recency = rules.get("recency_days")
    if recency:
        where.append("life.last_order_at IS NOT NULL")
        where += _between("life.last_order_at", recency, params, lambda days: now - timedelta(days=days), flip=True)
    if activity := rules.get("activity"):
        recent = now - timedelta(days=rules.get("active_days", 30))
        old = now - timedelta(days=rules.get("churned_days", 90))
        where.append("life.last_order_at IS NOT NULL")
        if activity in ("active", "sleeping"):
            params.append(recent)
            where.append(f"life.last_order_at {'>' if activity == 'active' else '<='} ${len(params)}")
        if activity in ("sleeping", "churned"):
            params.append(old)
            where.append(f"life.last_order_at {'>' if activity == 'sleeping' else '<='} ${len(params)}")
    if rules.get("frequency") or rules.get("monetary"):
        first, last = tiers.window(program.model_copy(update={"tiers": program.tiers.model_copy(update={
            "window": "rolling", "window_months": rules.get("window_months", 12)})}), now)
        params += [first, last]
        months = (f"FROM member_figures f WHERE f.chain_id = m.chain_id AND f.member_id = m.id "
                  f"AND f.period BETWEEN ${len(params) - 1} AND ${len(params)}")
        where += _between(f"(SELECT COALESCE(SUM(f.orders), 0) {months})", rules.get("frequency"), params)
        where += _between(f"(SELECT COALESCE(SUM(f.spend), 0) {months})", rules.get("monetary"), params)
    if codes := rules.get("tiers"):
        params += list(codes)
        where.append(f"m.tier_code IN ({', '.join(f'${len(params) - len(codes) + 1 + i}' for i in range(len(codes)))})")
    if channels := rules.get("channels"):
        params += list(channels)
        marks = ", ".join(f"${len(params) - len(channels) + 1 + i}" for i in range(len(channels)))
        where.append(f"EXISTS (SELECT 1 FROM identities i WHERE i.chain_id = m.chain_id AND i.member_id = m.id "
                     f"AND i.channel IN ({marks}))")
    for tag in rules.get("tags") or []:
        params.append(tag)
        where.append(f"EXISTS (SELECT 1 FROM member_tags t WHERE t.chain_id = m.chain_id AND t.member_id = m.id "
                     f"AND t.tag = ${len(params)})")
    return Query(" AND ".join(where), params)


def _page_sql(query: Query) -> tuple[str, list]:
    params = [*query.params]
    return (f"SELECT m.id FROM members m LEFT JOIN member_figures life ON life.chain_id = m.chain_id "
            f"AND life.member_id = m.id AND life.period = 0 WHERE {query.where} AND m.id > ${len(params) + 1} "
            f"ORDER BY m.id LIMIT ${len(params) + 2}"), params


async def member_ids(chain_id: int, segment: Segment, program: Program, now: datetime, after: int,
                     limit: int) -> list[int]:
    """A page of the segment's members (ids above ``after``, in order)."""
    statement, params = _page_sql(build(segment.rules, chain_id, program, now))
    return [int(row["id"]) for row in await sql.rows(statement, *params, after, limit)]


async def create(chain_id: int, name: str, rules: dict) -> Segment:
    try:
        return await Segment.create(chain_id=chain_id, name=name, rules=rules)
    except IntegrityError as error:
        raise AlreadyExists(f"A segment named {name!r} exists already") from error


async def get(chain_id: int, segment_id: int) -> Segment:
    segment = await Segment.get_or_none(chain_id=chain_id, id=segment_id)
    if segment is None:
        raise NotFound(f"No segment {segment_id}")
    return segment


def segment_view(segment: Segment) -> dict:
    return {"id": segment.id, "name": segment.name, "rules": segment.rules, "created_at": segment.created_at.isoformat()}


async def issue_coupons(chain_id: int, segment: Segment, template_id: int, program: Program, now: datetime) -> dict:
    """One coupon of the template to each member of the segment who has none from this campaign."""
    if not await sql.rows("SELECT id FROM coupon_templates WHERE chain_id = $1 AND id = $2", chain_id, template_id):
        raise NotFound(f"No coupon template {template_id}")
    counts = {"members": 0, "issued": 0, "already": 0, "skipped": 0}
    after, stopped = 0, None
    while stopped is None:
        batch = await member_ids(chain_id, segment, program, now, after, BATCH)
        for member_id in batch:
            counts["members"] += 1
            key = f"segment:{segment.id}:{template_id}:{member_id}"
            try:
                counts["issued" if await coupons.issue_new(chain_id, member_id, template_id, now, key)
                       else "already"] += 1
            except (MemberFrozen, MemberNotFound, CouponLimitReached):
                counts["skipped"] += 1
            except CouponOutOfStock:
                stopped = "coupon_out_of_stock"
                break
        if len(batch) < BATCH:
            break
        after = batch[-1]
    return {"segment_id": segment.id, "template_id": template_id, **counts, "done": stopped is None,
            "stopped": stopped}
