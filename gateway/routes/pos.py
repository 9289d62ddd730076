"""POS API: what a till does at the counter (terminal signature on every call)."""
from __future__ import annotations

import orjson

from adapters.pos import orders as pos_orders
from adapters.pos.schemas import (BatchIn, BatchOut, OrderIn, OrderOut, PosMember, PreviewIn, PreviewOut,
                                  RefundIn, RefundOut, Scan, ScanOut, TopupIn, TopupOut)
from adapters.pos.schemas import CouponOut
from loyalty_core import coupons, members, orders, stored_value
from loyalty_core.errors import CouponNotFound, LoyaltyError, OrderNotFound
from loyalty_core.models import Store

from .. import schemas as s
from ..api import Call, Reply
from .admin import registered
from ..problems import from_error
from . import API

SIGNED = ("unauthorized", "stale_request", "replayed_request", "invalid_signature")
REFUSALS = ("insufficient_points", "insufficient_stored_value", "coupon_not_usable", "member_frozen",
            "invalid_redeem_points", "redeem_over_limit", "occurred_at_out_of_range", "risk_limit_exceeded")


@API.route("POST", "/v1/pos/members", auth="terminal", summary="Register a member at the counter", tag="pos",
           body=PosMember, response=s.MemberOut, status=201, idempotent=True,
           errors=SIGNED + ("already_exists", "validation_error"))
async def register_member(call: Call):
    program, store = await call.program(), await Store.get(id=call.principal.store_id)
    now = call.services.clock.now()
    new = members.NewMember(phone=call.body.phone, name=call.body.name, birthday=call.body.birthday,
                            store_code=store.code, channel="pos")
    return await registered(call, new, program, now)


@API.route("POST", "/v1/pos/scan", auth="terminal", summary="Identify what the scanner read", tag="pos",
           body=Scan, response=ScanOut, reads=True, errors=SIGNED + ("code_not_found", "code_expired", "coupon_not_found"),
           description="A dynamic member code (18 digits), an 11-digit phone, a member card number or a coupon "
                       "code (CPN and 16 characters). Answers the member with the coupons they can use now (at most "
                       "20, soonest to expire first); for a coupon code, kind coupon and that coupon too.")
async def scan(call: Call):
    return await members.scan(call.services.cache, call.services.vault, call.chain_id, call.body.code,
                              await call.program(), call.services.clock.now())


@API.route("POST", "/v1/pos/checkout/preview", auth="terminal", summary="Price an order without committing it",
           tag="pos", body=PreviewIn, response=PreviewOut, reads=True,
           errors=SIGNED + tuple(r for r in REFUSALS if r != "insufficient_stored_value")
           + ("code_not_found", "code_expired", "member_not_found"),
           description="The same figures POST /v1/pos/orders would commit; refuses what it would refuse. "
                       "payments, if sent, are ignored. No side effects.")
async def preview(call: Call):
    program, store_id = await call.program(), call.principal.store_id
    order = await pos_orders.to_core(call.body, store_id, call.chain_id, call.services.cache, call.services.vault,
                                     call.services.clock.now())
    order.payments = []
    figures = await orders.quote(call.chain_id, order, program)
    return {"subtotal": figures.subtotal, "tier_discount": figures.tier_discount,
            "coupon_discount": figures.coupon_discount, "points_discount": figures.points_discount,
            "payable": figures.payable, "points_to_earn": figures.points_to_earn}


@API.route("POST", "/v1/pos/orders", auth="terminal", summary="Commit a sale", tag="pos", body=OrderIn,
           response=OrderOut, status=201, idempotent=True, claims_with_read=True,
           errors=SIGNED + REFUSALS + ("amount_mismatch", "code_used", "code_not_found", "code_expired",
                                       "member_not_found"),
           description="All or nothing. The same (store, txn_id) again answers 200 with the first result and "
                       "duplicate: true. A dynamic member code commits one order only (409 code_used).")
async def place_order(call: Call):
    program, store_id = await call.program(), call.principal.store_id
    placed = await _place(call, call.body, store_id, program, seal=call.seal(_placed), opening=call.opening())
    return await call.answer(_placed, placed)


def _placed(placed: orders.Placed) -> Reply:
    return Reply(placed.result, 200 if placed.duplicate else 201)


async def _place(call: Call, body: OrderIn, store_id: int, program, offline: bool = False,
                 seal=None, opening=None) -> orders.Placed:
    now = call.services.clock.now()
    try:
        order = await pos_orders.to_core(body, store_id, call.chain_id, call.services.cache, call.services.vault,
                                         now, offline=offline, opening=opening)
    except LoyaltyError:
        # A resend is a duplicate whatever its member code has become since (expired, forgotten).
        if (first := await orders.placed_before(call.chain_id, pos_orders.source(store_id), body.txn_id)) is not None:
            return first
        raise
    return await orders.place_order(call.chain_id, order, program, now, seal=seal)


@API.route("POST", "/v1/pos/orders/batch", auth="terminal", summary="Upload sales kept while offline", tag="pos",
           body=BatchIn, response=BatchOut, idempotent="optional",
           description="Applied in occurred_at order, each on its own: created, duplicate or rejected (with the "
                       "problem it would have answered). Safe to send again.")
async def upload_batch(call: Call):
    program, store_id = await call.program(), call.principal.store_id
    parsed = [pos_orders.parse_batch_order(raw, index) for index, raw in enumerate(call.body.orders)]
    results: list[dict | None] = [None] * len(parsed)
    for index, item in pos_orders.in_occurred_order(parsed):
        results[index] = await _batch_one(call, item, store_id, program)
    return {"results": results}


async def _batch_one(call: Call, item, store_id: int, program) -> dict:
    if isinstance(item, pos_orders.Rejected):
        return {"txn_id": item.txn_id, "status": "rejected", "problem": _problem_dict(item.error)}
    try:
        placed = await _place(call, item, store_id, program, offline=True)
    except LoyaltyError as error:
        return {"txn_id": item.txn_id, "status": "rejected", "problem": _problem_dict(error)}
    return {"txn_id": item.txn_id, "status": "duplicate" if placed.duplicate else "created", "result": placed.result}


def _problem_dict(error: LoyaltyError) -> dict:
    return orjson.loads(from_error(error).body)


@API.route("POST", "/v1/pos/orders/{txn_id}/refunds", auth="terminal", summary="Refund an order, wholly or partly",
           tag="pos", body=RefundIn, response=RefundOut, status=201, idempotent=True,
           errors=SIGNED + ("order_not_found", "refund_exceeds_order"),
           description="By lines ({sku, qty}) or by amount (fen of the payable). Earned points are reversed pro rata "
                       "(even into a negative balance); redeemed points and stored value come back pro rata. "
                       "The same refund_id again answers 200 with the first result.")
async def refund(call: Call):
    program, store_id = await call.program(), call.principal.store_id
    body = call.body
    placed = await orders.refund_order(call.chain_id, orders.RefundInput(
        source=pos_orders.source(store_id), txn_id=call.path_code("txn_id", 64, OrderNotFound), refund_id=body.refund_id,
        lines=[(line.sku, line.qty) for line in body.lines] if body.lines else None, amount=body.amount),
        program, call.services.clock.now(), seal=call.seal(_placed))
    return await call.answer(_placed, placed)


@API.route("POST", "/v1/pos/stored-value/topups", auth="terminal", summary="Top up a member's stored value",
           tag="pos", body=TopupIn, response=TopupOut, status=201, idempotent=True, claims_with_read=True,
           errors=SIGNED + ("member_frozen", "member_not_found", "code_not_found", "code_expired", "validation_error"),
           description="Credits the amount as principal and the bonus of the highest topup_bonuses rule whose min it "
                       "reaches, in separate accounts (payments spend principal first). Once per (store, topup_id): the "
                       "same topup_id again answers 200 with the first result and duplicate: true. A dynamic member "
                       "code identifies the member and stays usable for the order that follows.")
async def top_up(call: Call):
    body, now = call.body, call.services.clock.now()
    member, _ = await pos_orders.member_named(body.member_code, body.member_id, call.chain_id, call.services.cache,
                                              call.services.vault, now, call.opening())
    placed = await stored_value.top_up(call.chain_id, stored_value.TopupInput(
        store_id=call.principal.store_id, topup_id=body.topup_id, member=member, amount=body.amount,
        payment_method=body.payment_method), await call.program(), now, seal=call.seal(_placed))
    return await call.answer(_placed, placed)


@API.route("POST", "/v1/pos/coupons/{code}/redeem", auth="terminal", summary="Redeem a gift coupon at the counter",
           tag="pos", response=CouponOut, idempotent=True,
           errors=SIGNED + ("coupon_not_found", "coupon_not_usable", "member_frozen"),
           description="A gift coupon handed over by itself, without an order; once. Cash and percent coupons are "
                       "used in an order (coupons in POST /v1/pos/orders).")
async def redeem_coupon(call: Call):
    code = call.path_code("code", 32, CouponNotFound)
    redeemed = await coupons.redeem_at_counter(call.chain_id, code, call.services.clock.now(), seal=call.seal(Reply))
    return await call.answer(Reply, redeemed)
