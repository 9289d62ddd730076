"""Rule segments, their members, and coupon campaigns to them (admin key)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from loyalty_core import segments

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH

Label = Annotated[str, Field(min_length=1, max_length=32, pattern=s.NO_NUL)]


class Days(s.Body):
    min: int | None = Field(None, ge=0, le=36500)
    max: int | None = Field(None, ge=0, le=36500)


class Count(s.Body):
    min: int | None = Field(None, ge=0, le=2**53 - 1)
    max: int | None = Field(None, ge=0, le=2**53 - 1)


class Rules(s.Body):
    recency_days: Days | None = Field(None, description="days since the latest order")
    activity: Literal["active", "sleeping", "churned"] | None = None
    active_days: int = Field(30, ge=1, le=36500, description="an order within this many days is active")
    churned_days: int = Field(90, ge=1, le=36500, description="no order for this many days is churned")
    frequency: Count | None = Field(None, description="orders in the last window_months")
    monetary: Count | None = Field(None, description="fen paid in the last window_months")
    window_months: int = Field(12, ge=1, le=120)
    tiers: list[Label] | None = Field(None, max_length=50)
    channels: list[Label] | None = Field(None, max_length=50, description="an identity on any of them")
    tags: list[Label] | None = Field(None, max_length=50, description="all of them")

    @model_validator(mode="after")
    def _order(self):
        if self.churned_days <= self.active_days:
            raise ValueError("churned_days must be more than active_days")
        return self


class NewSegment(s.Body):
    name: str = Field(min_length=1, max_length=100, pattern=s.NO_NUL)
    rules: Rules


class SegmentOut(BaseModel):
    id: int
    name: str
    rules: dict
    created_at: str


class SegmentMembers(BaseModel):
    items: list[int] = Field(description="member ids, in order")
    next_cursor: str | None


class Campaign(s.Body):
    template_id: int = Field(ge=1, le=2**53 - 1)


class CampaignOut(BaseModel):
    segment_id: int
    template_id: int
    members: int = Field(description="members of the segment now")
    issued: int = Field(description="coupons issued by this request")
    already: int = Field(description="members who had this campaign's coupon already")
    skipped: int = Field(description="members who cannot have it (frozen, at the template's per-member limit)")
    done: bool
    stopped: str | None = Field(None, description="coupon_out_of_stock when the template ran out")


@API.route("POST", "/v1/segments", auth="admin:coupons", summary="Create a rule segment", tag="segments",
           body=NewSegment, response=SegmentOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("already_exists", "validation_error"))
async def create_segment(call: Call):
    segment = await segments.create(call.chain_id, call.body.name, call.body.rules.model_dump(exclude_none=True))
    return Reply(segments.segment_view(segment), 201)


@API.route("GET", "/v1/segments/{segment_id}/members", auth="admin:read", summary="The segment's members now",
           tag="segments", query=s.PageQuery, response=SegmentMembers, errors=ERR_AUTH + ("not_found",))
async def segment_members(call: Call):
    segment = await segments.get(call.chain_id, call.path_id("segment_id"))
    ids = await segments.member_ids(call.chain_id, segment, await call.program(), call.services.clock.now(),
                                    s.decode_cursor(call.query.cursor) or 0, call.query.limit + 1)
    page, cursor = s.cut(ids, call.query.limit, id_of=lambda member_id: member_id)
    return {"items": page, "next_cursor": cursor}


@API.route("POST", "/v1/segments/{segment_id}/coupons", auth="admin:coupons", summary="Issue a coupon to a segment",
           tag="segments", body=Campaign, response=CampaignOut, idempotent=True,
           errors=ERR_AUTH + ("not_found",),
           description="One coupon of the template to every member of the segment, once each: sending it again (or "
                       "later, for members who joined since) gives nobody a second one, and finishes a run cut short.")
async def segment_coupons(call: Call):
    segment = await segments.get(call.chain_id, call.path_id("segment_id"))
    return await segments.issue_coupons(call.chain_id, segment, call.body.template_id, await call.program(),
                                        call.services.clock.now())
