"""Programs the POS tests run under (API.md's example, with welcome points off so sums stay plain)."""
import copy

SHANGHAI = "+08:00"

PROGRAM = {
    "timezone": "Asia/Shanghai",
    "points": {
        "earn": {"per_amount": 100, "points": 1},
        "category_multipliers": {"fresh": 2},
        "exclude_categories": ["tobacco"],
        "campaigns": [
            {"name": "member day", "days_of_month": [8, 18, 28], "factor": 2},
            {"name": "lunch", "weekdays": [1, 2, 3, 4, 5], "hours": "11:00-14:00", "factor": 1.5},
        ],
        "pending_days": 0,
        "expiry": {"mode": "rolling_months", "months": 24},
        "redeem": {"points": 100, "amount": 100, "max_ratio": 0.5},
    },
    "behaviors": {"register": {"points": 0}},
    "tiers": {"metric": "growth", "window_months": 12, "levels": [
        {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
        {"code": "silver", "name": "银卡", "threshold": 1000, "earn_multiplier": 1.2},
        {"code": "gold", "name": "金卡", "threshold": 5000, "earn_multiplier": 1.5, "discount_percent": 2},
    ]},
}


def program(**points_changes) -> dict:
    """PROGRAM with some of its ``points`` section replaced."""
    changed = copy.deepcopy(PROGRAM)
    changed["points"].update(points_changes)
    return changed


def line(sku: str, category: str, amount: int, qty: int = 1) -> dict:
    return {"sku": sku, "name": sku.title(), "category": category, "qty": qty, "unit_price": amount // qty,
            "amount": amount}


def order(txn_id: str, lines: list[dict], payable: int | None = None, *, at: str, method: str = "wechat_pay",
          **fields) -> dict:
    """An order body; ``payable`` (default: the subtotal) is paid in one payment."""
    total = sum(l["amount"] for l in lines) if payable is None else payable
    return {"txn_id": txn_id, "occurred_at": at, "lines": lines,
            "payments": [{"method": method, "amount": total}] if total else [], **fields}
