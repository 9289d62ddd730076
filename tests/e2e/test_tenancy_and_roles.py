"""Tenancy (another chain's ids are simply not there) and the roles of admin keys."""
from __future__ import annotations

import orjson

from ..helpers import adjustment, problem

BIG_ID = 987654321


def same_problem(mine: dict, theirs: dict, my_id, their_id) -> None:
    """Two 404s read the same once the id each names is blanked out."""
    assert {k: v for k, v in mine.items() if k != "detail"} == {k: v for k, v in theirs.items() if k != "detail"}
    assert mine["detail"].replace(str(my_id), "ID") == theirs["detail"].replace(str(their_id), "ID")


async def test_another_chains_ids_answer_404_like_unknown_ids(chain, other_chain):
    theirs = await other_chain.new_member("13900139000")
    their_id = theirs["id"]
    await adjustment(other_chain, their_id, 100)
    calls = [
        ("GET", "/v1/members/{id}", None),
        ("GET", "/v1/members/{id}/ledger", None),
        ("POST", "/v1/members/{id}/adjustments", {"account": "points", "amount": -10, "reason": "x"}),
        ("POST", "/v1/members/{id}/adjustments", {"account": "points", "amount": 10, "reason": "x"}),
        ("POST", "/v1/members/{id}/freeze", {"reason": "x"}),
        ("POST", "/v1/members/{id}/unfreeze", None),
        ("DELETE", "/v1/members/{id}", None),
    ]
    for method, path, body in calls:
        foreign = await problem(await chain.admin(method, path.format(id=their_id), body), 404, "not_found")
        unknown = await problem(await chain.admin(method, path.format(id=BIG_ID), body), 404, "not_found")
        same_problem(foreign, unknown, their_id, BIG_ID)

    # Their member is untouched: balance, ledger, not frozen, not erased.
    after = await other_chain.member(their_id)
    assert after["balances"]["points"] == 100
    assert after["frozen"] is False and after["erased"] is False and after["phone"] == "139****9000"
    searched = await (await chain.admin("GET", "/v1/members?phone=13900139000")).json()
    assert searched["items"] == []
    card = await (await chain.admin("GET", f"/v1/members?identity=card:{theirs['card_no']}")).json()
    assert card["items"] == []


async def test_another_chains_admin_keys_and_stores_are_not_found(chain, other_chain):
    made = await other_chain.admin("POST", "/v1/admin-keys", {"role": "operator"})
    assert made.status == 201
    their_key = await made.json()
    foreign = await problem(await chain.admin("DELETE", f"/v1/admin-keys/{their_key['id']}"), 404, "not_found")
    unknown = await problem(await chain.admin("DELETE", f"/v1/admin-keys/{BIG_ID}"), 404, "not_found")
    same_problem(foreign, unknown, their_key["id"], BIG_ID)
    still_works = await other_chain.admin("GET", "/v1/members", key=their_key["key"])
    assert still_works.status == 200
    listed = await (await chain.admin("GET", "/v1/admin-keys")).json()
    assert their_key["id"] not in {k["id"] for k in listed["items"]}

    assert (await other_chain.admin("POST", "/v1/stores", {"code": "S99", "name": "Theirs"})).status == 201
    foreign = await problem(await chain.admin("POST", "/v1/stores/S99/terminals", {"code": "T1"}), 404, "not_found")
    unknown = await problem(await chain.admin("POST", "/v1/stores/S98/terminals", {"code": "T1"}), 404, "not_found")
    same_problem(foreign, unknown, "S99", "S98")
    stores = await (await chain.admin("GET", "/v1/stores")).json()
    assert [s["code"] for s in stores["items"]] == ["S01"]


async def test_operator_manages_members_but_not_the_program_stores_or_keys(chain):
    made = await chain.admin("POST", "/v1/admin-keys", {"role": "operator", "label": "counter staff"})
    assert made.status == 201
    operator = (await made.json())["key"]
    before = await (await chain.admin("GET", "/v1/program")).json()

    await problem(await chain.admin("PUT", "/v1/program", {"timezone": "Asia/Tokyo"}, key=operator), 403, "forbidden")
    await problem(await chain.admin("POST", "/v1/stores", {"code": "S02", "name": "x"}, key=operator), 403, "forbidden")
    await problem(await chain.admin("POST", "/v1/stores/S01/terminals", {"code": "P9"}, key=operator),
                  403, "forbidden")
    await problem(await chain.admin("POST", "/v1/admin-keys", {"role": "owner"}, key=operator), 403, "forbidden")
    await problem(await chain.admin("GET", "/v1/admin-keys", key=operator), 403, "forbidden")
    await problem(await chain.admin("DELETE", "/v1/admin-keys/1", key=operator), 403, "forbidden")
    assert await (await chain.admin("GET", "/v1/program")).json() == before
    stores = await (await chain.admin("GET", "/v1/stores", key=operator)).json()
    assert [s["code"] for s in stores["items"]] == ["S01"]

    created = await chain.admin("POST", "/v1/members", {"phone": "13900139001"}, key=operator)
    assert created.status == 201, await created.text()
    member_id = (await created.json())["id"]
    adjusted = await adjustment(chain, member_id, 40, reason="welcome gift", key=operator)
    assert adjusted.status == 201
    assert (await adjusted.json())["balances"]["points"] == 40
    assert (await chain.admin("POST", f"/v1/members/{member_id}/freeze", {"reason": "check"}, key=operator)).status == 200


async def test_auditor_only_reads(chain):
    auditor = (await (await chain.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json())["key"]
    member = await chain.new_member("13900139002")
    for path in ["/v1/members", f"/v1/members/{member['id']}", f"/v1/members/{member['id']}/ledger",
                 "/v1/program", "/v1/stores"]:
        response = await chain.admin("GET", path, key=auditor)
        assert response.status == 200, (path, await response.text())
    refused = [
        ("POST", "/v1/members", {"phone": "13900139003"}),
        ("POST", f"/v1/members/{member['id']}/adjustments", {"account": "points", "amount": 5, "reason": "x"}),
        ("POST", f"/v1/members/{member['id']}/freeze", {"reason": "x"}),
        ("POST", f"/v1/members/{member['id']}/unfreeze", None),
        ("DELETE", f"/v1/members/{member['id']}", None),
        ("PUT", "/v1/program", {}),
        ("POST", "/v1/stores", {"code": "S03", "name": "x"}),
        ("POST", "/v1/admin-keys", {"role": "auditor"}),
        ("GET", "/v1/admin-keys", None),
    ]
    for method, path, body in refused:
        await problem(await chain.admin(method, path, body, key=auditor), 403, "forbidden")
    # Also without an Idempotency-Key: the role is checked first.
    no_key = await chain.admin("POST", "/v1/members", {"phone": "13900139003"}, key=auditor, idempotency_key=False)
    await problem(no_key, 403, "forbidden")
    after = await chain.member(member["id"])
    assert after["balances"]["points"] == 0 and not after["frozen"] and not after["erased"]
    listed = await (await chain.admin("GET", "/v1/members")).json()
    assert [m["id"] for m in listed["items"]] == [member["id"]]


async def test_revoked_key_is_401(chain):
    made = await (await chain.admin("POST", "/v1/admin-keys", {"role": "operator"})).json()
    assert (await chain.admin("GET", "/v1/members", key=made["key"])).status == 200
    revoked = await chain.admin("DELETE", f"/v1/admin-keys/{made['id']}")
    assert revoked.status == 204
    await problem(await chain.admin("GET", "/v1/members", key=made["key"]), 401, "unauthorized")
    await problem(await chain.admin("POST", "/v1/members", {"phone": "13900139004"}, key=made["key"]),
                  401, "unauthorized")
    await problem(await chain.admin("DELETE", f"/v1/admin-keys/{made['id']}"), 404, "not_found")
    keys = await (await chain.admin("GET", "/v1/admin-keys")).json()
    row = next(k for k in keys["items"] if k["id"] == made["id"])
    assert row["revoked_at"] is not None
    assert "key" not in row and all("key" not in k for k in keys["items"])


async def test_missing_or_garbage_credentials_are_401(chain):
    member = await chain.new_member("13900139005")
    bad_headers = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer lk_not-a-real-key"},
        {"Authorization": f"Token {chain.admin_key}"},
        {"Authorization": "Bearer " + "x" * 5000},
        # A terminal's credentials on an admin path are the wrong kind.
        {"X-Terminal-Id": chain.terminal_id, "X-Timestamp": "1", "X-Nonce": "n" * 16, "X-Signature": "00"},
    ]
    for headers in bad_headers:
        for method, path, body in [("GET", "/v1/members", None), ("GET", f"/v1/members/{member['id']}", None),
                                   ("POST", "/v1/members", {"phone": "13900139006"}),
                                   ("PUT", "/v1/program", {})]:
            sent = {**headers, "Idempotency-Key": "k1"}
            response = await chain.client.request(method, path, headers=sent,
                                                  data=orjson.dumps(body) if body is not None else None)
            await problem(response, 401, "unauthorized")
    listed = await (await chain.admin("GET", "/v1/members")).json()
    assert [m["id"] for m in listed["items"]] == [member["id"]]
