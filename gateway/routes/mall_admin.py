"""The points mall's catalogue, and redemption on a member's behalf (customer service)."""
from __future__ import annotations

from pydantic import BaseModel, Field

from adapters.pos.schemas import CouponOut
from loyalty_core import mall
from loyalty_core.models import Reward
from loyalty_core.views import Balances

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH


class NewReward(s.Body):
    name: str = Field(min_length=1, max_length=100, pattern=s.NO_NUL, description="unique in the chain")
    points: int = Field(ge=1, le=2**53 - 1, description="the price in points")
    template_id: int = Field(ge=1, le=2**53 - 1, description="the coupon template a redemption issues one of")
    stock: int | None = Field(None, ge=1, le=2**53 - 1, description="how many may ever be redeemed (none: no limit)")
    per_member_limit: int | None = Field(None, ge=1, le=1_000_000)
    active: bool = True


class RewardOut(BaseModel):
    id: int
    name: str
    points: int
    template_id: int
    stock: int | None
    redeemed: int
    left: int | None
    per_member_limit: int | None
    active: bool
    created_at: str


class RewardPage(BaseModel):
    items: list[RewardOut]
    next_cursor: str | None


class RedemptionOut(BaseModel):
    reward_id: int
    member_id: int
    points: int
    coupon: CouponOut
    balances: Balances


@API.route("POST", "/v1/rewards", auth="admin:coupons", summary="Add a reward to the points mall", tag="mall",
           body=NewReward, response=RewardOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("already_exists", "not_found", "validation_error"))
async def create_reward(call: Call):
    def shape(reward: Reward) -> Reply:
        return Reply(mall.reward_view(reward), 201)

    reward = await mall.create_reward(call.chain_id, mall.RewardSpec(**call.body.model_dump()), seal=call.seal(shape))
    return await call.answer(shape, reward)


@API.route("GET", "/v1/rewards", auth="admin:read", summary="The points mall's catalogue", tag="mall",
           query=s.PageQuery, response=RewardPage, errors=ERR_AUTH)
async def list_rewards(call: Call):
    return await s.id_page(Reward.filter(chain_id=call.chain_id), call.query, mall.reward_view)


@API.route("POST", "/v1/members/{member_id}/rewards/{reward_id}/redeem", auth="admin:members",
           summary="Redeem a reward for a member (customer service)", tag="mall", response=RedemptionOut,
           status=201, idempotent=True,
           errors=ERR_AUTH + ("not_found", "member_not_found", "member_frozen", "insufficient_points",
                              "coupon_out_of_stock", "coupon_limit_reached"),
           description="Takes the reward's points and issues its coupon, all or nothing, once per request. The "
                       "member's own route is POST /v1/mp/rewards/{id}/redeem (the mini-program).")
async def redeem_for_member(call: Call):
    def shape(answer: dict) -> Reply:
        return Reply(answer, 201)

    answer = await mall.redeem(call.chain_id, call.path_id("member_id"), call.path_id("reward_id"),
                               call.services.clock.now(), f"claim:{call.claim_id}", (await call.program()).timezone,
                               seal=call.seal(shape))
    return await call.answer(shape, answer)
