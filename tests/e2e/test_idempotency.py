"""Idempotency-Key as API.md's table says, on registering members and on adjustments."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import orjson

from gateway import idempotency
from loyalty_core.models import IdempotencyRecord, JournalEntry, Member

from ..helpers import adjustment, ledger_items, problem

PHONE = "13800138001"


async def members_in(chain) -> int:
    return await Member.filter(chain_id=chain.chain_id).count()


async def adjustments_of(chain, member_id: int) -> list[dict]:
    return [e for e in await ledger_items(chain, member_id) if e["kind"] == "adjustment"]


async def test_missing_key_is_refused_and_applies_nothing(chain):
    response = await chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key=False)
    body = await problem(response, 400, "idempotency_key_required")
    assert "Idempotency-Key" in body["detail"]
    assert await members_in(chain) == 0

    member = await chain.new_member("13800138002")
    response = await adjustment(chain, member["id"], 100, idempotency_key=False)
    await problem(response, 400, "idempotency_key_required")
    assert (await chain.member(member["id"]))["balances"]["points"] == 0
    assert await adjustments_of(chain, member["id"]) == []


async def test_same_key_same_body_replays_the_first_answer_once_applied(chain):
    first = await chain.admin("POST", "/v1/members", {"phone": PHONE, "name": "李雷"}, idempotency_key="reg-1")
    assert first.status == 201, await first.text()
    assert "Idempotent-Replayed" not in first.headers
    again = await chain.admin("POST", "/v1/members", {"phone": PHONE, "name": "李雷"}, idempotency_key="reg-1")
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"].startswith("application/json")
    assert await again.json() == await first.json()
    assert await members_in(chain) == 1

    member_id = (await first.json())["id"]
    credit = await adjustment(chain, member_id, 50, reason="goodwill", idempotency_key="adj-1")
    assert credit.status == 201, await credit.text()
    for _ in range(3):
        replay = await adjustment(chain, member_id, 50, reason="goodwill", idempotency_key="adj-1")
        assert replay.status == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert await replay.json() == await credit.json()
    assert (await chain.member(member_id))["balances"]["points"] == 50
    assert len(await adjustments_of(chain, member_id)) == 1
    assert await JournalEntry.filter(chain_id=chain.chain_id, kind="adjustment").count() == 1


async def test_same_key_other_body_is_refused(chain):
    first = await chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key="reg-2")
    assert first.status == 201
    response = await chain.admin("POST", "/v1/members", {"phone": "13800138003"}, idempotency_key="reg-2")
    await problem(response, 422, "idempotency_key_reused")
    assert await members_in(chain) == 1
    found = await (await chain.admin("GET", "/v1/members?phone=13800138003")).json()
    assert found["items"] == []

    member_id = (await first.json())["id"]
    assert (await adjustment(chain, member_id, 10, idempotency_key="adj-2")).status == 201
    await problem(await adjustment(chain, member_id, 20, idempotency_key="adj-2"), 422, "idempotency_key_reused")
    # The same key on another path is another request too.
    other = await chain.admin("POST", f"/v1/members/{member_id}/freeze", {"reason": "x"}, idempotency_key="adj-2")
    await problem(other, 422, "idempotency_key_reused")
    assert (await chain.member(member_id))["balances"]["points"] == 10
    assert not (await chain.member(member_id))["frozen"]


async def _running_record(chain, key: str, path: str, body: dict, clock, lease_seconds: int = 60) -> None:
    await IdempotencyRecord.create(
        chain_id=chain.chain_id, key=key, state="running",
        fingerprint=idempotency.fingerprint("POST", path, orjson.dumps(body)),
        locked_until=clock.now() + timedelta(seconds=lease_seconds), created_at=clock.now())


async def test_key_still_running_is_409_until_its_lease_expires(chain, clock):
    body = {"phone": PHONE}
    await _running_record(chain, "reg-3", "/v1/members", body, clock)
    await problem(await chain.admin("POST", "/v1/members", body, idempotency_key="reg-3"), 409, "request_in_progress")
    assert await members_in(chain) == 0

    member = await chain.new_member("13800138004")
    path = f"/v1/members/{member['id']}/adjustments"
    adjust_body = {"account": "points", "amount": 30, "reason": "test"}
    await _running_record(chain, "adj-3", path, adjust_body, clock)
    await problem(await adjustment(chain, member["id"], 30, idempotency_key="adj-3"), 409, "request_in_progress")
    clock.advance(seconds=30)
    await problem(await adjustment(chain, member["id"], 30, idempotency_key="adj-3"), 409, "request_in_progress")
    assert (await chain.member(member["id"]))["balances"]["points"] == 0

    # The first process died: once its lease ran out the key is taken over, and applied once.
    clock.advance(seconds=31)
    taken = await adjustment(chain, member["id"], 30, idempotency_key="adj-3")
    assert taken.status == 201, await taken.text()
    assert "Idempotent-Replayed" not in taken.headers
    replay = await adjustment(chain, member["id"], 30, idempotency_key="adj-3")
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert (await chain.member(member["id"]))["balances"]["points"] == 30
    assert len(await adjustments_of(chain, member["id"])) == 1

    created = await chain.admin("POST", "/v1/members", body, idempotency_key="reg-3")
    assert created.status == 201, await created.text()
    assert await members_in(chain) == 2


async def test_concurrent_twins_apply_once(chain):
    member = await chain.new_member(PHONE)
    responses = await asyncio.gather(*[
        adjustment(chain, member["id"], 7, idempotency_key="twin") for _ in range(6)])
    statuses = sorted(r.status for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    fresh = [r for r in responses if r.status == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1
    for response in responses:
        if response.status == 409:
            await problem(response, 409, "request_in_progress")
        elif response is not fresh[0]:
            assert response.headers["Idempotent-Replayed"] == "true"
            assert await response.json() == await fresh[0].json()
    assert (await chain.member(member["id"]))["balances"]["points"] == 7
    assert len(await adjustments_of(chain, member["id"])) == 1


async def test_keys_are_scoped_per_chain(chain, other_chain):
    mine = await chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key="shared-key")
    theirs = await other_chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key="shared-key")
    assert mine.status == theirs.status == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await mine.json())["id"] != (await theirs.json())["id"]
    # A different body under the same key in the other chain is no reuse either.
    third = await other_chain.admin("POST", f"/v1/members/{(await theirs.json())['id']}/adjustments",
                                    {"account": "points", "amount": 5, "reason": "x"}, idempotency_key="reg-mine")
    assert third.status == 201
    again = await chain.admin("POST", "/v1/members", {"phone": "13800138009"}, idempotency_key="reg-mine")
    assert again.status == 201 and "Idempotent-Replayed" not in again.headers


async def test_invalid_keys_are_400_and_apply_nothing(chain):
    member = await chain.new_member(PHONE)
    bad_keys = ["k" * 129, "k" * 200, "ключ-1", "clé", "tab\there", ""]
    for key in bad_keys:
        sent = {"Authorization": f"Bearer {chain.admin_key}", "Idempotency-Key": key}
        response = await chain.client.post(f"/v1/members/{member['id']}/adjustments", headers=sent,
                                           data=orjson.dumps({"account": "points", "amount": 5, "reason": "x"}))
        text = await response.text()
        assert response.status == 400, (key, response.status, text)
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert orjson.loads(text)["code"] in {"bad_request", "idempotency_key_required"}
    ok = await adjustment(chain, member["id"], 5, idempotency_key="k" * 128)
    assert ok.status == 201
    assert (await chain.member(member["id"]))["balances"]["points"] == 5
    assert len(await adjustments_of(chain, member["id"])) == 1
    stored = await IdempotencyRecord.filter(chain_id=chain.chain_id).values_list("key", flat=True)
    assert "k" * 128 in stored and not set(stored) & set(bad_keys)


async def test_validation_errors_are_not_stored(chain):
    schema_error = await chain.admin("POST", "/v1/members", {"phone": "123"}, idempotency_key="fix-me")
    await problem(schema_error, 422, "validation_error")
    # Passes the schema, refused by the core's phone rule: still a validation error, not kept.
    core_error = await chain.admin("POST", "/v1/members", {"phone": "12345678901"}, idempotency_key="fix-me")
    assert (await problem(core_error, 422, "validation_error"))["errors"][0]["field"] == "phone"
    bad_json = await chain.client.post("/v1/members", data=b"{", headers={
        "Authorization": f"Bearer {chain.admin_key}", "Idempotency-Key": "fix-me"})
    await problem(bad_json, 400, "invalid_json")
    fixed = await chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key="fix-me")
    assert fixed.status == 201, await fixed.text()
    assert "Idempotent-Replayed" not in fixed.headers

    member_id = (await fixed.json())["id"]
    await problem(await adjustment(chain, member_id, 0, idempotency_key="fix-adj"), 422, "validation_error")
    fixed = await adjustment(chain, member_id, 15, idempotency_key="fix-adj")
    assert fixed.status == 201 and "Idempotent-Replayed" not in fixed.headers
    assert (await chain.member(member_id))["balances"]["points"] == 15


async def test_business_refusal_is_stored_and_replayed(chain):
    member = await chain.new_member(PHONE)
    refused = await adjustment(chain, member["id"], -1000, idempotency_key="spend-1000")
    first = await problem(refused, 422, "insufficient_points")
    assert "Idempotent-Replayed" not in refused.headers

    assert (await adjustment(chain, member["id"], 2000)).status == 201
    replay = await adjustment(chain, member["id"], -1000, idempotency_key="spend-1000")
    assert await problem(replay, 422, "insufficient_points") == first
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await chain.member(member["id"]))["balances"]["points"] == 2000
    assert [e["changes"] for e in await adjustments_of(chain, member["id"])] == [{"points": 2000}]

    # A new key is a new request: now there are enough points.
    spent = await adjustment(chain, member["id"], -1000, idempotency_key=str(uuid.uuid4()))
    assert spent.status == 201
    assert (await spent.json())["balances"]["points"] == 1000


async def test_already_exists_is_stored_like_any_refusal(chain):
    await chain.new_member(PHONE)
    duplicate = await chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key="dup")
    await problem(duplicate, 409, "already_exists")
    again = await chain.admin("POST", "/v1/members", {"phone": PHONE}, idempotency_key="dup")
    await problem(again, 409, "already_exists")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await members_in(chain) == 1


async def test_concurrent_twins_whose_answer_is_not_kept_never_fail(chain):
    """The first twin's validation error releases the key while the others are looking at it."""
    member = await chain.new_member(PHONE)
    statuses: list[int] = []
    for round_ in range(10):
        responses = await asyncio.gather(*[
            adjustment(chain, member["id"], 0, idempotency_key=f"zero-{round_}") for _ in range(20)])
        for response in responses:
            body = await response.json()
            statuses.append(response.status)
            assert (response.status, body["code"]) in {(409, "request_in_progress"), (422, "validation_error")}, body
    assert 422 in statuses
    assert not await IdempotencyRecord.filter(chain_id=chain.chain_id, key__startswith="zero-").exists()
    assert await adjustments_of(chain, member["id"]) == []
