"""The POS channel's payloads as a till sends them (see API.md, POS API)."""
from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from loyalty_core.bounds import MAX_BATCH, MAX_FEN, MAX_LINES, Count, Fen, Id, Phone, Qty
from loyalty_core.views import Balances, Tier


# Free text never holds U+0000: PostgreSQL text columns cannot store it (asyncpg raises, a 500),
# so it is refused here with the other field errors (422).
NO_NUL = r"^[^\x00]*$"


class Body(BaseModel):
    """Unknown fields are refused (422), so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class Scan(Body):
    code: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="whatever the scanner read")


class ScanMember(BaseModel):
    id: int
    display_name: str
    tier: Tier
    balances: Balances
    frozen: bool


class CouponOut(BaseModel):
    code: str
    template_id: int
    member_id: int
    name: str
    kind: str = Field(description="cash, percent or gift")
    status: str = Field(description="issued, redeemed, voided, or expired (issued and past valid_to)")
    amount_off: int
    percent_off: int
    max_off: int | None
    sku: str | None
    min_spend: int
    stackable: bool
    valid_from: str
    valid_to: str
    order_id: int | None
    redeemed_at: str | None


class ScanOut(BaseModel):
    kind: str = Field(description="member, or coupon for a coupon code")
    member: ScanMember
    coupon: CouponOut | None = Field(None, description="the scanned coupon (kind coupon)")
    coupons: list[CouponOut] = Field(description="the member's coupons usable now, at most 20")


class LineIn(Body):
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    category: str | None = Field(None, max_length=64, pattern=NO_NUL)
    qty: Qty
    unit_price: Fen
    amount: Fen


class PaymentIn(Body):
    method: str = Field(min_length=1, max_length=32, pattern=NO_NUL, description="wechat_pay, alipay, cash, card, stored_value ...")
    amount: Fen


class PreviewIn(Body):
    # the model validator below, as JSON Schema: never both member references
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["member_code", "member_id"],
        "properties": {"member_code": {"type": "string"}, "member_id": {"type": "integer"}}}})

    txn_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    member_code: str | None = Field(None, min_length=1, max_length=64, pattern=NO_NUL)
    member_id: Id | None = None
    occurred_at: AwareDatetime | None = Field(None, description="RFC 3339 with offset; default now")
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    coupons: list[Annotated[str, Field(pattern=NO_NUL)]] = Field(default_factory=list, max_length=20)
    redeem_points: Count = 0
    payments: list[PaymentIn] = Field(default_factory=list, max_length=20,
                                      description="required to add up to the payable on an order; ignored by preview")

    @model_validator(mode="after")
    def _one_member_reference(self):
        if self.member_code and self.member_id:
            raise ValueError("send member_code or member_id, not both")
        return self


class OrderIn(PreviewIn):
    txn_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class PreviewOut(BaseModel):
    subtotal: int
    tier_discount: int
    coupon_discount: int
    points_discount: int
    payable: int
    points_to_earn: int


class OrderTier(BaseModel):
    code: str
    name: str
    changed: bool


class OrderOut(BaseModel):
    order_id: int
    txn_id: str
    member_id: int | None
    subtotal: int
    tier_discount: int
    coupon_discount: int
    points_discount: int
    payable: int
    points_redeemed: int
    points_earned: int
    points_pending_until: str | None
    campaign: str | None
    balances: Balances | None
    tier: OrderTier
    duplicate: bool


class RefundLine(Body):
    sku: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    qty: Qty


class RefundIn(Body):
    # the model validator below, as JSON Schema: exactly one of lines and amount
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["lines"], "properties": {"lines": {"type": "array"}}},
        {"required": ["amount"], "properties": {"amount": {"type": "integer"}}}]})

    refund_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    lines: list[RefundLine] | None = Field(None, min_length=1, max_length=MAX_LINES)
    amount: Fen | None = Field(None, ge=1, description="fen of the order's payable")

    @model_validator(mode="after")
    def _lines_or_amount(self):
        if (self.lines is None) == (self.amount is None):
            raise ValueError("send either lines or amount")
        return self


class RefundOut(BaseModel):
    refund_id: str
    order_id: int
    txn_id: str
    amount: int
    points_reversed: int
    points_returned: int
    stored_value_returned: int
    coupons_restored: list[str]
    balances: Balances | None
    tier: OrderTier | None = Field(None, description="the member's tier after the refund; changed when the refund "
                                                    "took back the upgrade its order gave")
    duplicate: bool


class BatchIn(Body):
    orders: list[dict] = Field(min_length=1, max_length=MAX_BATCH, description="orders as POST /v1/pos/orders takes them")


class BatchResult(BaseModel):
    txn_id: str | None
    status: str
    problem: dict | None = None
    result: dict | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]


class TopupIn(Body):
    # the model validator below, as JSON Schema: exactly one member reference
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["member_code"], "properties": {"member_code": {"type": "string"}}},
        {"required": ["member_id"], "properties": {"member_id": {"type": "integer"}}}]})

    topup_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                          description="the till's own id of this top-up: once per store, forever")
    member_code: str | None = Field(None, min_length=1, max_length=64, pattern=NO_NUL,
                                    description="what the scanner read: a dynamic code (not used up), a phone or a card")
    member_id: Id | None = None
    amount: Annotated[int, Field(ge=1, le=MAX_FEN, description="fen paid, credited as principal")]
    payment_method: str = Field(min_length=1, max_length=32, pattern=NO_NUL,
                                description="wechat_pay, alipay, cash, card ...; never stored_value")

    @model_validator(mode="after")
    def _one_member(self):
        if (self.member_code is None) == (self.member_id is None):
            raise ValueError("send member_code or member_id (a top-up needs a member)")
        return self


class TopupOut(BaseModel):
    topup_id: str
    member_id: int
    principal: int = Field(description="fen credited to the principal account")
    bonus: int = Field(description="fen credited to the bonus account, by the program's topup_bonuses")
    payment_method: str
    balances: Balances
    tier: OrderTier
    duplicate: bool


class PosMember(Body):
    phone: Phone
    name: str | None = Field(None, min_length=1, max_length=50, pattern=NO_NUL)
    birthday: date | None = None
