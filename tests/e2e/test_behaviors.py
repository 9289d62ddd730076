"""Behaviours through the core (their member routes come with the WeChat channel), checked as a
member or an operator reads them over HTTP: streaks and their bonus on the chain's calendar,
daily and monthly caps (held under concurrent calls), once-only behaviours, invite upgrades."""
from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta

import pytest

from loyalty_core import behaviors
from loyalty_core.chains import get_program
from loyalty_core.errors import AlreadyCheckedIn, AlreadyDone, MemberFrozen, ValidationFailed
from loyalty_core.verify import verify

from .programs import API_EXAMPLE

START = datetime.fromisoformat("2026-11-20T10:05:00+08:00")


def program_with_behaviours() -> dict:
    changed = copy.deepcopy(API_EXAMPLE)
    changed["points"]["pending_days"] = 0
    changed["behaviors"]["register"] = {"points": 0}
    changed["tiers"]["levels"][3].pop("manual_review")
    return changed


@pytest.fixture
async def members_kit(chain, clock):
    clock.at = START
    await chain.set_program(program_with_behaviours())
    return chain


async def do(kit, member, behavior: str, when: datetime, **extra) -> dict:
    return await behaviors.record(kit.chain_id, member["id"], behavior, await get_program(kit.chain_id), when, **extra)


async def points_of(kit, member) -> int:
    return (await kit.member(member["id"]))["balances"]["points"]


async def test_checkin_streak_and_bonus_on_the_chains_calendar(members_kit):
    kit = members_kit
    member, other = await kit.new_member("13900000001"), await kit.new_member("13900000002")
    answers = [await do(kit, member, "checkin", START + timedelta(days=d)) for d in range(14)]
    assert [a["streak"] for a in answers] == list(range(1, 15))
    assert [a["points"] for a in answers] == [5] * 6 + [25] + [5] * 6 + [25]  # +20 on days 7 and 14
    assert await points_of(kit, member) == 14 * 5 + 40
    with pytest.raises(AlreadyCheckedIn):
        await do(kit, member, "checkin", START + timedelta(days=13, hours=3))  # 13:05 the same Shanghai day
    # 23:59 and 00:01 in Shanghai are two days, though both are the same UTC day
    late = datetime.fromisoformat("2026-12-05T23:59:00+08:00")
    first = await do(kit, other, "checkin", late)
    second = await do(kit, other, "checkin", late + timedelta(minutes=2))
    assert (first["streak"], second["streak"]) == (1, 2)
    gap = await do(kit, other, "checkin", late + timedelta(days=3))  # a day missed: the streak starts again
    assert gap["streak"] == 1
    growth = (await kit.member(member["id"]))["balances"]["growth"]
    assert growth == 110  # behaviour points count as growth
    assert await verify() == []


async def test_daily_and_monthly_caps_and_once_only_behaviours(members_kit):
    kit = members_kit
    member = await kit.new_member("13900000010")
    shares = [await do(kit, member, "share", START, cause=f"req-{i}") for i in range(7)]
    assert [s["points"] for s in shares] == [2] * 5 + [0, 0] and [s["capped"] for s in shares][-2:] == [True, True]
    assert (await do(kit, member, "share", START + timedelta(days=1), cause="next-day"))["points"] == 2
    reviews = [await do(kit, member, "review", START, ref=f"order:{i}") for i in range(4)]
    assert [r["points"] for r in reviews] == [10, 10, 10, 0]
    with pytest.raises(AlreadyDone):
        await do(kit, member, "review", START, ref="order:1")
    assert (await do(kit, member, "complete_profile", START))["points"] == 30
    with pytest.raises(AlreadyDone):
        await do(kit, member, "complete_profile", START + timedelta(days=40))
    with pytest.raises(ValidationFailed):
        await do(kit, member, "invite", START)  # an invite names its invitee
    assert await points_of(kit, member) == 5 * 2 + 2 + 30 + 30


async def test_invites_are_capped_by_month_and_lift_the_inviter(members_kit):
    kit = members_kit
    program = program_with_behaviours()
    program["behaviors"]["invite"]["monthly_cap"] = 2
    await kit.set_program(program)
    inviter, bystander = await kit.new_member("13900000020"), await kit.new_member("13900000021")
    answers = [await do(kit, inviter, "invite", START, ref=f"member:{i}") for i in range(3)]
    assert [a["points"] for a in answers] == [50, 50, 0]
    assert answers[2]["tier"] == {"code": "silver", "name": "银卡", "changed": True}  # task upgrade: 3 invites
    assert (await kit.member(inviter["id"]))["tier"]["code"] == "silver"
    assert (await do(kit, inviter, "invite", START + timedelta(days=15), ref="member:9"))["points"] == 50  # December
    assert (await kit.member(bystander["id"]))["tier"]["code"] == "regular"


async def test_a_frozen_member_earns_nothing(members_kit):
    kit = members_kit
    member = await kit.new_member("13900000030")
    assert (await kit.admin("POST", f"/v1/members/{member['id']}/freeze", {"reason": "fraud"})).status == 200
    with pytest.raises(MemberFrozen):
        await do(kit, member, "checkin", START)
    assert await points_of(kit, member) == 0


@pytest.mark.postgres
async def test_caps_hold_under_concurrent_calls(members_kit):
    kit = members_kit
    member = await kit.new_member("13900000040")
    program = await get_program(kit.chain_id)
    shares = await asyncio.gather(*[behaviors.record(kit.chain_id, member["id"], "share", program, START,
                                                     cause=f"c{i}") for i in range(10)])
    assert sorted(s["points"] for s in shares) == [0] * 5 + [2] * 5
    checkins = await asyncio.gather(*[behaviors.record(kit.chain_id, member["id"], "checkin", program, START)
                                      for _ in range(10)], return_exceptions=True)
    assert sum(isinstance(c, AlreadyCheckedIn) for c in checkins) == 9  # 10 at once: one award
    assert await points_of(kit, member) == 10 + 5
    assert await verify() == []
