"""Shapes of what every channel shows of a member (API.md, Conventions)."""
from __future__ import annotations

from pydantic import BaseModel


class Balances(BaseModel):
    points: int
    pending_points: int
    growth: int
    stored_value: int
    stored_value_principal: int
    stored_value_bonus: int


class Progress(BaseModel):
    metric: str
    current: int
    next_threshold: int | None


class Tier(BaseModel):
    code: str
    name: str
    progress: Progress
