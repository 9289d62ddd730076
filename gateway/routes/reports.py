"""Reports for the chain's operators (any admin role may read them)."""
from __future__ import annotations

from pydantic import BaseModel, Field

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
