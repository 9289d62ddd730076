"""The birthday and winback jobs over the HTTP API: the right members get the coupon, once per
year or per inactivity spell, however often the job runs; per chain."""
from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta

import pytest

from .programs import PROGRAM, line, order

NOW = datetime.fromisoformat("2026-11-20T10:05:00+08:00")


async def with_coupon_program(kit, **sections) -> int:
    template = await (await kit.admin("POST", "/v1/coupon-templates", {
        "name": "treat", "kind": "cash", "amount_off": 500, "valid_days": 30})).json()
    changed = copy.deepcopy(PROGRAM)
    for name, section in sections.items():
        changed[name] = {**section, "coupon_template": str(template["id"])}
    await kit.set_program(changed)
    return template["id"]


async def job(kit, name: str) -> int:
    response = await kit.admin("POST", f"/v1/jobs/{name}")
    assert response.status == 200, await response.text()
    return (await response.json())["processed"]


async def coupons_of(kit, member) -> list[str]:
    items = (await (await kit.admin("GET", f"/v1/members/{member['id']}/coupons")).json())["items"]
    return [c["name"] for c in items]


async def test_birthday_once_a_year_in_the_birthday_month(chain, other_chain, clock):
    clock.at = NOW
    await with_coupon_program(chain, birthday={})
    november = await chain.new_member("13600002001", birthday="1990-11-03")
    december = await chain.new_member("13600002002", birthday="1985-12-24")
    unknown = await chain.new_member("13600002003")
    elsewhere = await other_chain.new_member("13600002009", birthday="1990-11-03")
    # 20 November: only the November birthday is this month; the key birthday:<member>:2026 is spent by the
    # first run, so the second run issues 0 and the member holds 1 coupon, not 2
    assert await job(chain, "birthday") == 1
    assert await job(chain, "birthday") == 0  # the same year: nothing again
    assert await coupons_of(chain, november) == ["treat"]
    assert await coupons_of(chain, december) == [] and await coupons_of(chain, unknown) == []
    assert await job(other_chain, "birthday") == 0  # no birthday coupon in its program
    assert await coupons_of(other_chain, elsewhere) == []
    clock.at = datetime.fromisoformat("2026-12-01T00:30:00+08:00")  # still 30 November in UTC
    assert await job(chain, "birthday") == 1
    assert await coupons_of(chain, december) == ["treat"]
    clock.at = datetime.fromisoformat("2027-11-02T09:00:00+08:00")
    assert await job(chain, "birthday") == 1  # a new year
    assert await coupons_of(chain, november) == ["treat", "treat"]


async def test_winback_once_per_spell_of_inactivity(chain, clock):
    clock.at = NOW
    await with_coupon_program(chain, winback={"inactive_days": 30})
    lapsing, regular, never = [await chain.new_member(f"1360000201{i}") for i in range(3)]

    async def buy(member, txn: str) -> None:
        await chain.sale(order(txn, [line("LATTE", "coffee", 1000)], at=clock.now().isoformat(), member_id=member["id"]))

    await buy(lapsing, "L1")
    await buy(regular, "R1")
    clock.at = NOW + timedelta(days=20)
    await buy(regular, "R2")
    clock.at = NOW + timedelta(days=31)
    assert await job(chain, "winback") == 1  # lapsing: 31 days; regular: 11 days; never: no order
    assert await job(chain, "winback") == 0
    assert await coupons_of(chain, lapsing) == ["treat"] and await coupons_of(chain, regular) == []
    assert await coupons_of(chain, never) == []
    await buy(lapsing, "L2")  # back: the spell is over
    clock.at = NOW + timedelta(days=45)
    assert await job(chain, "winback") == 0
    clock.at = NOW + timedelta(days=62)
    assert await job(chain, "winback") == 2  # lapsing's second spell, and regular's first
    assert await coupons_of(chain, lapsing) == ["treat", "treat"] and await coupons_of(chain, regular) == ["treat"]



@pytest.mark.postgres
async def test_two_birthday_runs_at_once_give_one_coupon_each(chain, clock):
    clock.at = NOW
    await with_coupon_program(chain, birthday={})
    born = [await chain.new_member(f"136000020{i:02d}", birthday=f"19{80 + i}-11-0{1 + i % 9}") for i in range(12)]
    runs = await asyncio.gather(*[chain.admin("POST", "/v1/jobs/birthday") for _ in range(2)])
    assert [r.status for r in runs] == [200, 200]
    assert sum([(await r.json())["processed"] for r in runs]) == 12
    assert [len(await coupons_of(chain, m)) for m in born] == [1] * 12
