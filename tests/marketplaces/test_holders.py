"""Unclaimed holders under pressure: a bind that commits while the buyer's next order is being
placed loses nothing; a holder an operator froze keeps its points; a member's points never end
up on a holder that a stranger could bind; nobody sells to a holder at the till."""
from __future__ import annotations

from loyalty_core import joining, marketplace
from loyalty_core.chains import get_program

from ..e2e.programs import line, order
from ..helpers import adjustment, problem
from .shops import balances, holder_of
from .test_youzan import beijing, send


async def test_a_bind_committing_while_the_next_order_is_placed_loses_nothing(chain, youzan, clock, monkeypatch):
    await send(chain, youzan.paid("R1", "40.00", open_id="yz-race", pay_time=beijing(clock)))
    holder = await holder_of(chain, "youzan", "yz-race")
    member = await chain.new_member("13700000901")
    found_buyer = marketplace.buyer

    async def bound_meanwhile(shop, event, vault):
        found = await found_buyer(shop, event, vault)  # the order finds the holder, then the bind commits
        await joining.bind(shop.chain_id, member["id"], shop.platform, event.buyer_id,
                           await get_program(shop.chain_id), clock.now())
        return found

    monkeypatch.setattr(marketplace, "buyer", bound_meanwhile)
    await send(chain, youzan.paid("R2", "50.00", open_id="yz-race", pay_time=beijing(clock)))
    assert (await chain.member(holder["id"]))["merged_into"] == member["id"]
    assert (await balances(chain, holder["id"]))["pending_points"] == 0
    assert (await balances(chain, member["id"]))["pending_points"] == 90


async def test_a_holder_an_operator_froze_keeps_its_points(chain, youzan, clock, fake_wechat):
    from ..wechat.conftest import connect as connect_app

    await send(chain, youzan.paid("F1", "40.00", open_id="yz-frozen", pay_time=beijing(clock)))
    holder = await holder_of(chain, "youzan", "yz-frozen")
    assert (await chain.admin("POST", f"/v1/members/{holder['id']}/freeze", {"reason": "fraud"})).status == 200
    app = await connect_app(chain, fake_wechat)
    token, member = await app.member("13700000902")
    await problem(await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "youzan", "buyer_id": "yz-frozen"}),
                  422, "member_frozen")
    assert (await balances(chain, member["id"]))["pending_points"] == 0
    assert (await balances(chain, holder["id"]))["pending_points"] == 40


async def test_a_member_is_never_merged_into_a_holder(chain, youzan, clock):
    await send(chain, youzan.paid("M1", "40.00", open_id="yz-m", pay_time=beijing(clock)))
    holder = await holder_of(chain, "youzan", "yz-m")
    real = await chain.new_member("13700000903")
    assert (await adjustment(chain, real["id"], 500)).status == 201
    await problem(await chain.admin("POST", f"/v1/members/{holder['id']}/merge", {"from_member_id": real["id"]}),
                  422, "validation_error")
    assert (await balances(chain, real["id"]))["points"] == 500
    # the right way round: the holder into the member
    merged = await chain.admin("POST", f"/v1/members/{real['id']}/merge", {"from_member_id": holder["id"]})
    assert merged.status == 200, await merged.text()
    assert (await balances(chain, real["id"]))["pending_points"] == 40


async def test_nobody_sells_to_a_holder_at_the_till(chain, youzan, clock):
    await send(chain, youzan.paid("T1", "40.00", open_id="yz-till", pay_time=beijing(clock)))
    holder = await holder_of(chain, "youzan", "yz-till")
    response = await chain.pos("POST", "/v1/pos/orders", order("POS-H1", [line("LATTE", "coffee", 1000)],
                                                               member_id=holder["id"], at=clock.now().isoformat()))
    await problem(response, 404, "member_not_found")
    assert (await balances(chain, holder["id"]))["pending_points"] == 40


async def test_an_operator_lists_members_apart_from_holders(chain, youzan, clock):
    member = await chain.new_member("13700000905")
    await send(chain, youzan.paid("L1", "40.00", open_id="yz-list", pay_time=beijing(clock)))
    holder = await holder_of(chain, "youzan", "yz-list")

    async def listed(query: str) -> list[int]:
        response = await chain.admin("GET", f"/v1/members{query}")
        assert response.status == 200, await response.text()
        return [m["id"] for m in (await response.json())["items"]]

    assert await listed("?unclaimed=false") == [member["id"]]
    assert await listed("?unclaimed=true") == [holder["id"]]
    assert sorted(await listed("")) == sorted([member["id"], holder["id"]])
