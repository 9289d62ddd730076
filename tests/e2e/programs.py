"""Programs the POS tests run under (API.md's example, with welcome points off so sums stay plain)."""
import copy

# API.md's example program, complete.
API_EXAMPLE = {
    "timezone": "Asia/Shanghai",
    "points": {
        "earn": {"per_amount": 100, "points": 1},
        "category_multipliers": {"fresh": 2},
        "exclude_categories": ["tobacco"],
        "campaigns": [
            {"name": "member day", "days_of_month": [8, 18, 28], "factor": 2},
            {"name": "lunch", "weekdays": [1, 2, 3, 4, 5], "hours": "11:00-14:00", "factor": 1.5}],
        "pending_days": 7,
        "expiry": {"mode": "rolling_months", "months": 24},
        "redeem": {"points": 100, "amount": 100, "max_ratio": 0.5},
    },
    "behaviors": {
        "register": {"points": 100},
        "checkin": {"points": 5, "streak_bonus": {"7": 20}},
        "review": {"points": 10, "daily_cap": 3},
        "share": {"points": 2, "daily_cap": 5},
        "complete_profile": {"points": 30},
        "invite": {"points": 50, "monthly_cap": 10},
    },
    "tiers": {
        "metric": "growth",
        "window_months": 12,
        "retention_months": 12,
        "levels": [
            {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
            {"code": "silver", "name": "银卡", "threshold": 1000, "earn_multiplier": 1.15},
            {"code": "gold", "name": "金卡", "threshold": 5000, "earn_multiplier": 1.5, "discount_percent": 2},
            {"code": "diamond", "name": "钻石", "threshold": 20000, "earn_multiplier": 2, "manual_review": True}],
        "task_upgrades": [{"task": "first_purchase", "to": "silver"}, {"task": "invite", "count": 3, "to": "silver"}],
    },
    "stored_value": {"topup_bonuses": [{"min": 10000, "bonus": 1000}, {"min": 50000, "bonus": 8000}]},
    "risk": {"max_redeem_points_per_day": 20000, "max_orders_per_hour": 20},
}


def _pos_test_program() -> dict:
    """API.md's example with welcome points off, no pending days and three levels (silver x1.2)."""
    derived = copy.deepcopy(API_EXAMPLE)
    derived["points"]["pending_days"] = 0
    derived["behaviors"] = {"register": {"points": 0}}
    derived["tiers"] = {"metric": "growth", "window_months": 12, "levels": derived["tiers"]["levels"][:3]}
    derived["tiers"]["levels"][1]["earn_multiplier"] = 1.2
    for key in ("stored_value", "risk"):
        derived.pop(key)
    return derived


# With API.md's campaigns (member days 8/18/28, weekday lunch): for sales at fixed times.
POS_PROGRAM = _pos_test_program()


def program(**points_changes) -> dict:
    """POS_PROGRAM with some of its ``points`` section replaced."""
    changed = copy.deepcopy(POS_PROGRAM)
    changed["points"].update(points_changes)
    return changed


# Without campaigns: for sales at the clock's now, so that what a sale earns does not depend on the
# day and hour the tests run (in Shanghai, the 8th, 18th and 28th double every sale).
PROGRAM = program(campaigns=[])


def line(sku: str, category: str, amount: int, qty: int = 1) -> dict:
    return {"sku": sku, "name": sku.title(), "category": category, "qty": qty, "unit_price": amount // qty,
            "amount": amount}


def order(txn_id: str, lines: list[dict], payable: int | None = None, *, at: str, method: str = "wechat_pay",
          **fields) -> dict:
    """An order body; ``payable`` (default: the subtotal) is paid in one payment."""
    total = sum(l["amount"] for l in lines) if payable is None else payable
    return {"txn_id": txn_id, "occurred_at": at, "lines": lines,
            "payments": [{"method": method, "amount": total}] if total else [], **fields}
