"""Request and response bodies of the admin and system API (the POS ones live in routes/pos)."""
from __future__ import annotations

import base64
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loyalty_core.clock import is_timezone
from loyalty_core.bounds import Phone
from loyalty_core.errors import BadRequest
from loyalty_core.views import Balances, Tier

Code = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
# Free text never holds U+0000: PostgreSQL text columns cannot store it (asyncpg raises, a 500),
# so it is refused here with the other field errors (422).
NO_NUL = r"^[^\x00]*$"


class Body(BaseModel):
    """Unknown fields are refused (422), so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class NewStore(Body):
    code: str = Code
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None and not is_timezone(value):
            raise ValueError(f"unknown timezone {value!r}")
        return value


class StoreOut(BaseModel):
    code: str
    name: str
    timezone: str | None
    created_at: str


class StorePage(BaseModel):
    items: list[StoreOut]
    next_cursor: str | None


class NewTerminal(Body):
    code: str = Code


class TerminalOut(BaseModel):
    terminal_id: str
    secret: str = Field(description="shown once; sign POS requests with it")
    store_code: str
    code: str


class NewMember(Body):
    phone: Phone
    name: str | None = Field(None, min_length=1, max_length=50, pattern=NO_NUL)
    birthday: date | None = None
    card_no: str | None = Field(None, min_length=4, max_length=32, pattern=r"^[A-Za-z0-9-]+$")
    store_code: str | None = Field(None, min_length=1, max_length=32, pattern=NO_NUL)


class IdentityOut(BaseModel):
    channel: str
    external_id: str


class MemberOut(BaseModel):
    id: int
    display_name: str
    phone: str | None = Field(description="masked")
    name: str | None
    birthday: str | None
    card_no: str | None
    store_code: str | None
    tier: Tier
    balances: Balances
    identities: list[IdentityOut]
    tags: list[str]
    frozen: bool
    frozen_reason: str | None
    erased: bool
    merged_into: int | None = Field(None, description="closed by a merge: the member who holds everything now")
    unclaimed: bool = Field(False, description="holds the points of a marketplace buyer who is no member yet, "
                                               "until a member binds that account (docs/marketplaces.md)")
    created_at: str


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class MemberQuery(BaseModel):
    phone: Phone | None = None
    identity: str | None = Field(None, pattern=NO_NUL, description="CHANNEL:ID, e.g. card:900012345678")
    tier: str | None = Field(None, pattern=NO_NUL)
    tag: str | None = Field(None, min_length=1, max_length=32, pattern=NO_NUL, description="members with this tag")
    unclaimed: bool | None = Field(None, description="true: only the holders of marketplace buyers' points; false: "
                                                      "only members (default: both)")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class Tags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[Annotated[str, Field(min_length=1, max_length=32, pattern=NO_NUL)]] = Field(
        max_length=50, description="the member's whole set of manual tags, replacing the one before")


class PageQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class LedgerEntryOut(BaseModel):
    id: int
    kind: str
    key: str
    channel: str
    actor: str | None
    reason: str | None
    ref: str | None
    occurred_at: str
    created_at: str
    changes: dict[str, int] = Field(description="member account -> amount moved")


class LedgerPage(BaseModel):
    items: list[LedgerEntryOut]
    next_cursor: str | None


MAX_ADJUSTMENT = 10**12  # far below the 64-bit columns, so no sum of adjustments overflows them


class Adjustment(Body):
    account: Literal["points", "stored_value"]
    amount: int = Field(ge=-MAX_ADJUSTMENT, le=MAX_ADJUSTMENT,
                        description="positive credits, negative debits (never below zero)")
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL)


class AdjustmentOut(BaseModel):
    entry_id: int
    account: str
    amount: int
    reason: str
    balances: Balances


class Freeze(Body):
    reason: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class NewAdminKey(Body):
    role: Literal["owner", "operator", "auditor"]
    label: str | None = Field(None, max_length=100, pattern=NO_NUL)


class AdminKeyOut(BaseModel):
    id: int
    role: str
    prefix: str
    label: str | None = None
    created_at: str
    revoked_at: str | None = None
    key: str | None = Field(None, description="only in the answer that creates it")


class AdminKeyPage(BaseModel):
    items: list[AdminKeyOut]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    redis: Literal["ok"]


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


def encode_cursor(last_id: int | None) -> str | None:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=") if last_id else None


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise BadRequest("cursor is not one this API gave out") from None


def cut(rows: list, limit: int, id_of=lambda row: row.id) -> tuple[list, str | None]:
    """Rows fetched with ``limit + 1``: the page, and a cursor only when more rows exist."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(id_of(rows[-1]))


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_member_id: int = Field(ge=1, le=2**53 - 1, description="the record to move into this one and close")


async def id_page(query, page: PageQuery, view) -> dict:
    """A page of a queryset in id order (``page.cursor`` after the last id shown), each row as ``view`` shows it."""
    if after := decode_cursor(page.cursor):
        query = query.filter(id__gt=after)
    found, cursor = cut(await query.order_by("id").limit(page.limit + 1), page.limit)
    return {"items": [view(row) for row in found], "next_cursor": cursor}
