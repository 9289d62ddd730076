"""Reports for the chain's operators (any admin role may read them)."""
from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from loyalty_core import reports

from ..api import Call
from . import API
from .admin import ERR_AUTH


class PointsOwed(BaseModel):
    available: int = Field(description="points members can spend now")
    pending: int = Field(description="points earned, not yet vested")


class StoredValueOwed(BaseModel):
    principal: int = Field(description="fen members paid in and have not spent")
    bonus: int = Field(description="fen of top-up bonus not spent")


class LiabilityOut(BaseModel):
    points: PointsOwed
    stored_value: StoredValueOwed


@API.route("GET", "/v1/reports/liability", auth="admin:read", summary="What the chain owes its members",
           tag="reports", response=LiabilityOut, errors=ERR_AUTH,
           description="The sums of the members' balances as they stand now. A balance below zero (points clawed "
                       "back by a refund after they were spent) counts as zero: nobody is owed it.")
async def liability(call: Call):
    return await reports.liability(call.chain_id)


class ActivityQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="the first day (the chain's calendar)")
    to: date = Field(description="the last day, included; at most 366 days after from")


class PointsMoved(BaseModel):
    issued: int = Field(description="points earned and given (refunds' claw-backs taken off)")
    redeemed: int = Field(description="points spent (points a refund gave back taken off)")
    expired: int


class Activity(BaseModel):
    active: int = Field(description="members with an order in the period")
    repeat: int = Field(description="members with two or more")
    repeat_rate: float = Field(description="repeat / active, 4 decimals (0 when nobody was active)")


class MembersActivity(Activity):
    joined: int


class ChannelActivity(Activity):
    points: PointsMoved
    orders: int


class ActivityOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    timezone: str
    points: PointsMoved
    members: MembersActivity
    by_channel: dict[str, ChannelActivity]


@API.route("GET", "/v1/reports/activity", auth="admin:read", summary="Points and members over a period",
           tag="reports", query=ActivityQuery, response=ActivityOut, errors=ERR_AUTH + ("validation_error",),
           description="Whole days of the chain's calendar, from and to included. Members' orders and points "
                       "by channel (pos, a marketplace ...); guests are not members and are not counted.")
async def activity(call: Call):
    return await reports.activity(call.chain_id, call.query.from_, call.query.to, await call.program())
