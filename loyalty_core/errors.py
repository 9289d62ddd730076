"""One exception tree for every rule the core enforces.

Each subclass carries a stable ``code`` and an HTTP ``status``; the gateway maps them to
problem+json in one place. Adapters translate foreign errors into these at their edge.
"""
from __future__ import annotations

import re
from typing import Any


class LoyaltyError(Exception):
    code = "loyalty_error"
    status = 400
    title = "Request refused"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ValidationFailed(LoyaltyError):
    code, status, title = "validation_error", 422, "Invalid request"

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        super().__init__(detail or "The request has invalid fields.", errors=errors)
        self.errors = errors


def field_errors(problems: list[dict]) -> list[dict[str, str]]:
    """pydantic's error list as API.md's ``errors``: ``{"field": "lines[0].qty", "message": ...}``."""
    return [{"field": field_path(p["loc"]) or "(body)", "message": p["msg"]} for p in problems]


def field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not re.match(r"^function-|^model-|^[a-z-]+\[", str(part)):
            path += ("." if path else "") + str(part)
    return path


class InvalidJson(LoyaltyError):
    code, status, title = "invalid_json", 400, "Body is not valid JSON"


class BadRequest(LoyaltyError):
    code, status, title = "bad_request", 400, "Bad request"


class Unauthorized(LoyaltyError):
    code, status, title = "unauthorized", 401, "Unauthorized"


class StaleRequest(Unauthorized):
    code, title = "stale_request", "Request timestamp outside the allowed window"


class ReplayedRequest(Unauthorized):
    code, title = "replayed_request", "Nonce already used"


class InvalidSignature(Unauthorized):
    code, title = "invalid_signature", "Signature does not match"


class Forbidden(LoyaltyError):
    code, status, title = "forbidden", 403, "Forbidden"


class NotFound(LoyaltyError):
    code, status, title = "not_found", 404, "Not found"


class OrderNotFound(NotFound):
    code, title = "order_not_found", "Order not found"


class CodeNotFound(NotFound):
    code, title = "code_not_found", "Code not recognised"


class CodeExpired(LoyaltyError):
    code, status, title = "code_expired", 410, "Member code expired"


class Conflict(LoyaltyError):
    code, status, title = "conflict", 409, "Conflict"


class AlreadyExists(Conflict):
    code, title = "already_exists", "Already exists"


class DeliveryPending(Conflict):
    code, title = "delivery_pending", "This delivery is still being tried: replay it once it is delivered or dead"


class LastOwnerKey(Conflict):
    code, title = "last_owner_key", "The last owner key cannot be revoked"


class CodeUsed(Conflict):
    code, title = "code_used", "Member code already used for an order"


class AlreadyCheckedIn(Conflict):
    code, title = "already_checked_in", "Checked in already today"


class AlreadyDone(Conflict):
    code, title = "already_done", "This was rewarded already"


class RequestInProgress(Conflict):
    code, title = "request_in_progress", "A request with this Idempotency-Key is still running"


class IdempotencyKeyRequired(LoyaltyError):
    code, status, title = "idempotency_key_required", 400, "Idempotency-Key header required"


class IdempotencyKeyReused(LoyaltyError):
    code, status, title = "idempotency_key_reused", 422, "Idempotency-Key reused with another body"


class BusinessRuleError(LoyaltyError):
    """A well-formed request that the program's rules refuse (422); nothing is applied."""

    status, title = 422, "Refused by the program's rules"


class InsufficientPoints(BusinessRuleError):
    code, title = "insufficient_points", "Not enough points"


class InsufficientStoredValue(BusinessRuleError):
    code, title = "insufficient_stored_value", "Not enough stored value"


class CouponNotUsable(BusinessRuleError):
    code, title = "coupon_not_usable", "Coupon cannot be used"


class CouponOutOfStock(BusinessRuleError):
    code, title = "coupon_out_of_stock", "No coupons of this template are left"


class CouponLimitReached(BusinessRuleError):
    code, title = "coupon_limit_reached", "The member holds as many of this coupon as a member may"


class CouponNotFound(NotFound):
    code, title = "coupon_not_found", "Coupon not found"


class RiskLimitExceeded(BusinessRuleError):
    """Carries ``limit``: which of the program's risk limits the order would cross."""

    code, title = "risk_limit_exceeded", "The order would cross one of the program's risk limits"


class MemberFrozen(BusinessRuleError):
    code, title = "member_frozen", "Member is frozen"


class InvalidRedeemPoints(BusinessRuleError):
    code, title = "invalid_redeem_points", "Redeemed points must be a multiple of the redeem unit"


class RedeemOverLimit(BusinessRuleError):
    code, title = "redeem_over_limit", "Redeemed points exceed the allowed share of the order"


class AmountMismatch(BusinessRuleError):
    code, title = "amount_mismatch", "Payments do not add up to the payable amount"


class RefundExceedsOrder(BusinessRuleError):
    code, title = "refund_exceeds_order", "Refund exceeds what is left to refund"


class OccurredAtOutOfRange(BusinessRuleError):
    code, title = "occurred_at_out_of_range", "occurred_at is too far from the server's clock"


class MemberErased(BusinessRuleError):
    code, title = "member_erased", "Member's personal data was erased"


class InvariantViolation(Exception):
    """A bug, not a refusal: the core was asked to break one of its own invariants (an entry that
    does not balance, a member without accounts). Answered as a 500 and never stored as an
    idempotent answer, so the request can be retried once it is fixed."""


class DuplicateEntry(Exception):
    """A journal entry with this cause key exists already: the caller answers with the first result."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class MemberNotFound(NotFound):
    code, title = "member_not_found", "Member not found"


class UnknownJob(NotFound):
    code, title = "unknown_job", "No such job"


class ServiceUnavailable(LoyaltyError):
    """A service the request needs (the database, Redis) failed or did not answer in time; retry the
    request (with the same Idempotency-Key): what it changes is applied at most once."""

    code, status, title = "service_unavailable", 503, "Service unavailable"


class ChannelCodeInvalid(Unauthorized):
    """A login or phone code from the mini-program that WeChat refused (invalid, used or expired)."""

    code, title = "wechat_code_invalid", "WeChat did not accept this code"


class ChannelUnavailable(LoyaltyError):
    """The platform answered an error we cannot turn into the caller's fault, or did not answer: its
    error code is in the detail; retry later."""

    code, status, title = "wechat_error", 502, "WeChat refused or did not answer"

    def __init__(self, detail: str | None = None, maybe_done: bool = False, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.maybe_done = maybe_done  # no answer, but the request may have reached the platform


class PlatformUnavailable(LoyaltyError):
    """A marketplace's open API refused or did not answer a call we make (an order's details, a
    points push): its error is in the detail; the worker tries again later."""

    code, status, title = "platform_error", 502, "The marketplace refused or did not answer"


class JoinRequired(Forbidden):
    code, title = "join_required", "Join first: POST /v1/mp/join"
