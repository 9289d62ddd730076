"""The chain's program: every rule a chain operator can set, validated as a whole.

Ratios and multipliers are ``Decimal`` (parsed from the JSON text, never through a binary
float), so 6000 fen x 1.15 earns 69 points, not 68.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from .bounds import MAX_COUNT, MAX_FEN
from .clock import is_timezone


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


Ratio = Annotated[Decimal, Field(ge=0), PlainSerializer(_number, return_type=float | int)]
Factor = Annotated[Decimal, Field(ge=0, le=100), PlainSerializer(_number, return_type=float | int)]
HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EarnRate(Strict):
    per_amount: int = Field(100, gt=0, description="fen of eligible amount per earning step", le=MAX_COUNT)
    points: int = Field(1, ge=0, description="points per `per_amount` fen", le=MAX_COUNT)


class Campaign(Strict):
    name: str = Field(min_length=1, max_length=100)
    days_of_month: list[Annotated[int, Field(ge=1, le=31)]] | None = None
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(None, description="ISO: 1 Monday ... 7 Sunday")
    hours: str | None = Field(None, description="`HH:MM-HH:MM`, start included, end excluded")
    factor: Factor

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            match = HOURS.match(value)
            if not match or value[:5] >= value[6:]:
                raise ValueError("hours must be 'HH:MM-HH:MM' with the start before the end")
        return value


class Expiry(Strict):
    mode: Literal["rolling_months", "year_end", "never"] = "never"
    months: int | None = Field(None, ge=1, le=240)
    years_after: int = Field(0, ge=0, le=10)
    warn_days: int = Field(7, ge=0, le=90, description="days before points expire that the member is told "
                                                       "(points.expiring; 0: never)")

    @model_validator(mode="after")
    def _months_needed(self) -> "Expiry":
        if self.mode == "rolling_months" and self.months is None:
            raise ValueError("rolling_months needs months")
        return self


class Redeem(Strict):
    points: int = Field(100, gt=0, description="points per redeem step", le=MAX_COUNT)
    amount: int = Field(100, ge=0, description="fen off per redeem step", le=MAX_FEN)
    max_ratio: Ratio = Field(Decimal("0.5"), le=1)


class Points(Strict):
    earn: EarnRate = EarnRate()
    category_multipliers: dict[str, Factor] = {}
    exclude_categories: list[str] = []
    campaigns: list[Campaign] = []
    pending_days: int = Field(0, ge=0, le=365)
    expiry: Expiry = Expiry()
    redeem: Redeem = Redeem()


class Behavior(Strict):
    points: int = Field(0, ge=0, le=MAX_COUNT)
    daily_cap: int | None = Field(None, ge=0, le=MAX_COUNT)
    monthly_cap: int | None = Field(None, ge=0, le=MAX_COUNT)
    streak_bonus: dict[str, Annotated[int, Field(ge=0, le=MAX_COUNT)]] = {}

    @field_validator("streak_bonus")
    @classmethod
    def _streak_days(cls, value: dict[str, int]) -> dict[str, int]:
        for day in value:
            if not (day.isascii() and day.isdigit()) or len(day) > 4 or int(day) < 1:
                raise ValueError("streak_bonus keys are day counts such as '7'")
        return value


class Behaviors(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    register_: Behavior = Field(Behavior(), alias="register")
    checkin: Behavior = Behavior()
    review: Behavior = Behavior()
    share: Behavior = Behavior()
    complete_profile: Behavior = Behavior()
    invite: Behavior = Behavior()


class Level(Strict):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1, max_length=50)
    threshold: int = Field(ge=0, le=MAX_COUNT)
    earn_multiplier: Factor = Decimal(1)
    discount_percent: Ratio = Field(Decimal(0), le=100)
    manual_review: bool = False


class TaskUpgrade(Strict):
    task: str = Field(min_length=1)
    count: int = Field(1, ge=1, le=MAX_COUNT)
    to: str


class Tiers(Strict):
    metric: Literal["growth", "points_earned", "spend", "stored_value"] = "growth"
    window_months: int = Field(12, ge=1, le=120)
    window: Literal["rolling", "calendar_year"] = "rolling"
    retention_months: int = Field(12, ge=0, le=120)
    levels: list[Level] = [Level(code="regular", name="普通会员", threshold=0)]
    task_upgrades: list[TaskUpgrade] = []

    @model_validator(mode="after")
    def _ladder(self) -> "Tiers":
        if not self.levels:
            raise ValueError("at least one level is needed")
        if self.levels[0].threshold != 0:
            raise ValueError("the first level's threshold must be 0")
        thresholds = [level.threshold for level in self.levels]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("level thresholds must rise strictly")
        codes = [level.code for level in self.levels]
        if len(set(codes)) != len(codes):
            raise ValueError("level codes must be unique")
        for upgrade in self.task_upgrades:
            if upgrade.to not in codes:
                raise ValueError(f"task upgrade names unknown level {upgrade.to!r}")
        return self


class TopupBonus(Strict):
    min: int = Field(gt=0, le=MAX_FEN)
    bonus: int = Field(ge=0, le=MAX_FEN)


class StoredValue(Strict):
    topup_bonuses: list[TopupBonus] = []


class Birthday(Strict):
    coupon_template: str | None = None


class Winback(Strict):
    inactive_days: int = Field(30, ge=1, le=MAX_COUNT)
    coupon_template: str | None = None


class Risk(Strict):
    max_redeem_points_per_day: int | None = Field(None, ge=0, le=MAX_COUNT)
    max_orders_per_hour: int | None = Field(None, ge=0, le=MAX_COUNT)


class Program(Strict):
    timezone: str = "Asia/Shanghai"
    points: Points = Points()
    behaviors: Behaviors = Behaviors()
    tiers: Tiers = Tiers()
    stored_value: StoredValue = StoredValue()
    welcome_coupons: list[str] = []
    birthday: Birthday = Birthday()
    winback: Winback = Winback()
    risk: Risk = Risk()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError(f"unknown timezone {value!r}")
        return value

    def level(self, code: str) -> Level:
        for level in self.tiers.levels:
            if level.code == code:
                return level
        return self.tiers.levels[0]


def load_program(stored: dict | None, timezone: str = "Asia/Shanghai") -> Program:
    """The program as stored on the chain (defaults fill what a chain never set)."""
    data = dict(stored or {})
    data.setdefault("timezone", timezone)
    return Program.model_validate(data)
