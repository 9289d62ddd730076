"""Coupons: templates, issuing them to members, and using them at the till.

A coupon's code is ``CPN`` and 16 random characters of Crockford's base32 (80 bits from
``secrets``): it cannot be guessed, does not follow the one before, and a scanner's reading of
it is told apart from a dynamic member code (18 digits), a phone (11 digits) and a card number
(card numbers of this form are refused at registration).

Issuing is one transaction: the member's row is locked (so ``per_member_limit`` counts their
coupons one issue at a time), the template's ``issued`` count is raised by a guarded update (so
``stock`` holds across processes), the coupon row is written under the cause's ``issue_key`` (a
cause issues once), and ``coupon.issued`` goes to the outbox.

An order reads its coupons with their templates before its transaction (the pricing rules in
``rules.coupons`` refuse what cannot be used) and marks them redeemed inside it with a guarded
update in its last statement: a coupon two tills use at once is redeemed by one order, the other
is refused and applies nothing. A full refund gives back the coupons that are still valid.
"""
from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import codes, sql
from .errors import (AlreadyExists, CouponLimitReached, CouponNotFound, CouponNotUsable, CouponOutOfStock,
                     NotFound, ValidationFailed)
from .models import CouponTemplate
from .outbox import emit
from .rules.coupons import Held, usable
from .unit import Seal, seal_with

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
CODE = re.compile(r"^CPN[0-9A-HJKMNP-TV-Z]{16}$")
USABLE_SHOWN = 20  # coupons a scan lists


def new_code() -> str:
    return "CPN" + "".join(secrets.choice(ALPHABET) for _ in range(16))


def looks_like_coupon(code: str) -> bool:
    return bool(CODE.match(code.strip().upper()))


# ---- templates ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateSpec:
    name: str
    kind: str
    amount_off: int = 0
    percent_off: int = 0
    max_off: int | None = None
    sku: str | None = None
    min_spend: int = 0
    valid_days: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    stock: int | None = None
    per_member_limit: int | None = None
    stackable: bool = False


def check_template(spec: TemplateSpec) -> None:
    """What each kind needs, and one way of validity: ``valid_days`` or ``valid_from`` + ``valid_to``."""
    errors = []
    if spec.kind == "cash" and spec.amount_off < 1:
        errors.append({"field": "amount_off", "message": "a cash coupon takes at least 1 fen off"})
    if spec.kind == "percent" and not 1 <= spec.percent_off <= 99:
        errors.append({"field": "percent_off", "message": "a percent coupon takes 1 to 99 % off"})
    if spec.kind == "gift" and not spec.sku:
        errors.append({"field": "sku", "message": "a gift coupon names the SKU it gives"})
    fixed = spec.valid_from is not None or spec.valid_to is not None
    if (spec.valid_days is None) == (not fixed):
        errors.append({"field": "valid_days", "message": "send valid_days, or valid_from and valid_to"})
    elif fixed and (spec.valid_from is None or spec.valid_to is None or spec.valid_from >= spec.valid_to):
        errors.append({"field": "valid_to", "message": "valid_from and valid_to both, valid_from first"})
    if errors:
        raise ValidationFailed(errors)


async def create_template(chain_id: int, spec: TemplateSpec, seal: Seal | None = None) -> CouponTemplate:
    check_template(spec)
    try:
        async with in_transaction():
            template = await CouponTemplate.create(chain_id=chain_id, **spec.__dict__)
            await seal_with(seal, template)
    except IntegrityError as error:
        raise AlreadyExists(f"A coupon template named {spec.name!r} exists already") from error
    return template


def template_view(t: CouponTemplate) -> dict:
    return {"id": t.id, "name": t.name, "kind": t.kind, "amount_off": t.amount_off, "percent_off": t.percent_off,
            "max_off": t.max_off, "sku": t.sku, "min_spend": t.min_spend, "valid_days": t.valid_days,
            "valid_from": _iso(t.valid_from), "valid_to": _iso(t.valid_to), "stock": t.stock, "issued": t.issued,
            "per_member_limit": t.per_member_limit, "stackable": t.stackable, "created_at": _iso(t.created_at)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# ---- issuing ------------------------------------------------------------------------------

TAKE_STOCK = ("UPDATE coupon_templates SET issued = issued + 1 WHERE chain_id = $1 AND id = $2 "
              "AND (stock IS NULL OR issued < stock) RETURNING id, name, kind, amount_off, percent_off, max_off, sku, "
              "min_spend, stackable, valid_days, valid_from, valid_to, per_member_limit")
TEMPLATE_EXISTS = "SELECT id FROM coupon_templates WHERE chain_id = $1 AND id = $2"
HELD_OF_TEMPLATE = "SELECT count(*) AS n FROM coupons WHERE chain_id = $1 AND template_id = $2 AND member_id = $3"
BY_ISSUE_KEY = "SELECT {columns} FROM coupons c JOIN coupon_templates t ON t.id = c.template_id " \
               "WHERE c.chain_id = $1 AND c.issue_key = $2"
INSERT = ("INSERT INTO coupons (chain_id, template_id, member_id, code, issue_key, status, valid_from, valid_to, "
          "issued_at) VALUES ($1, $2, $3, $4, $5, 'issued', $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id")
VIEW_COLUMNS = ("c.code, c.template_id, c.member_id, c.status, c.valid_from, c.valid_to, c.order_id, c.redeemed_at, "
                "c.issued_at, t.name, t.kind, t.amount_off, t.percent_off, t.max_off, t.sku, t.min_spend, t.stackable")


async def issue(chain_id: int, member_id: int, template_id: int, now: datetime, issue_key: str,
                seal: Seal | None = None) -> dict:
    """Issue one coupon of the template to the member, once per ``issue_key``; the coupon's view."""
    async with in_transaction():
        if found := await sql.rows(BY_ISSUE_KEY.format(columns=VIEW_COLUMNS), chain_id, issue_key):
            coupon = coupon_view(found[0], now)  # this cause issued it already
        else:
            coupon, event = await issue_within(chain_id, member_id, template_id, now, issue_key)
            await emit(chain_id, *event, now)
        await seal_with(seal, coupon)
    return coupon


async def issue_new(chain_id: int, member_id: int, template_id: int, now: datetime, issue_key: str) -> bool:
    """For a job or a campaign, in a transaction of its own: ``issue_once_within`` (False too when
    a run beside this one issues it meanwhile)."""
    try:
        async with in_transaction():
            return await issue_once_within(chain_id, member_id, template_id, now, issue_key)
    except IntegrityError:
        return False


async def issue_once_within(chain_id: int, member_id: int, template_id: int, now: datetime, issue_key: str) -> bool:
    """Inside the caller's transaction, issue (and announce) unless this cause has already; True when it did."""
    if await sql.rows(BY_ISSUE_KEY.format(columns="c.id"), chain_id, issue_key):
        return False
    _, event = await issue_within(chain_id, member_id, template_id, now, issue_key)
    await emit(chain_id, *event, now)
    return True


async def issue_within(chain_id: int, member_id: int, template_id: int, now: datetime, issue_key: str,
                       member_locked: bool = False) -> tuple[dict, tuple[str, dict]]:
    """Issue inside the caller's transaction (a registration's welcome coupons, a mall redemption,
    which has locked the member already): the coupon's view and its ``coupon.issued`` event, for
    the caller to send with its own. A cause that issued already makes the insert fail."""
    if not member_locked:
        await codes.lock_active_member(chain_id, member_id, "This member is frozen: no coupons are issued to them")
    template = await _take_stock(chain_id, template_id)
    limit = template["per_member_limit"]
    if limit is not None and (await sql.rows(HELD_OF_TEMPLATE, chain_id, template_id, member_id))[0]["n"] >= limit:
        raise CouponLimitReached(f"A member may hold {limit} of {template['name']!r}; this one has them all")
    valid_from, valid_to = _validity(template, now)
    for _ in range(3):  # a clash of 80 random bits is not expected; a retry costs nothing
        code = new_code()
        if await sql.rows(INSERT, chain_id, template_id, member_id, code, issue_key, valid_from, valid_to, now):
            break
        if await sql.rows(BY_ISSUE_KEY.format(columns="c.id"), chain_id, issue_key):
            raise IntegrityError(f"coupon {issue_key} issued meanwhile")  # a twin of this cause committed first
    else:
        raise RuntimeError("no free coupon code after three draws")
    coupon = coupon_view({**template, "code": code, "template_id": template_id, "member_id": member_id,
                          "status": "issued", "valid_from": valid_from, "valid_to": valid_to, "order_id": None,
                          "redeemed_at": None, "issued_at": now}, now)
    return coupon, ("coupon.issued", {"member_id": member_id, "template_id": template_id, "code": code,
                                      "valid_to": coupon["valid_to"]})


async def _take_stock(chain_id: int, template_id: int) -> dict:
    if taken := await sql.rows(TAKE_STOCK, chain_id, template_id):
        return taken[0]
    if not await sql.rows(TEMPLATE_EXISTS, chain_id, template_id):
        raise NotFound(f"No coupon template {template_id}")
    raise CouponOutOfStock(f"Coupon template {template_id} has no stock left")


def _validity(template: dict, now: datetime) -> tuple[datetime, datetime]:
    if template["valid_days"] is not None:
        return now, now + timedelta(days=int(template["valid_days"]))
    return sql.aware(template["valid_from"]), sql.aware(template["valid_to"])


def status_of(row: dict, now: datetime) -> str:
    """The coupon's state as a member or a cashier reads it (an issued coupon past its end is expired)."""
    if row["status"] == "issued" and now >= sql.aware(row["valid_to"]):
        return "expired"
    return row["status"]


def coupon_view(row: dict, now: datetime) -> dict:
    return {"code": row["code"], "template_id": row["template_id"], "member_id": row["member_id"],
            "name": row["name"], "kind": row["kind"], "status": status_of(row, now),
            "amount_off": row["amount_off"], "percent_off": row["percent_off"], "max_off": row["max_off"],
            "sku": row["sku"], "min_spend": row["min_spend"], "stackable": bool(row["stackable"]),
            "valid_from": sql.aware(row["valid_from"]).isoformat(), "valid_to": sql.aware(row["valid_to"]).isoformat(),
            "order_id": row["order_id"], "redeemed_at": _iso(sql.aware(row["redeemed_at"]))}


# ---- reading ------------------------------------------------------------------------------

BY_CODE = f"SELECT {VIEW_COLUMNS} FROM coupons c JOIN coupon_templates t ON t.id = c.template_id " \
          "WHERE c.chain_id = $1 AND c.code = $2"
OF_MEMBER = (f"SELECT c.id, {VIEW_COLUMNS} FROM coupons c JOIN coupon_templates t ON t.id = c.template_id "
             "WHERE c.chain_id = $1 AND c.member_id = $2 AND c.id < $3 ORDER BY c.id DESC LIMIT $4")


_USABLE_FIELDS = ("code", "template_id", "member_id", "status", "valid_from", "valid_to", "order_id", "redeemed_at",
                  "issued_at", "name", "kind", "amount_off", "percent_off", "max_off", "sku", "min_spend", "stackable")
USABLE_COLUMN = "~usable_coupons"


def usable_column(now_param: int) -> str:
    """``_usable_column`` for the database in use (built once per dialect: a scan asks for it)."""
    return _usable_column(sql.dialect(), now_param)


@functools.cache
def _usable_column(dialect: str, now_param: int) -> str:
    """The member's usable coupons (issued, valid now, soonest to expire first, at most ``USABLE_SHOWN``) as one JSON column of their row,
    for a statement over ``members`` that passes the time as ``$now_param``: a scan stays one
    round trip. JSON is built by each database's own aggregate."""
    inner = (f"SELECT {VIEW_COLUMNS}, c.id FROM coupons c JOIN coupon_templates t ON t.id = c.template_id "
             "WHERE c.chain_id = members.chain_id AND c.member_id = members.id AND c.status = 'issued' "
             f"AND c.valid_to > ${now_param} AND c.valid_from <= ${now_param} ORDER BY c.valid_to, c.id "
             f"LIMIT {USABLE_SHOWN}")
    if dialect == "postgres":
        aggregate = "COALESCE(json_agg(u ORDER BY u.valid_to, u.id), '[]'::json)"
    else:
        aggregate = "json_group_array(json_object({}))".format(", ".join(f"'{f}', u.{f}" for f in _USABLE_FIELDS))
    return f", (SELECT {aggregate} FROM ({inner}) u) AS \"{USABLE_COLUMN}\""


def usable_in(row: dict, now: datetime) -> list[dict]:
    """The coupons ``usable_column`` put in ``row``."""
    found = row.get(USABLE_COLUMN)
    return [coupon_view(item, now) for item in (orjson.loads(found) if isinstance(found, (str, bytes)) else found or [])]


async def find(chain_id: int, code: str, now: datetime) -> dict:
    found = await sql.rows(BY_CODE, chain_id, code.strip().upper())
    if not found:
        raise CouponNotFound("No coupon with this code")
    return coupon_view(found[0], now)


async def of_member(chain_id: int, member_id: int, before_id: int | None, limit: int, now: datetime) -> list[dict]:
    """A member's coupons, newest first, a page of ``limit`` before ``before_id``; each with its ``id``."""
    rows = await sql.rows(OF_MEMBER, chain_id, member_id, before_id or 2**62, limit)
    return [{**coupon_view(row, now), "id": row["id"]} for row in rows]


# ---- in an order --------------------------------------------------------------------------

def _codes_in(first: int, count: int) -> str:
    return ", ".join(f"${first + i}" for i in range(count))


async def held_for_order(chain_id: int, codes: list[str]) -> list[Held]:
    """The order's coupons with their templates, in the order sent; an unknown code is refused."""
    wanted = [code.strip().upper() for code in codes]
    rows = await sql.rows(f"SELECT {VIEW_COLUMNS} FROM coupons c JOIN coupon_templates t ON t.id = c.template_id "
                          f"WHERE c.chain_id = $1 AND c.code IN ({_codes_in(2, len(wanted))})", chain_id, *wanted)
    by_code = {row["code"]: row for row in rows}
    held = []
    for code in wanted:
        if (row := by_code.get(code)) is None:
            raise CouponNotUsable(f"Coupon {code!r} is not a coupon of this chain")
        held.append(Held(code=code, member_id=int(row["member_id"]), status=row["status"],
                         valid_from=sql.aware(row["valid_from"]), valid_to=sql.aware(row["valid_to"]),
                         kind=row["kind"], amount_off=int(row["amount_off"]), percent_off=int(row["percent_off"]),
                         max_off=row["max_off"], sku=row["sku"], min_spend=int(row["min_spend"]),
                         stackable=bool(row["stackable"])))
    return held


def redeeming(chain_id: int, codes: list[str], member_id: int, order_id: int, now: datetime) -> tuple[str, list]:
    """The guarded update that marks an order's coupons redeemed (a row back for each it took);
    for the order's last statement. Nothing without coupons."""
    if not codes:
        return "", []
    wanted = [code.strip().upper() for code in codes]
    return (f"UPDATE coupons SET status = 'redeemed', order_id = $3, redeemed_at = $4 WHERE chain_id = $1 "
            f"AND member_id = $2 AND status = 'issued' AND valid_to > $4 AND code IN ({_codes_in(5, len(wanted))}) "
            "RETURNING id", [chain_id, member_id, order_id, now, *wanted])


RESTORE = ("UPDATE coupons SET status = 'issued', order_id = NULL, redeemed_at = NULL WHERE chain_id = $1 "
           "AND order_id = $2 AND status = 'redeemed' AND valid_to > $3 RETURNING code")


async def restore(chain_id: int, order_id: int, now: datetime) -> list[str]:
    """A wholly refunded order's coupons that are still valid, usable again; their codes."""
    return sorted(row["code"] for row in await sql.rows(RESTORE, chain_id, order_id, now))


# ---- at the counter -------------------------------------------------------------------------

REDEEM_GIFT = ("UPDATE coupons SET status = 'redeemed', redeemed_at = $3 WHERE chain_id = $1 AND code = $2 "
               "AND status = 'issued' AND valid_to > $3 AND valid_from <= $3 RETURNING id")


async def redeem_at_counter(chain_id: int, code: str, now: datetime, seal: Seal | None = None) -> dict:
    """Redeem a gift coupon on its own (the gift handed over at the counter); once."""
    coupon = await find(chain_id, code, now)
    if coupon["kind"] != "gift":
        raise CouponNotUsable(f"Coupon {coupon['code']} is a {coupon['kind']} coupon: use it in an order")
    async with in_transaction():
        await codes.lock_active_member(chain_id, coupon["member_id"], "This member is frozen: no coupons are redeemed")
        if not await sql.rows(REDEEM_GIFT, chain_id, coupon["code"], now):
            held = await held_for_order(chain_id, [coupon["code"]])
            usable(held[0], held[0].member_id, now)  # raises the reason
            raise CouponNotUsable(f"Coupon {coupon['code']} cannot be used")
        redeemed = await find(chain_id, coupon["code"], now)
        await emit(chain_id, "coupon.redeemed", {"member_id": redeemed["member_id"], "code": redeemed["code"],
                                                 "order_id": None}, now)
        await seal_with(seal, redeemed)
    return redeemed


# ---- voiding --------------------------------------------------------------------------------

VOID = ("UPDATE coupons SET status = 'voided' WHERE chain_id = $1 AND code = $2 AND status = 'issued' "
        "RETURNING id, member_id")


async def void(chain_id: int, code: str, reason: str, actor: str, now: datetime) -> dict:
    """An operator takes back an issued coupon (sent by mistake, a fraud case): it can no longer be
    used, and it is not restored by a refund. Voiding a voided coupon answers it as it is; a
    redeemed one cannot be voided (422 ``coupon_not_usable``)."""
    coupon = await find(chain_id, code, now)
    if coupon["status"] == "voided":
        return coupon
    async with in_transaction():
        voided = await sql.rows(VOID, chain_id, coupon["code"])
        if not voided:
            raise CouponNotUsable(f"Coupon {coupon['code']} was {coupon['status']}: only an issued coupon is voided")
        await emit(chain_id, "coupon.voided", {"member_id": coupon["member_id"], "code": coupon["code"],
                                               "reason": reason, "by": actor}, now)
    return await find(chain_id, coupon["code"], now)
