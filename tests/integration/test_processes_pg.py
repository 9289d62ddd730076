"""``loyalty serve --workers 2``: two processes on one port, whose caches see a change made
through the other within a second, and that stop together."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.auth import signature
from tests.conftest import REDIS_URL, SECRET

from ..helpers import child_pids, free_port

pytestmark = pytest.mark.postgres

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


def signed(kit, path: str, body: bytes, n: int) -> dict:
    timestamp, nonce = str(int(kit.clock.now().timestamp())), f"multi-process-{n:08d}"
    return {"X-Terminal-Id": kit.terminal_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
            "X-Signature": signature(kit.terminal_secret, "POST", path, timestamp, nonce, body),
            "Content-Type": "application/json"}


async def test_two_gateway_processes_share_a_port_and_see_each_others_changes(chain, database_url, redis_prefix):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": redis_prefix,
           "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    master = await asyncio.create_subprocess_exec(LOYALTY, "serve", "--workers", "2", "--port", str(port), env=env,
                                                  stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base, body = f"http://127.0.0.1:{port}", orjson.dumps({"code": "13000000000"})
    admin = {"Authorization": f"Bearer {chain.admin_key}", "Content-Type": "application/json"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for _ in range(300):
                try:
                    async with session.get(base + "/readyz") as ready:
                        if ready.status == 200 and len(child_pids(master.pid)) == 2:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            assert len(child_pids(master.pid)) == 2

            async def scans(first: int) -> list[int]:  # each on a new connection: spread over both processes
                statuses = []
                for n in range(first, first + 20):
                    async with aiohttp.ClientSession() as fresh:
                        async with fresh.post(base + "/v1/pos/scan", data=body,
                                              headers=signed(chain, "/v1/pos/scan", body, n)) as answer:
                            statuses.append(answer.status)
                return statuses

            assert set(await scans(0)) == {404}  # signed and known everywhere (no such member)
            async with session.put(base + "/v1/program", headers=admin,
                                   data=orjson.dumps({"points": {"earn": {"per_amount": 50, "points": 1}}})) as put:
                assert put.status == 200
            async with session.delete(base + f"/v1/stores/S01/terminals/{chain.terminal_id}", headers=admin) as gone:
                assert gone.status == 204
            await asyncio.sleep(1.1)  # the caches' bound: one second
            assert set(await scans(100)) == {401}
            for _ in range(10):
                async with aiohttp.ClientSession() as fresh:
                    async with fresh.get(base + "/v1/program", headers=admin) as program:
                        assert (await program.json())["points"]["earn"]["per_amount"] == 50
    finally:
        pids = child_pids(master.pid) if master.returncode is None else []
        master.send_signal(signal.SIGTERM)
        await asyncio.wait_for(master.wait(), 30)
    assert master.returncode == 0
    await asyncio.sleep(0.5)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "a child outlived its parent"
