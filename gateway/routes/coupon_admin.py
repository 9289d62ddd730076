"""Coupon templates and coupons held by members, for the chain's operators (admin key)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from adapters.pos.schemas import CouponOut
from loyalty_core import coupons, members
from loyalty_core.bounds import MAX_FEN
from loyalty_core.errors import CouponNotFound
from loyalty_core.models import CouponTemplate

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH



class NewTemplate(s.Body):
    name: str = Field(min_length=1, max_length=100, pattern=s.NO_NUL, description="unique in the chain")
    kind: Literal["cash", "percent", "gift"]
    amount_off: int = Field(0, ge=0, le=MAX_FEN, description="cash: fen off")
    percent_off: int = Field(0, ge=0, le=99, description="percent: % off what is left to pay")
    max_off: int | None = Field(None, ge=1, le=MAX_FEN, description="percent: at most this many fen off")
    sku: str | None = Field(None, min_length=1, max_length=64, pattern=s.NO_NUL, description="gift: the SKU given")
    min_spend: int = Field(0, ge=0, le=MAX_FEN, description="fen the order must come to after the tier discount")
    valid_days: int | None = Field(None, ge=1, le=3660, description="valid for this many days from its issue")
    valid_from: AwareDatetime | None = Field(None, description="or a fixed window: valid_from and valid_to")
    valid_to: AwareDatetime | None = None
    stock: int | None = Field(None, ge=1, le=2**53 - 1, description="how many may ever be issued (none: no limit)")
    per_member_limit: int | None = Field(None, ge=1, le=1_000_000, description="how many one member may hold")
    stackable: bool = Field(False, description="may be used with other stackable coupons in one order")


class TemplateOut(BaseModel):
    id: int
    name: str
    kind: str
    amount_off: int
    percent_off: int
    max_off: int | None
    sku: str | None
    min_spend: int
    valid_days: int | None
    valid_from: str | None
    valid_to: str | None
    stock: int | None
    issued: int = Field(description="coupons issued so far")
    per_member_limit: int | None
    stackable: bool
    created_at: str


class TemplatePage(BaseModel):
    items: list[TemplateOut]
    next_cursor: str | None


class IssueCoupon(s.Body):
    template_id: int = Field(ge=1, le=2**53 - 1)


class CouponPage(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None


@API.route("POST", "/v1/coupon-templates", auth="admin:coupons", summary="Create a coupon template", tag="coupons",
           body=NewTemplate, response=TemplateOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("already_exists", "validation_error"),
           description="cash needs amount_off, percent percent_off (max_off optional), gift a sku; validity by "
                       "valid_days, or valid_from and valid_to.")
async def create_template(call: Call):
    def shape(template: CouponTemplate) -> Reply:
        return Reply(coupons.template_view(template), 201)

    template = await coupons.create_template(call.chain_id, coupons.TemplateSpec(**call.body.model_dump()),
                                             seal=call.seal(shape))
    return await call.answer(shape, template)


@API.route("GET", "/v1/coupon-templates", auth="admin:read", summary="List coupon templates", tag="coupons",
           query=s.PageQuery, response=TemplatePage, errors=ERR_AUTH)
async def list_templates(call: Call):
    return await s.id_page(CouponTemplate.filter(chain_id=call.chain_id), call.query, coupons.template_view)


@API.route("POST", "/v1/members/{member_id}/coupons", auth="admin:coupons", summary="Issue a coupon to a member",
           tag="coupons", body=IssueCoupon, response=CouponOut, status=201, idempotent=True,
           errors=ERR_AUTH + ("not_found", "member_not_found", "member_frozen", "coupon_out_of_stock",
                              "coupon_limit_reached"),
           description="One coupon of the template, within its stock and per_member_limit (both hold under "
                       "concurrent issues).")
async def issue_coupon(call: Call):
    def shape(coupon: dict) -> Reply:
        return Reply(coupon, 201)

    coupon = await coupons.issue(call.chain_id, call.path_id("member_id"), call.body.template_id,
                                 call.services.clock.now(), f"claim:{call.claim_id}", seal=call.seal(shape))
    return await call.answer(shape, coupon)


@API.route("GET", "/v1/members/{member_id}/coupons", auth="admin:read", summary="A member's coupons, newest first",
           tag="coupons", query=s.PageQuery, response=CouponPage, errors=ERR_AUTH + ("not_found",))
async def member_coupons(call: Call):
    now: datetime = call.services.clock.now()
    member = await members.get_member(call.chain_id, call.path_id("member_id"))  # another chain's: 404
    found = await coupons.of_member(call.chain_id, member.id, s.decode_cursor(call.query.cursor),
                                    call.query.limit + 1, now)
    page, cursor = s.cut(found, call.query.limit, id_of=lambda coupon: coupon["id"])
    return {"items": [{k: v for k, v in coupon.items() if k != "id"} for coupon in page], "next_cursor": cursor}


class VoidCoupon(s.Body):
    reason: str = Field(min_length=1, max_length=500, pattern=s.NO_NUL, description="why, kept in the coupon.voided event")


@API.route("POST", "/v1/coupons/{code}/void", auth="admin:coupons", summary="Void an issued coupon", tag="coupons",
           body=VoidCoupon, response=CouponOut, idempotent="optional",
           errors=ERR_AUTH + ("coupon_not_found", "coupon_not_usable", "validation_error"),
           description="It can no longer be used, nor come back with a refund. A voided coupon again answers as it "
                       "is; a redeemed one is 422 coupon_not_usable.")
async def void_coupon(call: Call):
    code = call.path_code("code", 32, CouponNotFound)
    return await coupons.void(call.chain_id, code, call.body.reason, call.principal.actor, call.services.clock.now())
