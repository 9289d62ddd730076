"""Coupons the program sends by itself: on a member's birthday, and to win back a member who stopped
coming. Both are jobs (``POST /v1/jobs/{name}``, and the worker hourly), batched by member id, each
coupon issued in its own short transaction under a cause key, so a second run, or two at once,
issue nothing twice.

- ``birthday``: in the birthday month (the chain's calendar), the program's
  ``birthday.coupon_template`` once per member per year (key ``birthday:<member>:<year>``).
  Members whose birth month is unknown (no birthday given) get none.
- ``winback``: a member whose latest order is ``winback.inactive_days`` or more ago gets
  ``winback.coupon_template`` once per inactivity spell (key ``winback:<member>:<latest order
  time>``): a new order ends the spell, and the next spell gets its own coupon. Members who never
  ordered are not won back.

A member the coupon cannot go to (frozen, erased, merged, at the template's per-member limit) is
skipped; an unknown template or one out of stock ends the run, and the report says so.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from . import coupons, jobs, sql
from .chains import get_program
from .errors import CouponLimitReached, CouponOutOfStock, MemberFrozen, MemberNotFound, NotFound

log = structlog.get_logger("automation")
BATCH = 500
BORN_IN = ("SELECT id FROM members WHERE chain_id = $1 AND birth_month = $2 AND erased_at IS NULL "
           "AND merged_into IS NULL AND id > $3 ORDER BY id LIMIT $4")
LAPSED = ("SELECT f.member_id, f.last_order_at FROM member_figures f JOIN members m ON m.chain_id = f.chain_id "
          "AND m.id = f.member_id WHERE f.chain_id = $1 AND f.period = 0 AND f.last_order_at <= $2 AND f.member_id > $3 "
          "AND NOT m.unclaimed ORDER BY f.member_id LIMIT $4")  # a buyer's holder is nobody to win back


async def birthday(chain_id: int, now: datetime):
    program = await get_program(chain_id)
    template = _template(program.birthday.coupon_template)
    if template is None:
        return jobs.JobReport("birthday", 0, 0)
    local = now.astimezone(ZoneInfo(program.timezone))
    issued, after = 0, 0
    while True:
        batch = [int(r["id"]) for r in await sql.rows(BORN_IN, chain_id, local.month, after, BATCH)]
        for member_id in batch:
            outcome = await _give(chain_id, member_id, template, now, f"birthday:{member_id}:{local.year}")
            if outcome is None:
                return jobs.JobReport("birthday", issued, 0)
            issued += outcome
        if len(batch) < BATCH:
            return jobs.JobReport("birthday", issued, 0)
        after = batch[-1]


async def winback(chain_id: int, now: datetime):
    program = await get_program(chain_id)
    template = _template(program.winback.coupon_template)
    if template is None or not program.winback.inactive_days:
        return jobs.JobReport("winback", 0, 0)
    cutoff = now - timedelta(days=program.winback.inactive_days)
    issued, after = 0, 0
    while True:
        batch = await sql.rows(LAPSED, chain_id, cutoff, after, BATCH)
        for row in batch:
            member_id, last = int(row["member_id"]), sql.aware(row["last_order_at"])
            outcome = await _give(chain_id, member_id, template, now, f"winback:{member_id}:{last.isoformat()}")
            if outcome is None:
                return jobs.JobReport("winback", issued, 0)
            issued += outcome
        if len(batch) < BATCH:
            return jobs.JobReport("winback", issued, 0)
        after = int(batch[-1]["member_id"])


def _template(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def _give(chain_id: int, member_id: int, template_id: int, now: datetime, key: str) -> int | None:
    """1 when a coupon was issued, 0 when the member already had it or cannot have it, None when
    the template is gone or out of stock (the run stops)."""
    try:
        return int(await coupons.issue_new(chain_id, member_id, template_id, now, key))
    except (MemberFrozen, MemberNotFound, CouponLimitReached):
        return 0
    except (NotFound, CouponOutOfStock) as error:
        log.warning("automation.stopped", chain_id=chain_id, template_id=template_id, reason=error.code)
        return None
