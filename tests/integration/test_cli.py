"""The `loyalty` command as an operator runs it, against the test database."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from loyalty_core.verify import verify
from tests.conftest import SECRET

from ..helpers import adjustment, child_pids, sql_rows

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


async def loyalty(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(LOYALTY, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_chain_create_prints_a_working_owner_key(client, database_url):
    code, out, err = await loyalty(database_url, "chain", "create", "茶饮连锁", "--timezone", "Asia/Shanghai")
    assert code == 0, err
    printed = json.loads(out)
    assert set(printed) == {"chain_id", "admin_key"}
    headers = {"Authorization": f"Bearer {printed['admin_key']}"}
    program = await client.get("/v1/program", headers=headers)
    assert program.status == 200
    assert (await program.json())["timezone"] == "Asia/Shanghai"
    store = await client.post("/v1/stores", json={"code": "S01", "name": "First"}, headers=headers)
    assert store.status == 201
    keys = await (await client.get("/v1/admin-keys", headers=headers)).json()
    assert [k["role"] for k in keys["items"]] == ["owner"]
    chains = await sql_rows(f"SELECT name, timezone FROM chains WHERE id = {printed['chain_id']}")
    assert chains == [{"name": "茶饮连锁", "timezone": "Asia/Shanghai"}]

    code, out, err = await loyalty(database_url, "chain", "create", "Tokyo", "--timezone", "Asia/Tokyo")
    assert code == 0, err
    tokyo = json.loads(out)
    assert tokyo["chain_id"] != printed["chain_id"] and tokyo["admin_key"] != printed["admin_key"]
    program = await client.get("/v1/program", headers={"Authorization": f"Bearer {tokyo['admin_key']}"})
    assert (await program.json())["timezone"] == "Asia/Tokyo"


async def test_chain_create_refuses_an_unknown_timezone(client, database_url):
    for zone in ["Mars/Olympus_Mons", "Asia"]:
        code, out, err = await loyalty(database_url, "chain", "create", "Nowhere", "--timezone", zone)
        assert code == 2 and "timezone" in err and out == ""
    assert await sql_rows("SELECT id FROM chains") == []


@pytest.mark.tampers
async def test_verify_finds_a_tampered_balance(chain, database_url):
    member = await chain.new_member("13200132000")
    other = await chain.new_member("13200132001")
    assert (await adjustment(chain, member["id"], 300)).status == 201
    assert (await adjustment(chain, member["id"], -120)).status == 201
    assert (await adjustment(chain, other["id"], 5000, account="stored_value")).status == 201
    code, out, err = await loyalty(database_url, "verify")
    assert code == 0, out + err
    assert "0 differences" in out

    conn_sql = f"UPDATE accounts SET balance = balance + 1000 WHERE member_id = {member['id']} AND kind = 'points'"
    from tortoise import Tortoise

    await Tortoise.get_connection("default").execute_script(conn_sql)
    assert (await chain.member(member["id"]))["balances"]["points"] == 1180
    code, out, err = await loyalty(database_url, "verify")
    assert code == 1, out + err
    lines = [line for line in out.splitlines() if f"member {member['id']}" in line]
    assert any("stored 1180, journal 180" in line for line in lines), out
    assert f"member {other['id']}" not in out
    assert {d.what for d in await verify()} >= {"balance differs from journal"}


async def test_migrate_is_idempotent(chain, database_url):
    member = await chain.new_member("13200132002")
    for _ in range(2):
        code, out, err = await loyalty(database_url, "migrate")
        assert code == 0, err
        assert "migrations applied" in out
    assert (await chain.member(member["id"]))["phone"] == "132****2002"
    assert (await adjustment(chain, member["id"], 10)).status == 201


async def test_unknown_command_and_missing_arguments_exit_non_zero(client, database_url):
    code, _, err = await loyalty(database_url, "launch-rockets")
    assert code == 2 and "invalid choice" in err
    code, _, err = await loyalty(database_url, "chain", "create")
    assert code == 2 and "name" in err
    assert await sql_rows("SELECT id FROM chains") == []


async def test_serve_refuses_a_shared_database_without_redis(client, database_url):
    shared = "postgres://postgres@127.0.0.1:1/nowhere"  # never reached: the check comes first
    code, _, err = await loyalty(shared, "serve", "--port", "1")
    assert code == 2
    assert "REDIS_URL is required" in err and "--single-process" in err


async def test_worker_processes_run_and_stop_with_their_parent(client, database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    for stop in (signal.SIGTERM, signal.SIGKILL):
        parent = await asyncio.create_subprocess_exec(LOYALTY, "worker", "--processes", "2", env=env,
                                                      stdout=asyncio.subprocess.DEVNULL,
                                                      stderr=asyncio.subprocess.DEVNULL)
        for _ in range(300):  # a busy machine may take seconds to start two Pythons
            if len(child_pids(parent.pid)) == 2:
                break
            await asyncio.sleep(0.1)
        pids = child_pids(parent.pid)
        assert len(pids) == 2
        parent.send_signal(stop)  # SIGKILL too: the children must not go on alone
        await asyncio.wait_for(parent.wait(), 30)
        for _ in range(100):
            if not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids):
                break
            await asyncio.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids), stop


async def test_a_stop_while_the_children_start_leaves_none_behind(client, database_url):
    """The stop comes at every moment of the start, from the fork of the first child to the
    handlers being set: no child may miss it and serve on alone (found by a marker in their
    environment, which an orphan keeps)."""
    marker = f"LOYALTY_TEST_RUN={uuid.uuid4().hex}"
    name, value = marker.split("=")
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING", name: value}
    for attempt in range(12):
        parent = await asyncio.create_subprocess_exec(LOYALTY, "worker", "--processes", "3", env=env,
                                                      stdout=asyncio.subprocess.DEVNULL,
                                                      stderr=asyncio.subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + 30
        while len(child_pids(parent.pid)) < 1 + attempt % 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0)  # the child is seen as soon as it is forked
        parent.send_signal(signal.SIGKILL if attempt % 2 else signal.SIGTERM)
        await asyncio.wait_for(parent.wait(), 40)
    for _ in range(200):
        if not _marked(marker):
            break
        await asyncio.sleep(0.1)
    assert _marked(marker) == []


def _marked(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker``."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes().split(b"\0") and "zombie" not in _state(int(environ.parent.name)):
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


async def test_fill_birth_months_reads_the_encrypted_birthdays(chain, database_url):
    born = await chain.new_member("13200132010", birthday="1990-07-15")
    plain = await chain.new_member("13200132011")
    from tortoise import Tortoise

    await Tortoise.get_connection("default").execute_script("UPDATE members SET birth_month = NULL")  # as before 0014
    for expected in ("birth months filled: 1", "birth months filled: 0"):  # safe to run again
        code, out, err = await loyalty(database_url, "fill-birth-months")
        assert code == 0, err
        assert expected in out
    months = await sql_rows(f"SELECT id, birth_month FROM members WHERE id IN ({born['id']}, {plain['id']}) ORDER BY id")
    assert [m["birth_month"] for m in months] == [7, None]
