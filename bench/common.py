"""What the seed, the load generator, the bare baseline and the report agree on.

Standard library only: the load generator imports this and must start fast and stay light.
"""
from __future__ import annotations

import argparse

import copy
import hashlib
import hmac

# LOYALTY_SECRET of the bench: the seeded phone hashes and the encrypted terminal secret depend
# on it, so the gateway must run with this one.
SECRET = "bench-secret-0123456789abcdef"
STORE, TERMINAL = "B01", "POS1"

# API.md's example program as tests/e2e/programs.py derives it for the POS tests (welcome points
# off, no pending days, three levels, silver earning x1.2), copied here so that the bench's figures
# stay comparable between commits whatever the tests do with theirs. Gold (2 % off) starts at 5000
# growth: the seeded history stays below 2000 and a run adds at most a few hundred, so the payable
# of every order the bench sends is its subtotal minus the points redeemed (an amount_mismatch
# would show up as an error).
PROGRAM = {
    "timezone": "Asia/Shanghai",
    "points": {
        "earn": {"per_amount": 100, "points": 1},
        "category_multipliers": {"fresh": 2},
        "exclude_categories": ["tobacco"],
        "campaigns": [
            {"name": "member day", "days_of_month": [8, 18, 28], "factor": 2},
            {"name": "lunch", "weekdays": [1, 2, 3, 4, 5], "hours": "11:00-14:00", "factor": 1.5}],
        "pending_days": 0,
        "expiry": {"mode": "rolling_months", "months": 24},
        "redeem": {"points": 100, "amount": 100, "max_ratio": 0.5},
    },
    "behaviors": {"register": {"points": 0}},
    "tiers": {
        "metric": "growth",
        "window_months": 12,
        "levels": [
            {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
            {"code": "silver", "name": "银卡", "threshold": 1000, "earn_multiplier": 1.2},
            {"code": "gold", "name": "金卡", "threshold": 5000, "earn_multiplier": 1.5, "discount_percent": 2}],
    },
}


def line(sku: str, category: str, unit_price: int, qty: int = 1) -> dict:
    return {"sku": sku, "name": sku.title(), "category": category, "qty": qty, "unit_price": unit_price,
            "amount": unit_price * qty}


# Baskets a till sends: (lines, subtotal in fen). None has a line of zero amount, and every one
# allows redeeming 100 points (max_ratio 0.5 of the subtotal).
BASKETS = [
    [line("LATTE", "coffee", 900, 2), line("APPLE", "fresh", 1200)],
    [line("MILK", "dairy", 650, 2), line("BREAD", "bakery", 1500), line("APPLE", "fresh", 400, 3)],
    [line("CIG", "tobacco", 2000), line("WATER", "drinks", 250, 2)],
    [line("RICE", "grocery", 4500), line("OIL", "grocery", 3200), line("EGGS", "fresh", 1800)],
]
SUBTOTALS = [sum(item["amount"] for item in basket) for basket in BASKETS]
REDEEM = 100                # points per redeeming order (= 100 fen off)
OPENING_POINTS = 2000       # every seeded member's opening balance (one adjustment), for redemptions


def phone(index: int) -> str:
    """Member ``index``'s phone: 139 and eight digits (0 <= index < 10^8)."""
    return f"139{index:08d}"


def card(index: int) -> str:
    """Member ``index``'s card number: 9 and eleven digits (12 digits, as the gateway issues)."""
    return f"9{index:011d}"


def sign(secret: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """docs/pos-signing.md: hex HMAC-SHA256 of method, path, timestamp, nonce and the body's SHA-256."""
    message = f"{method}\n{path}\n{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.digest(secret, message, "sha256").hex()


def program() -> dict:
    return copy.deepcopy(PROGRAM)


def say(text: str = "") -> None:
    """A line of a bench's report, printed at once."""
    print(text, flush=True)


def bounded(kind, low, high):
    """An argparse type: ``kind`` of the text, between ``low`` and ``high``."""
    def parse(text: str):
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value
    return parse
