"""Logging in and joining from the mini-program, over HTTP against the fake WeChat: new members,
members who first bought at the till, WeChat's error codes, the access token, member tokens."""
from __future__ import annotations

import asyncio
import copy
import threading

import pytest
import requests

from loyalty_core.verify import verify

from ..e2e.programs import PROGRAM, line, order
from ..helpers import problem
from .conftest import connect

WELCOME = {**copy.deepcopy(PROGRAM), "behaviors": {"register": {"points": 100}, "invite": {"points": 50, "monthly_cap": 2}}}


@pytest.fixture
async def shop(mini, clock):
    await mini.kit.set_program(WELCOME)
    return mini


async def test_a_new_member_logs_in_joins_and_reads_their_points(shop):
    first = await shop.login(openid="o_new_member")
    assert first["needs_join"] is True and first["member"] is None and first["token"].startswith("mt.")
    assert shop.fake.token_fetches[shop.app_id] == 0  # code2Session is signed by the app secret, not a token
    await problem(await shop.call("GET", "/v1/mp/me", first["token"]), 403, "join_required")
    joined = await shop.join(first["token"], "13800000001", nickname="小李", birthday="1990-05-06")
    member = joined["member"]
    assert joined["created"] is True and member["balances"]["points"] == 100  # the welcome points
    assert member["name"] == "小李" and member["phone"].endswith("0001")  # their own name; the phone masked
    assert {"channel": f"wechat:{shop.app_id}", "external_id": "o_new_member"} in member["identities"]
    me = await shop.me(first["token"])  # the same token now speaks for the member
    assert me["id"] == member["id"] and me["tier"]["progress"]["current"] == 100
    again = await shop.login(openid="o_new_member")  # the next login finds the member
    assert again["needs_join"] is False and again["member"]["id"] == member["id"]
    assert again["token"] != first["token"] and (await shop.me(first["token"]))["id"] == member["id"]
    admin_view = await shop.kit.member(member["id"])
    assert admin_view["balances"]["points"] == 100


async def test_a_member_who_first_bought_at_the_till_finds_their_points(shop):
    kit = shop.kit
    at_till = await kit.new_member("13800000002")  # 100 welcome points
    await kit.sale(order("T1", [line("BEANS", "coffee", 25000)], member_id=at_till["id"],
                         at=kit.clock.now().isoformat()))  # 250 yuan: 250 points
    token = (await shop.login(openid="o_till_buyer"))["token"]
    joined = await shop.join(token, "13800000002", nickname="ignored")
    assert joined["created"] is False and joined["member"]["id"] == at_till["id"]
    assert joined["member"]["balances"]["points"] == 100 + 250  # no second welcome
    assert joined["member"]["name"] is None  # an existing member's details stay as they were
    assert (await shop.join(token, "13800000002", status=200))["member"]["id"] == at_till["id"]  # joined already
    assert (await shop.login(openid="o_till_buyer"))["member"]["id"] == at_till["id"]


async def test_welcome_points_come_once_per_phone_ever(shop):
    token, member = await shop.member("13800000003", openid="o_first")
    assert member["balances"]["points"] == 100
    assert (await shop.kit.admin("DELETE", f"/v1/members/{member['id']}")).status in (200, 204)
    await problem(await shop.call("GET", "/v1/mp/me", token), 401, "unauthorized")  # erasure ends the sessions
    _, rejoined = await shop.member("13800000003", openid="o_second")
    assert rejoined["id"] != member["id"] and rejoined["balances"]["points"] == 0


async def test_an_invitation_credits_the_inviter_within_the_monthly_cap(shop):
    _, inviter = await shop.member("13800000010")
    for i in range(3):
        await shop.member(f"1380000002{i}", inviter=inviter["id"])
    # invite: 50 points each, monthly_cap 2: 100 welcome + 2 x 50; the third is recorded without points
    assert (await shop.kit.member(inviter["id"]))["balances"]["points"] == 100 + 2 * 50
    _, stranger = await shop.member("13800000030", inviter=999999)  # an unknown inviter: the join stands
    assert stranger["balances"]["points"] == 100


async def test_wechat_error_codes_become_clear_answers(shop):
    fake = shop.fake
    used = fake.login_code(shop.app_id)
    assert (await shop.call("POST", "/v1/mp/login", None, {"app_id": shop.app_id, "code": used})).status == 200
    refused = await problem(await shop.call("POST", "/v1/mp/login", None, {"app_id": shop.app_id, "code": used}),
                            401, "wechat_code_invalid")
    assert "40163" in refused["detail"]
    unknown = await problem(await shop.call("POST", "/v1/mp/login", None, {"app_id": shop.app_id, "code": "nope"}),
                            401, "wechat_code_invalid")
    assert "40029" in unknown["detail"]
    fake.fail("/sns/jscode2session", -1, times=2)  # busy twice: retried with backoff, then answered
    assert (await shop.login())["needs_join"] is True
    assert fake.calls["/sns/jscode2session"] == 3 + 3  # the three above; two busy answers and the one that worked
    fake.fail("/sns/jscode2session", -1, times=3)  # busy three times: given up
    busy = await problem(await shop.call("POST", "/v1/mp/login", None, {
        "app_id": shop.app_id, "code": fake.login_code(shop.app_id)}), 502, "wechat_error")
    assert "-1" in busy["detail"]
    fake.fail("/sns/jscode2session", 45011)
    limited = await problem(await shop.call("POST", "/v1/mp/login", None, {
        "app_id": shop.app_id, "code": fake.login_code(shop.app_id)}), 502, "wechat_error")
    assert "45011" in limited["detail"]
    token = (await shop.login())["token"]
    bad_phone = await problem(await shop.call("POST", "/v1/mp/join", token, {"phone_code": "not-given"}),
                              401, "wechat_code_invalid")
    assert "40029" in bad_phone["detail"]
    abroad = await problem(await shop.call("POST", "/v1/mp/join", token, {
        "phone_code": fake.phone_code(shop.app_id, "+85261234567")}), 422, "validation_error")
    assert abroad["errors"][0]["field"] == "phone_code"
    await problem(await shop.call("POST", "/v1/mp/login", None, {"app_id": "wx0000000000000000", "code": "c"}),
                  404, "not_found")
    await problem(await shop.call("POST", "/v1/mp/login", None, {"app_id": "not-an-app", "code": "c"}),
                  422, "validation_error")
    fake.add_app("wx00000000000000aa", "the-secret-wechat-knows-0000")  # connected with another secret
    assert (await shop.kit.admin("POST", "/v1/channels", {"platform": "wechat", "app_id": "wx00000000000000aa",
                                                          "app_secret": "aMistypedSecret000"})).status == 201
    misconfigured = await problem(await shop.call("POST", "/v1/mp/login", None, {
        "app_id": "wx00000000000000aa", "code": fake.login_code("wx00000000000000aa")}), 502, "wechat_error")
    assert "40125" in misconfigured["detail"]  # invalid appsecret: the operator's to fix
    assert await verify() == []


async def test_the_access_token_is_fetched_once_and_refreshed_once_when_wechat_refuses_it(shop):
    fake = shop.fake
    tokens = [(await shop.login())["token"] for _ in range(10)]
    joins = await asyncio.gather(*[shop.call("POST", "/v1/mp/join", token, {
        "phone_code": fake.phone_code(shop.app_id, f"1390000000{i}")}) for i, token in enumerate(tokens)])
    assert [j.status for j in joins] == [201] * 10
    assert fake.token_fetches[shop.app_id] == 1  # ten joins at once, one fetch
    fake.expire_tokens(shop.app_id)  # WeChat says 42001 from now on for that token
    token = (await shop.login())["token"]
    assert (await shop.join(token, "13900000099"))["created"] is True
    assert fake.token_fetches[shop.app_id] == 2  # refreshed once, and the call sent again
    assert fake.calls["/wxa/business/getuserphonenumber"] == 10 + 2


async def test_member_tokens_are_a_credential_of_their_own(shop, other_chain, clock):
    token, member = await shop.member("13800000040")
    await problem(await shop.kit.client.get("/v1/members", headers={"Authorization": f"Bearer {token}"}),
                  401, "unauthorized")  # not an admin key
    await problem(await shop.kit.client.post("/v1/pos/scan", data=b'{"code": "13800000040"}', headers={
        "Authorization": f"Bearer {token}"}), 401, "unauthorized")  # not a terminal
    _, _, secret = token.split(".", 2)
    on_b = f"mt.{other_chain.chain_id}.{secret}"  # chain A's token presented as chain B's
    await problem(await shop.call("GET", "/v1/mp/me", on_b), 401, "unauthorized")
    await problem(await shop.call("GET", "/v1/mp/me", other_chain.admin_key), 401, "unauthorized")
    for bad in ("mt.", "mt.1.short", "mt.x.yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", "Bearer", "ünï"):
        await problem(await shop.call("GET", "/v1/mp/me", bad), 401, "unauthorized")
    other_app = await connect(other_chain, shop.fake)
    b_token, b_member = await other_app.member("13800000040")  # the same phone on chain B: its own member
    assert b_member["id"] != member["id"] and (await other_app.me(b_token))["id"] == b_member["id"]
    clock.advance(days=7, seconds=1)  # tokens last 7 days
    await problem(await shop.call("GET", "/v1/mp/me", token), 401, "unauthorized")
    fresh = (await shop.login())["token"]
    assert (await shop.call("DELETE", "/v1/mp/session", fresh)).status == 204
    await problem(await shop.call("GET", "/v1/mp/rewards", fresh), 401, "unauthorized")  # logged out


async def test_channels_belong_to_one_chain_and_never_show_their_secrets(shop, other_chain):
    kit = shop.kit
    listed = await (await kit.admin("GET", "/v1/channels")).json()
    assert [(c["platform"], c["app_id"], c["secrets_set"]) for c in listed["items"]] == [
        ("wechat", shop.app_id, ["app_secret"])]
    assert shop.secret not in str(listed)
    body = {"platform": "wechat", "app_id": shop.app_id, "app_secret": shop.secret}
    await problem(await other_chain.admin("POST", "/v1/channels", body), 409, "already_exists")
    again = await kit.admin("POST", "/v1/channels", {**body, "token": "pushToken1", "aes_key": "a" * 43})
    assert again.status == 200 and (await again.json())["secrets_set"] == ["app_secret", "token", "aes_key"]
    assert (await (await other_chain.admin("GET", "/v1/channels")).json())["items"] == []
    for bad in ({**body, "app_id": "wx123"}, {**body, "platform": "wechatpay"}, {**body, "mch_id": "1900000109"},
                {**body, "aes_key": "a" * 43}, {**body, "surprise": 1}, {**body, "app_secret": ""}):
        await problem(await kit.admin("POST", "/v1/channels", bad), 422, "validation_error")
    auditor = await (await kit.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json()
    await problem(await kit.admin("POST", "/v1/channels", body, key=auditor["key"]), 403, "forbidden")


async def test_no_wechatpy_call_runs_on_the_event_loop(shop, monkeypatch):
    seen: list[tuple[str, bool]] = []
    send = requests.Session.request

    def watched(self, method, url, *args, **kwargs):
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append((url, on_loop or threading.current_thread() is threading.main_thread()))
        return send(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", watched)
    await shop.member("13800000050")
    assert len(seen) >= 3 and not any(on_loop for _, on_loop in seen), seen  # code2session, token, phone


async def test_sessions_of_one_account_all_speak_for_the_member_once_it_joins(shop, clock):
    phone_a = (await shop.login(openid="o_two_phones"))["token"]
    phone_b = (await shop.login(openid="o_two_phones"))["token"]
    joined = await shop.join(phone_a, "13800000060")
    assert (await shop.me(phone_b))["id"] == joined["member"]["id"]
    clock.advance(hours=1)
    assert (await shop.me(phone_b))["balances"]["points"] == 100


async def test_bad_input_on_the_mini_program_routes_changes_nothing(shop):
    token = (await shop.login(openid="o_careless"))["token"]
    for fields, field in [({"store_code": "NOPE"}, "store_code"), ({"inviter": "abc"}, "inviter"),
                          ({"birthday": "1990-13-01"}, "birthday"), ({"nickname": "x" * 51}, "nickname"),
                          ({"surprise": 1}, "surprise")]:
        body = {"phone_code": shop.fake.phone_code(shop.app_id, "13800000070"), **fields}
        refused = await problem(await shop.call("POST", "/v1/mp/join", token, body), 422, "validation_error")
        assert [e["field"] for e in refused["errors"]] == [field], refused
    await problem(await shop.call("POST", "/v1/mp/join", token, {}), 422, "validation_error")
    await problem(await shop.call("POST", "/v1/mp/join", token, None), 400, "invalid_json")
    await problem(await shop.call("GET", "/v1/mp/me", token), 403, "join_required")  # nobody joined
    assert (await (await shop.kit.admin("GET", "/v1/members?phone=13800000070")).json())["items"] == []
    token, member = await shop.member("13800000071")
    for path, body in [("/v1/mp/me/tasks/review", {"ref": "has space"}), ("/v1/mp/me/tasks/share", {"ref": "x" * 65}),
                       ("/v1/mp/me/bindings", {"platform": "taobao", "buyer_id": "a b"}),
                       ("/v1/mp/me/bindings", {"platform": "taobao"})]:
        await problem(await shop.call("POST", path, token, body), 422, "validation_error")
    await problem(await shop.call("POST", "/v1/mp/rewards/abc/redeem", token, idempotency_key="k1"), 404, "not_found")
    assert (await shop.me(token))["balances"]["points"] == member["balances"]["points"] == 100
    assert [i["channel"] for i in (await shop.me(token))["identities"]] == ["card", f"wechat:{shop.app_id}"]
