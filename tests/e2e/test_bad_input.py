"""Bad input reads as a problem with a code and a field, changes nothing, and is never a 500."""
from __future__ import annotations

import copy

import orjson
import pytest

from ..helpers import adjustment, ledger_items, problem
from .programs import API_EXAMPLE

def _set(program: dict, path: list, value) -> dict:
    changed = copy.deepcopy(program)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


BAD_PROGRAMS = [
    (["tiers", "levels", 1, "threshold"], -5, "tiers.levels[1].threshold"),
    (["points", "expiry", "mode"], "weekly", "points.expiry.mode"),
    (["tiers", "levels", 2, "threshold"], 500, "tiers"),  # 0, 1000, 500, 20000: not rising
    (["timezone"], "Mars/Olympus_Mons", "timezone"),
    (["timezone"], "Asia", "timezone"),  # a directory of the zone database, not a zone
    (["timezone"], "A" * 5000, "timezone"),
    (["points", "campaigns", 1, "hours"], "25:00-26:00", "points.campaigns[1].hours"),
    (["points", "campaigns", 1, "hours"], "14:00-11:00", "points.campaigns[1].hours"),
    (["points", "campaigns", 0, "days_of_month"], [0, 32], "points.campaigns[0].days_of_month[0]"),
    (["points", "earn", "per_amount"], 0, "points.earn.per_amount"),
    (["points", "earn", "points"], 1.5, "points.earn.points"),
    (["points", "redeem", "max_ratio"], 1.5, "points.redeem.max_ratio"),
    (["behaviors", "register", "points"], "100", "behaviors.register.points"),
    (["behaviors", "checkin", "streak_bonus"], {"week": 20}, "behaviors.checkin.streak_bonus"),
    (["tiers", "levels", 0, "threshold"], 10, "tiers"),
    (["tiers", "levels", 1, "code"], "Silver Card", "tiers.levels[1].code"),
    (["tiers", "task_upgrades", 0, "to"], "platinum", "tiers"),
    (["tiers", "metric"], "karma", "tiers.metric"),
    (["points", "surprise"], True, "points.surprise"),
]


def assert_contains(got, want, where: str = "") -> None:
    """Everything sent comes back as sent (defaults may add fields around it)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        for key, value in want.items():
            assert key in got, where + "." + key
            assert_contains(got[key], value, where + "." + key)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (g, w) in enumerate(zip(got, want)):
            assert_contains(g, w, f"{where}[{index}]")
    else:
        assert got == want and type(got) is type(want), (where, got, want)


@pytest.mark.parametrize(("path", "value", "field"), BAD_PROGRAMS, ids=[b[2] + "=" + str(b[1])[:20] for b in BAD_PROGRAMS])
async def test_bad_program_is_422_with_field_and_changes_nothing(chain, path, value, field):
    saved = await chain.set_program(API_EXAMPLE)
    response = await chain.admin("PUT", "/v1/program", _set(API_EXAMPLE, path, value))
    body = await problem(response, 422, "validation_error")
    assert field in [e["field"] for e in body["errors"]], body["errors"]
    assert all(e["message"] for e in body["errors"])
    after = await (await chain.admin("GET", "/v1/program")).json()
    assert after == saved


async def test_valid_program_round_trips_with_exact_decimals(chain):
    saved = await chain.set_program(API_EXAMPLE)
    fetched = await (await chain.admin("GET", "/v1/program")).json()
    assert fetched == saved
    assert fetched["tiers"]["levels"][1]["earn_multiplier"] == 1.15
    assert fetched["points"]["campaigns"][1]["factor"] == 1.5
    assert fetched["points"]["redeem"]["max_ratio"] == 0.5
    assert fetched["behaviors"]["register"] == {"points": 100, "daily_cap": None, "monthly_cap": None,
                                                "streak_bonus": {}}
    assert_contains(fetched, API_EXAMPLE)
    # The same document again changes nothing.
    assert await chain.set_program(fetched) == fetched


async def test_program_body_that_is_not_an_object(chain):
    before = await (await chain.admin("GET", "/v1/program")).json()
    for raw, status, code in [(b"", 400, "invalid_json"), (b"not json", 400, "invalid_json"),
                              (b"[]", 422, "validation_error"), (b"null", 422, "validation_error"),
                              (b'{"timezone": "Asia/Shanghai",}', 400, "invalid_json")]:
        response = await chain.client.put("/v1/program", data=raw,
                                          headers={"Authorization": f"Bearer {chain.admin_key}"})
        await problem(response, status, code)
    assert await (await chain.admin("GET", "/v1/program")).json() == before


def _dumps(body) -> bytes:
    """JSON with integers beyond 64 bits too (orjson refuses those)."""
    import json

    return json.dumps(body, ensure_ascii=False).encode()


async def _post_raw(chain, path: str, raw: bytes, content_type: str = "application/json"):
    return await chain.client.post(path, data=raw, headers={
        "Authorization": f"Bearer {chain.admin_key}", "Idempotency-Key": "raw-" + str(abs(hash(raw))),
        "Content-Type": content_type})


async def test_bodies_that_are_not_json(chain):
    member = await chain.new_member("13700137000")
    paths = ["/v1/members", f"/v1/members/{member['id']}/adjustments", f"/v1/members/{member['id']}/freeze",
             "/v1/stores", "/v1/admin-keys"]
    for path in paths:
        for raw in [b"{", b"phone=13700137001", b"\xff\xfe{}", b"{'phone': '13700137001'}",
                    b'{"phone": "13700137001"} trailing', "{\"phone\": \"\ud800\"}".encode("utf-8", "surrogatepass")]:
            await problem(await _post_raw(chain, path, raw), 400, "invalid_json")
        for raw in [b"", b"   \n"]:
            await problem(await _post_raw(chain, path, raw), 400, "invalid_json")
    assert (await chain.member(member["id"]))["frozen"] is False
    listed = await (await chain.admin("GET", "/v1/members")).json()
    assert [m["id"] for m in listed["items"]] == [member["id"]]


async def test_wrong_types_and_unknown_fields_name_the_field(chain):
    member = await chain.new_member("13700137000")
    path = f"/v1/members/{member['id']}/adjustments"
    cases = [
        ({"account": "points", "amount": "10", "reason": "x"}, "amount"),
        ({"account": "points", "amount": 1.5, "reason": "x"}, "amount"),
        ({"account": "points", "amount": 10.0, "reason": "x"}, "amount"),
        ({"account": "points", "amount": True, "reason": "x"}, "amount"),
        ({"account": "points", "amount": None, "reason": "x"}, "amount"),
        ({"account": "points", "reason": "x"}, "amount"),
        ({"account": "points", "amount": 10**30, "reason": "x"}, "amount"),
        ({"account": "points", "amount": -(10**19), "reason": "x"}, "amount"),
        ({"account": "miles", "amount": 10, "reason": "x"}, "account"),
        ({"account": "points", "amount": 10, "reason": ""}, "reason"),
        ({"account": "points", "amount": 10, "reason": 5}, "reason"),
        ({"account": "points", "amount": 10, "reason": "x", "approved_by": "me"}, "approved_by"),
        ([{"account": "points", "amount": 10, "reason": "x"}], "(body)"),
        ("points", "(body)"),
    ]
    for body, field in cases:
        response = await _post_raw(chain, path, _dumps(body))
        problem_body = await problem(response, 422, "validation_error")
        assert field in [e["field"] for e in problem_body["errors"]], (body, problem_body)
    registrations = [
        ({"phone": 13700137001}, "phone"),
        ({"phone": "13700137001", "name": ""}, "name"),
        ({"phone": "13700137001", "birthday": "31/12/1990"}, "birthday"),
        ({"phone": "13700137001", "birthday": "1990-02-30"}, "birthday"),
        ({"phone": "13700137001", "card_no": "卡号1234"}, "card_no"),
        ({"phone": "13700137001", "vip": True}, "vip"),
        ({"phone": "not a phone!"}, "phone"),
        ({"phone": "23700137001"}, "phone"),
        ({}, "phone"),
    ]
    for body, field in registrations:
        problem_body = await problem(await chain.admin("POST", "/v1/members", body), 422, "validation_error")
        assert field in [e["field"] for e in problem_body["errors"]], (body, problem_body)
    await problem(await chain.admin("POST", "/v1/stores", {"code": "S 02", "name": "x"}), 422, "validation_error")
    await problem(await chain.admin("POST", "/v1/stores", {"code": "S02", "name": "x", "timezone": "Asia"}),
                  422, "validation_error")
    await problem(await chain.admin("POST", "/v1/admin-keys", {"role": "root"}), 422, "validation_error")

    after = await chain.member(member["id"])
    assert after["balances"]["points"] == 0
    assert await ledger_items(chain, member["id"]) == []
    listed = await (await chain.admin("GET", "/v1/members")).json()
    assert [m["id"] for m in listed["items"]] == [member["id"]]
    stores = await (await chain.admin("GET", "/v1/stores")).json()
    assert [s["code"] for s in stores["items"]] == ["S01"]


async def test_odd_paths_and_queries_are_never_500(chain):
    member = await chain.new_member("13700137000")
    for path in ["/v1/members/abc", "/v1/members/-1", "/v1/members/0", "/v1/members/1e3",
                 "/v1/members/" + "9" * 40, "/v1/members/%C2%B2", "/v1/members/%D9%A1", "/v1/members/%EF%BC%91",
                 f"/v1/members/{member['id']}%20", "/v1/members/abc/ledger"]:
        await problem(await chain.admin("GET", path), 404, "not_found")
    for query, status, code in [("limit=0", 422, "validation_error"), ("limit=abc", 422, "validation_error"),
                                ("limit=201", 422, "validation_error"), ("cursor=%%%", 400, "bad_request"),
                                ("cursor=_-_-", 400, "bad_request"), ("cursor=w7w", 400, "bad_request"),
                                ("phone=12", 422, "validation_error"), ("identity=card", 400, "bad_request"),
                                ("identity=:123", 400, "bad_request")]:
        await problem(await chain.admin("GET", f"/v1/members?{query}"), status, code)
    await problem(await chain.admin("GET", f"/v1/members/{member['id']}/ledger?cursor=!!"), 400, "bad_request")
    await problem(await adjustment(chain, 10**30, 5), 404, "not_found")


async def test_oversized_body_is_413(chain):
    response = await _post_raw(chain, "/v1/members", b'{"phone": "' + b"1" * (3 * 1024 * 1024) + b'"}')
    await problem(response, 413, "payload_too_large")
    listed = await (await chain.admin("GET", "/v1/members")).json()
    assert listed["items"] == []


async def test_problem_bodies_never_carry_a_stack_trace(chain):
    response = await chain.admin("POST", "/v1/members", {"phone": {"$gt": ""}})
    body = await problem(response, 422, "validation_error")
    text = orjson.dumps(body).decode()
    assert "Traceback" not in text and "File \"" not in text
    assert set(body) >= {"type", "title", "status", "detail", "code", "errors"}
