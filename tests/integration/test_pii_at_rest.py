"""Personal data and credentials at rest: what a stolen database dump (or a log file) would show."""
from __future__ import annotations

import hashlib

from gateway.logging import mask_personal_data
from tests.conftest import BACKEND

from ..helpers import sql_rows

PHONE, NAME, BIRTHDAY = "13912345678", "王小明", "1988-08-08"


def cells(rows: list[dict]) -> list[str]:
    return [str(value) for row in rows for value in row.values() if value is not None]


async def all_tables() -> list[str]:
    if BACKEND == "postgres":
        rows = await sql_rows("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = await sql_rows("SELECT name FROM sqlite_master WHERE type = 'table'")
    return [r["name"] for r in rows]


async def test_member_phone_and_name_are_not_stored_in_clear(chain):
    created = await chain.new_member(PHONE, name=NAME, birthday=BIRTHDAY)
    assert created["name"] == NAME  # the API, with the key, still reads them

    members = await sql_rows("SELECT * FROM members")
    assert len(members) == 1
    for cell in cells(members):
        assert PHONE not in cell and NAME not in cell and BIRTHDAY not in cell, cell
    # The phone is found by keyed hash, not by a plain hash anyone could recompute.
    assert members[0]["phone_hash"] not in {hashlib.sha256(PHONE.encode()).hexdigest(),
                                            hashlib.md5(PHONE.encode()).hexdigest()}

    # Nowhere else either: identities, journal keys, outbox payloads, stored idempotent answers.
    for table in await all_tables():
        for cell in cells(await sql_rows(f"SELECT * FROM {table}")):
            assert PHONE not in cell and NAME not in cell and BIRTHDAY not in cell, (table, cell)

    found = await (await chain.admin("GET", f"/v1/members?phone={PHONE}")).json()
    assert [m["id"] for m in found["items"]] == [created["id"]]


async def test_replayed_answer_still_carries_the_data_it_had(chain):
    body = {"phone": PHONE, "name": NAME}
    first = await chain.admin("POST", "/v1/members", body, idempotency_key="pii-replay")
    again = await chain.admin("POST", "/v1/members", body, idempotency_key="pii-replay")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    assert (await again.json())["name"] == NAME
    for cell in cells(await sql_rows("SELECT * FROM idempotency_records")):
        assert NAME not in cell and "138****" not in cell and "139****5678" not in cell


async def test_terminal_secrets_and_admin_keys_are_not_stored_in_clear(chain):
    made = await chain.admin("POST", "/v1/stores/S01/terminals", {"code": "POS2"})
    secret = (await made.json())["secret"]
    key = (await (await chain.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json())["key"]

    terminals = cells(await sql_rows("SELECT * FROM terminals"))
    assert terminals
    for cell in terminals:
        assert secret not in cell and chain.terminal_secret not in cell
    admin_keys = cells(await sql_rows("SELECT * FROM admin_keys"))
    for cell in admin_keys:
        assert key not in cell and chain.admin_key not in cell
    for table in await all_tables():
        for cell in cells(await sql_rows(f"SELECT * FROM {table}")):
            assert secret not in cell and key not in cell and chain.admin_key not in cell, table
    # Both still work.
    assert (await chain.admin("GET", "/v1/members", key=key)).status == 200


def test_log_lines_mask_mobile_numbers():
    event = {
        "event": f"member {PHONE} joined",
        "phone": PHONE,
        "detail": {"nested": [f"call {PHONE}", ("tuple", f"tel:{PHONE};")]},
        "prefixed": f"+86{PHONE} and 0086{PHONE} and 86-{PHONE}",
        "order": "order 2026112212345678901 is not a phone",
    }
    masked = mask_personal_data(None, "info", dict(event))
    text = repr(masked)
    assert PHONE not in text
    assert masked["event"] == "member 139****5678 joined"
    assert masked["phone"] == "139****5678"
    assert masked["detail"]["nested"][0] == "call 139****5678"
    assert masked["detail"]["nested"][1][1] == "tel:139****5678;"
    assert "139****5678" in masked["prefixed"] and "12345678" not in masked["prefixed"]
    assert masked["order"] == event["order"]  # a longer number is not a phone
