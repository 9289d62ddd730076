"""Coupons over the HTTP API as an operator and a till use them: templates, issuing within stock
and per-member limits, use in orders (cash, percent, gift, stacking), scan, refunds, the counter,
welcome coupons; several members and chains, and concurrent tills."""
from __future__ import annotations

import asyncio
import copy
from datetime import datetime

import pytest

from loyalty_core.coupons import CODE
from loyalty_core.verify import verify

from ..helpers import ChainKit, problem
from .programs import PROGRAM, line, order

NOW = "2026-11-20T10:05:00+08:00"
CASH = {"name": "10 off 50", "kind": "cash", "amount_off": 1000, "min_spend": 5000, "valid_days": 30}


@pytest.fixture
async def till(chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    await chain.set_program(PROGRAM)
    return chain


async def template(kit: ChainKit, **fields) -> dict:
    response = await kit.admin("POST", "/v1/coupon-templates", {**CASH, **fields})
    assert response.status == 201, await response.text()
    return await response.json()


async def give(kit: ChainKit, member_id: int, template_id: int, status: int = 201) -> dict:
    response = await kit.admin("POST", f"/v1/members/{member_id}/coupons", {"template_id": template_id})
    assert response.status == status, await response.text()
    return await response.json()


async def held(kit: ChainKit, member_id: int) -> dict[str, str]:
    response = await kit.admin("GET", f"/v1/members/{member_id}/coupons")
    assert response.status == 200, await response.text()
    return {c["code"]: c["status"] for c in (await response.json())["items"]}


async def test_templates_are_checked_listed_and_unique_by_name(till):
    made = await template(till)
    assert made["issued"] == 0 and made["kind"] == "cash" and made["stock"] is None
    await problem(await till.admin("POST", "/v1/coupon-templates", CASH), 409, "already_exists")
    bad = [{"kind": "cash", "amount_off": 0}, {"kind": "percent", "percent_off": 0}, {"kind": "gift", "sku": None},
           {"valid_days": None}, {"valid_from": "2026-12-01T00:00:00+08:00"},
           {"valid_days": None, "valid_from": "2026-12-01T00:00:00+08:00", "valid_to": "2026-11-01T00:00:00+08:00"},
           {"kind": "voucher"}, {"stock": 0}, {"amount_off": -1}, {"surprise": 1}]
    for i, fields in enumerate(bad):
        body = {**CASH, "name": f"bad {i}", **fields}
        await problem(await till.admin("POST", "/v1/coupon-templates", body), 422, "validation_error")
    listed = await (await till.admin("GET", "/v1/coupon-templates")).json()
    assert [t["name"] for t in listed["items"]] == ["10 off 50"]
    auditor = await (await till.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json()
    await problem(await till.admin("POST", "/v1/coupon-templates", {**CASH, "name": "x"}, key=auditor["key"]),
                  403, "forbidden")


async def test_issue_within_stock_and_per_member_limit(till):
    first, second = await till.new_member("13500001001"), await till.new_member("13500001002")
    limited = await template(till, name="limited", stock=3, per_member_limit=2)
    a = await give(till, first["id"], limited["id"])
    assert CODE.match(a["code"]) and a["status"] == "issued" and a["member_id"] == first["id"]
    assert a["valid_to"] == "2026-12-20T02:05:00+00:00"  # 30 days from the issue
    await give(till, first["id"], limited["id"])
    await problem(await till.admin("POST", f"/v1/members/{first['id']}/coupons", {"template_id": limited["id"]}),
                  422, "coupon_limit_reached")
    await give(till, second["id"], limited["id"])
    await problem(await till.admin("POST", f"/v1/members/{second['id']}/coupons", {"template_id": limited["id"]}),
                  422, "coupon_out_of_stock")
    listed = await (await till.admin("GET", "/v1/coupon-templates")).json()
    assert listed["items"][0]["issued"] == 3
    assert len(await held(till, first["id"])) == 2 and len(await held(till, second["id"])) == 1
    await problem(await till.admin("POST", "/v1/members/999999/coupons", {"template_id": limited["id"]}),
                  404, "member_not_found")
    await problem(await till.admin("POST", f"/v1/members/{first['id']}/coupons", {"template_id": 999999}),
                  404, "not_found")


async def test_the_same_request_issues_once(till):
    member = await till.new_member("13500001010")
    made = await template(till)
    body = {"template_id": made["id"]}
    one = await till.admin("POST", f"/v1/members/{member['id']}/coupons", body, idempotency_key="issue-1")
    again = await till.admin("POST", f"/v1/members/{member['id']}/coupons", body, idempotency_key="issue-1")
    assert one.status == again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await one.json() == await again.json()
    assert len(await held(till, member["id"])) == 1


async def test_a_cash_coupon_at_the_till(till, other_chain):
    member, other = await till.new_member("13500001020"), await till.new_member("13500001021")
    coupon = await give(till, member["id"], (await template(till))["id"])
    code = coupon["code"]
    refusals = [
        (order("LOW", [line("LATTE", "coffee", 4999)], at=NOW, member_id=member["id"], coupons=[code]), "5000 fen"),
        (order("GUEST", [line("BEANS", "coffee", 8000)], at=NOW, coupons=[code]), "guest"),
        (order("OTHER", [line("BEANS", "coffee", 8000)], at=NOW, member_id=other["id"], coupons=[code]),
         "another member"),
        (order("TWICE", [line("BEANS", "coffee", 8000)], at=NOW, member_id=member["id"], coupons=[code, code]),
         "twice"),
        (order("UNKNOWN", [line("BEANS", "coffee", 8000)], at=NOW, member_id=member["id"],
               coupons=["CPN0000000000000000"]), "not a coupon of this chain"),
    ]
    for body, reason in refusals:
        refused = await problem(await till.pos("POST", "/v1/pos/orders", body), 422, "coupon_not_usable")
        assert reason in refused["detail"], refused
    preview = await till.pos("POST", "/v1/pos/checkout/preview", {
        "member_id": member["id"], "lines": [line("BEANS", "coffee", 8000)], "coupons": [code]})
    assert (await preview.json())["coupon_discount"] == 1000
    # 8,000 >= min_spend 5,000: 1,000 off, 8,000 - 1,000 = 7,000 payable; 7,000 fen / 100 = 70 points
    sale = await till.sale(order("O1", [line("BEANS", "coffee", 8000)], 7000, at=NOW, member_id=member["id"],
                                 coupons=[code]))
    assert sale["coupon_discount"] == 1000 and sale["payable"] == 7000 and sale["points_earned"] == 70
    assert (await held(till, member["id"]))[code] == "redeemed"
    used = await problem(await till.pos("POST", "/v1/pos/orders", order(
        "O2", [line("BEANS", "coffee", 8000)], 7000, at=NOW, member_id=member["id"], coupons=[code])),
        422, "coupon_not_usable")
    assert "used already" in used["detail"]
    # another chain's till does not know this chain's coupon
    stranger = await other_chain.new_member("13500001022")
    await problem(await other_chain.pos("POST", "/v1/pos/orders", order(
        "X1", [line("BEANS", "coffee", 8000)], 7000, at=NOW, member_id=stranger["id"], coupons=[code])),
        422, "coupon_not_usable")
    await problem(await other_chain.pos("POST", "/v1/pos/scan", {"code": code}), 404, "coupon_not_found")
    assert await verify() == []


async def test_percent_gift_and_stacking(till):
    member = await till.new_member("13500001030")
    percent = await template(till, name="12% off", kind="percent", amount_off=0, percent_off=12, max_off=500,
                             min_spend=0, stackable=True)
    cash = await template(till, name="3 off", amount_off=300, min_spend=0, stackable=True)
    plain = await template(till, name="plain 2 off", amount_off=200, min_spend=0)
    gift = await template(till, name="free cookie", kind="gift", amount_off=0, sku="COOKIE", min_spend=0)
    codes = {name: (await give(till, member["id"], t["id"]))["code"]
             for name, t in [("percent", percent), ("cash", cash), ("plain", plain), ("gift", gift)]}
    small = await till.sale(order("P1", [line("LATTE", "coffee", 3000)], 3000 - 360, at=NOW, member_id=member["id"],
                                  coupons=[codes["percent"]]))
    assert small["coupon_discount"] == 360  # 12 % of 3000
    codes["percent"] = (await give(till, member["id"], percent["id"]))["code"]
    capped = await till.sale(order("P2", [line("BEANS", "coffee", 10000)], 10000 - 500 - 300, at=NOW,
                                   member_id=member["id"], coupons=[codes["percent"], codes["cash"]]))
    assert capped["coupon_discount"] == 800  # 12 % of 10,000 = 1,200 capped at 500, then 300 off: 500 + 300
    refused = await problem(await till.pos("POST", "/v1/pos/orders", order(
        "P3", [line("BEANS", "coffee", 10000)], 9800, at=NOW, member_id=member["id"],
        coupons=[codes["plain"], codes["gift"]])), 422, "coupon_not_usable")
    assert "cannot be combined" in refused["detail"]
    missing = await problem(await till.pos("POST", "/v1/pos/orders", order(
        "P4", [line("BEANS", "coffee", 10000)], 10000, at=NOW, member_id=member["id"], coupons=[codes["gift"]])),
        422, "coupon_not_usable")
    assert "COOKIE" in missing["detail"]
    with_gift = await till.sale(order("P5", [line("BEANS", "coffee", 5000), line("COOKIE", "bakery", 1200, qty=2)],
                                      5000 + 600, at=NOW, member_id=member["id"], coupons=[codes["gift"]]))
    assert with_gift["coupon_discount"] == 600  # one cookie of two: 1,200 / 2 = 600; paid 5,000 + 1,200 - 600
    assert (await held(till, member["id"]))[codes["plain"]] == "issued"  # the refused order left it alone


async def test_scan_shows_the_coupon_and_the_member_usable_ones(till, clock):
    member = await till.new_member("13500001040")
    soon = await give(till, member["id"], (await template(till, name="soon", valid_days=2))["id"])
    later = await give(till, member["id"], (await template(till, name="later", valid_days=20))["id"])
    used = await give(till, member["id"], (await template(till, name="used", min_spend=0))["id"])
    await till.sale(order("O1", [line("BEANS", "coffee", 8000)], 7000, at=NOW, member_id=member["id"],
                          coupons=[used["code"]]))
    by_phone = await (await till.pos("POST", "/v1/pos/scan", {"code": "13500001040"})).json()
    assert by_phone["kind"] == "member" and [c["code"] for c in by_phone["coupons"]] == [soon["code"], later["code"]]
    by_coupon = await (await till.pos("POST", "/v1/pos/scan", {"code": later["code"].lower()})).json()
    assert by_coupon["kind"] == "coupon" and by_coupon["coupon"]["code"] == later["code"]
    assert by_coupon["member"]["id"] == member["id"] and len(by_coupon["coupons"]) == 2
    redeemed = await (await till.pos("POST", "/v1/pos/scan", {"code": used["code"]})).json()
    assert redeemed["coupon"]["status"] == "redeemed"
    clock.advance(days=3)
    after = await (await till.pos("POST", "/v1/pos/scan", {"code": soon["code"]})).json()
    assert after["coupon"]["status"] == "expired" and [c["code"] for c in after["coupons"]] == [later["code"]]
    lapsed = await problem(await till.pos("POST", "/v1/pos/orders", order(
        "O2", [line("BEANS", "coffee", 8000)], 7000, at=clock.now().isoformat(), member_id=member["id"],
        coupons=[soon["code"]])), 422, "coupon_not_usable")
    assert "expired at" in lapsed["detail"]  # valid 2 days from issue, 3 days have passed


async def test_a_full_refund_gives_back_a_coupon_still_valid(till, clock):
    member = await till.new_member("13500001050")
    made = await template(till, min_spend=0, valid_days=5)
    kept, lapsed = (await give(till, member["id"], made["id"]))["code"], (await give(till, member["id"], made["id"]))["code"]
    await till.sale(order("O1", [line("BEANS", "coffee", 6000)], 5000, at=NOW, member_id=member["id"], coupons=[kept]))
    await till.sale(order("O2", [line("BEANS", "coffee", 6000)], 5000, at=NOW, member_id=member["id"], coupons=[lapsed]))
    half = await till.pos("POST", "/v1/pos/orders/O1/refunds", {"refund_id": "R1", "amount": 2500})
    assert (await half.json())["coupons_restored"] == []
    rest = await till.pos("POST", "/v1/pos/orders/O1/refunds", {"refund_id": "R2", "amount": 2500})
    assert (await rest.json())["coupons_restored"] == [kept]
    assert (await held(till, member["id"]))[kept] == "issued"
    clock.advance(days=6)
    late = await till.pos("POST", "/v1/pos/orders/O2/refunds", {"refund_id": "R1", "amount": 5000})
    assert (await late.json())["coupons_restored"] == []
    assert (await held(till, member["id"]))[lapsed] == "redeemed"


async def test_a_gift_coupon_redeemed_at_the_counter(till):
    member = await till.new_member("13500001060")
    gift = await give(till, member["id"], (await template(till, name="free cookie", kind="gift", amount_off=0,
                                                          sku="COOKIE", min_spend=0))["id"])
    cash = await give(till, member["id"], (await template(till))["id"])
    path = f"/v1/pos/coupons/{gift['code']}/redeem"
    first = await till.pos("POST", path, None, idempotency_key="gift-1")
    assert first.status == 200 and (await first.json())["status"] == "redeemed"
    replay = await till.pos("POST", path, None, idempotency_key="gift-1")
    assert replay.headers["Idempotent-Replayed"] == "true" and await replay.json() == await first.json()
    again = await problem(await till.pos("POST", path, None), 422, "coupon_not_usable")
    assert "used already" in again["detail"]
    await problem(await till.pos("POST", f"/v1/pos/coupons/{cash['code']}/redeem", None), 422, "coupon_not_usable")
    await problem(await till.pos("POST", "/v1/pos/coupons/CPN0000000000000000/redeem", None), 404, "coupon_not_found")
    assert await held(till, member["id"]) == {gift["code"]: "redeemed", cash["code"]: "issued"}


async def test_welcome_coupons_come_with_joining(till):
    made = await template(till, name="welcome", min_spend=0)
    gone = await template(till, name="scarce", stock=1, min_spend=0)
    welcome = copy.deepcopy(PROGRAM)
    welcome["welcome_coupons"] = [str(made["id"]), str(gone["id"]), "999999"]
    await till.set_program(welcome)
    first, second = await till.new_member("13500001070"), await till.new_member("13500001071")
    assert sorted(c["name"] for c in (await (await till.admin(
        "GET", f"/v1/members/{first['id']}/coupons")).json())["items"]) == ["scarce", "welcome"]
    assert [c["name"] for c in (await (await till.admin(
        "GET", f"/v1/members/{second['id']}/coupons")).json())["items"]] == ["welcome"]  # scarce ran out
    await problem(await till.admin("POST", "/v1/members", {"phone": "13500001072", "card_no": "CPN0000000000000000"}),
                  422, "validation_error")


@pytest.mark.postgres
async def test_one_coupon_at_five_tills_at_once_and_stock_under_concurrent_issues(till):
    member = await till.new_member("13500001080")
    code = (await give(till, member["id"], (await template(till, min_spend=0))["id"]))["code"]
    answers = await asyncio.gather(*[till.pos("POST", "/v1/pos/orders", order(
        f"C{i}", [line("BEANS", "coffee", 6000)], 5000, at=NOW, member_id=member["id"], coupons=[code]))
        for i in range(5)])
    assert sorted(a.status for a in answers) == [201, 422, 422, 422, 422]
    assert (await till.member(member["id"]))["balances"]["points"] == 50  # one order earned
    scarce = await template(till, name="scarce", stock=5)
    people = [await till.new_member(f"135000011{i:02d}") for i in range(20)]
    issued = await asyncio.gather(*[till.admin("POST", f"/v1/members/{p['id']}/coupons",
                                               {"template_id": scarce["id"]}) for p in people])
    assert sorted(a.status for a in issued) == [201] * 5 + [422] * 15  # 20 claims of a stock of 5
    limited = await template(till, name="one each", per_member_limit=1)
    twice = await asyncio.gather(*[till.admin("POST", f"/v1/members/{member['id']}/coupons",
                                              {"template_id": limited["id"]}) for _ in range(6)])
    assert sorted(a.status for a in twice) == [201] + [422] * 5
    assert await verify() == []


async def test_an_operator_voids_an_issued_coupon(till, other_chain):
    member = await till.new_member("13500001100")
    made = await template(till, min_spend=0)
    kept, voided = (await give(till, member["id"], made["id"]))["code"], (await give(till, member["id"], made["id"]))["code"]
    path = f"/v1/coupons/{voided}/void"
    answer = await till.admin("POST", path, {"reason": "issued by mistake"})
    assert answer.status == 200 and (await answer.json())["status"] == "voided"
    assert (await till.admin("POST", path, {"reason": "again"})).status == 200  # as it is
    refused = await problem(await till.pos("POST", "/v1/pos/orders", order(
        "V1", [line("BEANS", "coffee", 6000)], 5000, at=NOW, member_id=member["id"], coupons=[voided])),
        422, "coupon_not_usable")
    assert "voided" in refused["detail"]
    scanned = await (await till.pos("POST", "/v1/pos/scan", {"code": voided})).json()
    assert scanned["coupon"]["status"] == "voided" and [c["code"] for c in scanned["coupons"]] == [kept]
    await till.sale(order("V2", [line("BEANS", "coffee", 6000)], 5000, at=NOW, member_id=member["id"], coupons=[kept]))
    await problem(await till.admin("POST", f"/v1/coupons/{kept}/void", {"reason": "late"}), 422, "coupon_not_usable")
    await problem(await other_chain.admin("POST", path, {"reason": "not mine"}), 404, "coupon_not_found")
    auditor = await (await till.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json()
    await problem(await till.admin("POST", f"/v1/coupons/{kept}/void", {"reason": "x"}, key=auditor["key"]),
                  403, "forbidden")
    assert await held(till, member["id"]) == {kept: "redeemed", voided: "voided"}



async def test_bad_input_on_the_coupon_routes_is_a_clear_refusal(till, other_chain):
    member = await till.new_member("13500001200")
    made = await template(till)
    code = (await give(till, member["id"], made["id"]))["code"]
    await problem(await till.admin("POST", f"/v1/coupons/{code}/void", {}), 422, "validation_error")
    await problem(await till.admin("POST", f"/v1/coupons/{code}/void", {"reason": ""}), 422, "validation_error")
    await problem(await till.admin("POST", f"/v1/members/{member['id']}/coupons", {"template_id": "one"}),
                  422, "validation_error")
    await problem(await other_chain.admin("GET", f"/v1/members/{member['id']}/coupons"), 404, "not_found")
    await problem(await till.admin("GET", f"/v1/members/{member['id']}/coupons?cursor=%%%"), 400, "bad_request")
    await problem(await till.admin("GET", "/v1/reviews?status=maybe"), 422, "validation_error")
    assert await held(till, member["id"]) == {code: "issued"}
