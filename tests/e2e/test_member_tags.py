"""Manual tags over the admin API: set as a whole, shown on the member, searched by tag, per chain."""
from __future__ import annotations

from ..helpers import problem


async def tags_of(kit, member_id: int, tags: list[str], status: int = 200):
    response = await kit.admin("PUT", f"/v1/members/{member_id}/tags", {"tags": tags})
    assert response.status == status, await response.text()
    return await response.json()


async def found(kit, query: str) -> list[int]:
    response = await kit.admin("GET", f"/v1/members?{query}")
    assert response.status == 200, await response.text()
    return [m["id"] for m in (await response.json())["items"]]


async def test_tags_are_set_as_a_whole_and_searched(chain, other_chain):
    a, b, c = [await chain.new_member(f"1340000000{i}") for i in range(3)]
    stranger = await other_chain.new_member("13400000009")
    assert (await tags_of(chain, a["id"], ["vip", "coffee", "vip"]))["tags"] == ["vip", "coffee"]
    await tags_of(chain, b["id"], ["coffee"])
    await tags_of(other_chain, stranger["id"], ["vip"])
    assert await found(chain, "tag=vip") == [a["id"]]
    assert sorted(await found(chain, "tag=coffee")) == sorted([a["id"], b["id"]])
    assert await found(chain, "tag=tea") == []
    assert await found(other_chain, "tag=vip") == [stranger["id"]]

    assert (await tags_of(chain, a["id"], ["tea"]))["tags"] == ["tea"]  # the whole set: vip and coffee go
    assert await found(chain, "tag=vip") == [] and await found(chain, "tag=coffee") == [b["id"]]
    assert (await chain.member(a["id"]))["tags"] == ["tea"]
    assert await found(chain, "tag=tea&tier=regular") == [a["id"]]
    assert (await tags_of(chain, a["id"], []))["tags"] == []
    assert (await chain.member(c["id"]))["tags"] == []


async def test_bad_tags_and_other_chains_members_are_refused(chain, other_chain):
    member = await chain.new_member("13400000010")
    for tags in (["x" * 33], [""], [f"t{i}" for i in range(51)], ["a\u0000b"]):
        await problem(await chain.admin("PUT", f"/v1/members/{member['id']}/tags", {"tags": tags}),
                      422, "validation_error")
    await problem(await other_chain.admin("PUT", f"/v1/members/{member['id']}/tags", {"tags": ["vip"]}),
                  404, "not_found")
    auditor = await (await chain.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json()
    await problem(await chain.admin("PUT", f"/v1/members/{member['id']}/tags", {"tags": ["vip"]}, key=auditor["key"]),
                  403, "forbidden")
    assert (await chain.member(member["id"]))["tags"] == []
