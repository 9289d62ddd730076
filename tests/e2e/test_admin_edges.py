"""Edges an operator runs into: the last owner key, erased members, the end of a list."""
from ..helpers import problem


async def test_the_last_owner_key_cannot_be_revoked(chain):
    keys = await (await chain.admin("GET", "/v1/admin-keys")).json()
    (owner,) = [k for k in keys["items"] if k["role"] == "owner"]
    await problem(await chain.admin("DELETE", f"/v1/admin-keys/{owner['id']}"), 409, "last_owner_key")
    second = await (await chain.admin("POST", "/v1/admin-keys", {"role": "owner", "label": "backup"})).json()
    assert (await chain.admin("DELETE", f"/v1/admin-keys/{owner['id']}")).status == 204
    # the revoked key no longer works; the new one does
    await problem(await chain.admin("GET", "/v1/stores"), 401, "unauthorized")
    assert (await chain.admin("GET", "/v1/stores", key=second["key"])).status == 200


async def test_an_erased_member_can_be_neither_adjusted_nor_unfrozen(chain):
    member = await chain.new_member("13500000001")
    assert (await chain.admin("DELETE", f"/v1/members/{member['id']}")).status == 204
    before = await chain.member(member["id"])
    await problem(await chain.admin("POST", f"/v1/members/{member['id']}/adjustments",
                                    {"account": "points", "amount": 10, "reason": "x"}), 422, "member_erased")
    await problem(await chain.admin("POST", f"/v1/members/{member['id']}/unfreeze"), 422, "member_erased")
    after = await chain.member(member["id"])
    assert after == before and after["frozen"] is True and after["display_name"] == "已注销"


async def test_a_full_last_page_has_no_cursor(chain):
    for i in range(4):
        await chain.new_member(f"1350000001{i}")
    first = await (await chain.admin("GET", "/v1/members?limit=2")).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = await (await chain.admin("GET", f"/v1/members?limit=2&cursor={first['next_cursor']}")).json()
    assert len(second["items"]) == 2 and second["next_cursor"] is None
    assert {m["id"] for m in first["items"]}.isdisjoint({m["id"] for m in second["items"]})


async def test_registration_needs_a_real_store_code(chain):
    details = await problem(await chain.admin("POST", "/v1/members", {"phone": "13500000020", "store_code": "NOPE"}),
                            422, "validation_error")
    assert details["errors"][0]["field"] == "store_code"
    assert (await chain.admin("GET", "/v1/members?phone=13500000020")).status == 200
    assert (await (await chain.admin("GET", "/v1/members?phone=13500000020")).json())["items"] == []
