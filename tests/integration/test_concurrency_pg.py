"""Concurrent spends on PostgreSQL: the guarded balance update lets exactly as many through as
the balance covers, whether the requests meet in one gateway process or in two; and the birthday
job run by two processes at once gives each member one coupon."""
from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import sys
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from loyalty_core.models import JournalEntry
from loyalty_core.verify import verify
from tests.conftest import REDIS_URL, SECRET

from ..e2e.programs import PROGRAM
from ..helpers import adjustment, free_port, ledger_items

pytestmark = pytest.mark.postgres

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
SPEND = {"account": "points", "amount": -10, "reason": "concurrent spend"}


async def funded_member(chain, points: int = 100) -> int:
    member = await chain.new_member("13100131000")
    response = await adjustment(chain, member["id"], points, reason="fund")
    assert response.status == 201
    return member["id"]


async def outcome(chain, member_id: int, answers: list[tuple[int, dict]]) -> None:
    counted = Counter((status, body.get("code")) for status, body in answers)
    assert counted == {(201, None): 10, (422, "insufficient_points"): len(answers) - 10}, counted
    assert (await chain.member(member_id))["balances"]["points"] == 0
    spends = [e for e in await ledger_items(chain, member_id) if e["changes"].get("points") == -10]
    assert len(spends) == 10
    assert await JournalEntry.filter(chain_id=chain.chain_id, member_id=member_id).count() == 11
    assert await verify() == []


async def test_fifty_concurrent_spends_in_one_process(chain):
    member_id = await funded_member(chain)

    async def spend() -> tuple[int, dict]:
        response = await adjustment(chain, member_id, -10, reason="concurrent spend")
        return response.status, await response.json()

    answers = await asyncio.gather(*[spend() for _ in range(50)])
    await outcome(chain, member_id, list(answers))


async def _start(port: int, database_url: str, prefix: str, **env_vars: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
           "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING", **env_vars}
    return await asyncio.create_subprocess_exec(LOYALTY, "serve", "--workers", "1", "--port", str(port), env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def _wait_ready(session: aiohttp.ClientSession, base: str, process: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if process.returncode is not None:
            raise AssertionError(f"gateway exited: {(await process.stderr.read()).decode()}")
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{base} never became ready")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def two_gateways(database_url: str, redis_prefix: str, shared_redis: bool = False, **env_vars: str):
    """Two ``loyalty serve`` processes over the test's database, ready; yields a session and their
    bases. Each has Redis keys of its own unless ``shared_redis`` (as in production)."""
    ports = [free_port(), free_port()]
    processes = []
    try:
        for port in ports:
            prefix = redis_prefix if shared_redis else f"{redis_prefix}proc{port}:"
            processes.append(await _start(port, database_url, prefix, **env_vars))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base, process in zip(bases, processes):
                await _wait_ready(session, base, process)
            yield session, bases
    finally:
        await asyncio.gather(*[_stop(process) for process in processes])


async def test_fifty_concurrent_spends_across_two_gateway_processes(chain, database_url, redis_prefix):
    member_id = await funded_member(chain)
    async with two_gateways(database_url, redis_prefix) as (session, bases):
        async def spend(base: str) -> tuple[int, dict]:
            headers = {"Authorization": f"Bearer {chain.admin_key}", "Idempotency-Key": uuid.uuid4().hex,
                       "Content-Type": "application/json"}
            async with session.post(f"{base}/v1/members/{member_id}/adjustments", data=orjson.dumps(SPEND),
                                    headers=headers) as response:
                return response.status, await response.json(content_type=None)

        answers = await asyncio.gather(*[spend(base) for base in bases for _ in range(25)])
        # Both processes read the same final balance.
        for base in bases:
            async with session.get(f"{base}/v1/members/{member_id}",
                                   headers={"Authorization": f"Bearer {chain.admin_key}"}) as response:
                assert (await response.json())["balances"]["points"] == 0
    await outcome(chain, member_id, list(answers))


async def test_birthday_run_by_two_processes_at_once_gives_one_coupon_each(chain, database_url, redis_prefix):
    """The gateways run on the real clock: the members are born in this month, in Shanghai."""
    template = await (await chain.admin("POST", "/v1/coupon-templates", {
        "name": "birthday treat", "kind": "cash", "amount_off": 500, "valid_days": 30})).json()
    await chain.set_program({**copy.deepcopy(PROGRAM), "birthday": {"coupon_template": str(template["id"])}})
    month = datetime.now(ZoneInfo("Asia/Shanghai")).month
    other_month = month % 12 + 1
    born = [await chain.new_member(f"136100000{i:02d}", birthday=f"19{80 + i}-{month:02d}-{1 + i % 28:02d}")
            for i in range(15)]
    later = await chain.new_member("13610000099", birthday=f"1990-{other_month:02d}-15")
    async with two_gateways(database_url, redis_prefix) as (session, bases):
        async def run(base: str) -> int:
            async with session.post(f"{base}/v1/jobs/birthday", headers={
                    "Authorization": f"Bearer {chain.admin_key}"}) as response:
                assert response.status == 200, await response.text()
                return (await response.json())["processed"]

        processed = await asyncio.gather(*[run(base) for base in bases for _ in range(2)])
    assert sum(processed) == 15  # 15 members born this month, one coupon each, however the runs split them
    held = [(await (await chain.admin("GET", f"/v1/members/{m['id']}/coupons")).json())["items"] for m in born]
    assert [len(items) for items in held] == [1] * 15
    assert (await (await chain.admin("GET", f"/v1/members/{later['id']}/coupons")).json())["items"] == []
    assert await verify() == []


async def test_verify_reads_one_snapshot_while_the_ledger_moves(chain):
    """Postings and account rows read in separate statements would disagree now and then while
    adjustments commit in between; one REPEATABLE READ snapshot never does."""
    member_id = await funded_member(chain, 10_000)

    async def moving() -> None:
        for i in range(60):
            assert (await adjustment(chain, member_id, 1 if i % 2 else -1, reason="churn")).status == 201

    async def checking() -> list:
        found = []
        for _ in range(30):
            found += await verify()
        return found

    _, differences = await asyncio.gather(moving(), checking())
    assert differences == []
