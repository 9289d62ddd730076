"""The manual review queue (tier upgrades to a manual_review level, risk flags), for operators."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from loyalty_core import reviews

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH


class ReviewQuery(BaseModel):
    status: Literal["pending", "approved", "rejected"] | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class Decision(s.Body):
    approve: bool
    note: str | None = Field(None, max_length=500, pattern=s.NO_NUL, description="why, kept with the decision")


class ReviewTier(BaseModel):
    code: str
    name: str
    changed: bool


class ReviewOut(BaseModel):
    id: int
    member_id: int
    kind: str = Field(description="tier_upgrade or risk")
    subject: str = Field(description="the level's code, or the risk limit crossed")
    status: str = Field(description="pending, approved or rejected")
    detail: dict
    opened_at: str
    decided_at: str | None
    decided_by: str | None
    note: str | None
    tier: ReviewTier | None = Field(None, description="an approved tier upgrade: the member's tier after it")


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_cursor: str | None


@API.route("GET", "/v1/reviews", auth="admin:read", summary="The review queue, oldest first", tag="reviews",
           query=ReviewQuery, response=ReviewPage, errors=ERR_AUTH)
async def list_reviews(call: Call):
    found = await reviews.list_reviews(call.chain_id, call.query.status, s.decode_cursor(call.query.cursor),
                                       call.query.limit + 1)
    page, cursor = s.cut(found, call.query.limit)
    return {"items": [reviews.review_view(r) for r in page], "next_cursor": cursor}


@API.route("POST", "/v1/reviews/{review_id}/decision", auth="admin:members", summary="Approve or reject a review",
           tag="reviews", body=Decision, response=ReviewOut, idempotent=True,
           errors=ERR_AUTH + ("not_found", "review_decided", "validation_error"),
           description="Once: the same decision again answers the review as it is; the other decision is 409 "
                       "review_decided. An approved tier upgrade moves the member up to the level at once. The "
                       "decision is also a journal entry on the member, with the admin key and the note.")
async def decide(call: Call):
    decided = await reviews.decide(call.chain_id, call.path_id("review_id"), call.body.approve, call.body.note,
                                   call.principal.actor, await call.program(), call.services.clock.now(),
                                   seal=call.seal(Reply))
    return await call.answer(Reply, decided)
