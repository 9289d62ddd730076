"""deploy/nginx.conf in front of two gateway processes on loopback (compose.yaml's `scaled`
profile without Docker): signed POS requests pass through unchanged, both gateways answer, a
nonce used through one gateway is refused through the other, an order resent under its
Idempotency-Key replays the first answer, and X-Request-Id comes back. Skipped where nginx is
not installed (Debian: `apt-get install nginx-light`)."""
from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.auth import signature
from tests.conftest import REDIS_URL, SECRET

from ..catalog import REPO
from ..helpers import free_port
from .programs import line, order, program

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
                                      None)
LOYALTY = str(Path(sys.executable).with_name("loyalty"))

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(NGINX is None, reason="nginx is not installed")]


def nginx_conf(tmp: Path, port: int, upstreams: list[int]) -> Path:
    """deploy/nginx.conf with loopback upstreams, a free port, and its files under ``tmp``."""
    text = (REPO / "deploy" / "nginx.conf").read_text()
    lines = iter(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    text, count = re.subn(r"server \S+ [^;]*;\s*# upstream", lambda _: next(lines), text)
    assert count == len(upstreams)
    text, listens = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    assert listens == 1
    text = text.replace("pid /tmp/nginx-loyalty.pid;", f"pid {tmp}/nginx.pid;")
    temp = "".join(f"    {name}_temp_path {tmp}/{name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temp, 1)
    if os.geteuid() == 0:  # nginx's workers would run as nobody, who may not write under tmp
        text = "user root;\n" + text
    path = tmp / "nginx.conf"
    path.write_text(text)
    return path


def signed(kit, method: str, path: str, body: bytes, nonce: str | None = None, key: str | None = None) -> dict:
    timestamp, nonce = str(int(datetime.now().timestamp())), nonce or secrets.token_hex(12)
    headers = {"X-Terminal-Id": kit.terminal_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
               "X-Signature": signature(kit.terminal_secret, method, path, timestamp, nonce, body),
               "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


async def _answering(session: aiohttp.ClientSession, url: str, seconds: float = 30, log: Path | None = None) -> None:
    for _ in range(int(seconds * 10)):
        try:
            async with session.get(url) as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {seconds} s" + (f": {log.read_text()[-2000:]}" if log else ""))


async def _served(session: aiohttp.ClientSession, port: int) -> int:
    """How many POST /v1/pos/scan this gateway answered (its Prometheus counter)."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
        text = await answer.text()
    found = re.findall(r'loyalty_http_requests_total\{method="POST",route="/v1/pos/scan",status="\d+"\} (\S+)', text)
    return int(sum(float(n) for n in found))


async def test_signed_requests_through_nginx_to_two_gateways(chain, database_url, redis_prefix, tmp_path):
    await chain.set_program(program(campaigns=[]))  # 1 point per 100 fen, whatever the day and hour
    member = await chain.new_member("13300000007")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": redis_prefix,
           "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    ports = [free_port(), free_port()]
    front = free_port()
    processes = [await asyncio.create_subprocess_exec(
        LOYALTY, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL) for port in ports]
    conf = nginx_conf(tmp_path, front, ports)
    log = (tmp_path / "nginx.log").open("wb")
    processes.append(await asyncio.create_subprocess_exec(
        NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;", stdout=log, stderr=log))
    base = f"http://127.0.0.1:{front}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for port in ports:
                await _answering(session, f"http://127.0.0.1:{port}/readyz")
            await _answering(session, base + "/readyz", log=tmp_path / "nginx.log")

            scan = orjson.dumps({"code": "13300000007"})
            for _ in range(12):
                async with session.post(base + "/v1/pos/scan", data=scan,
                                        headers=signed(chain, "POST", "/v1/pos/scan", scan)) as answer:
                    assert answer.status == 200, await answer.text()
                    assert (await answer.json())["member"]["id"] == member["id"]
                    assert answer.headers.get("X-Request-Id")
            served = [await _served(session, port) for port in ports]
            assert sum(served) == 12 and min(served) >= 1, f"both gateways answer: {served}"

            # the client's X-Request-Id is passed on and sent back
            async with session.get(base + "/healthz", headers={"X-Request-Id": "till-42-0001"}) as answer:
                assert answer.headers["X-Request-Id"] == "till-42-0001"

            # one nonce, twice: whichever gateway gets the second, it is a replay (Redis is shared)
            nonce = secrets.token_hex(12)
            statuses = []
            for _ in range(2):
                async with aiohttp.ClientSession() as fresh:  # a new connection each time
                    async with fresh.post(base + "/v1/pos/scan", data=scan,
                                          headers=signed(chain, "POST", "/v1/pos/scan", scan, nonce)) as answer:
                        statuses.append((answer.status, (await answer.json()).get("code")))
            assert statuses[0][0] == 200 and statuses[1] == (401, "replayed_request"), statuses

            # an order, then the same order resent under its Idempotency-Key: one order, the same answer
            now = datetime.now().astimezone().isoformat(timespec="seconds")
            sale = orjson.dumps(order("NGINX-1", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=now))
            answers = []
            for _ in range(3):
                async with session.post(base + "/v1/pos/orders", data=sale,
                                        headers=signed(chain, "POST", "/v1/pos/orders", sale, key="nginx-order-1")
                                        ) as answer:
                    answers.append((answer.status, await answer.json()))
            assert answers[0][0] == 201 and answers[0][1]["points_earned"] == 10, answers[0]
            assert all(a == answers[0] for a in answers[1:]), answers

            # a body above nginx's limit is refused there; one the gateway refuses is its problem+json
            big = b'{"code": "' + b"1" * (2 * 1024 * 1024) + b'"}'
            async with session.post(base + "/v1/pos/scan", data=big,
                                    headers=signed(chain, "POST", "/v1/pos/scan", big)) as answer:
                assert answer.status == 413
                assert answer.headers["Content-Type"].startswith("application/problem+json")
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM if process is not processes[-1] else signal.SIGQUIT)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        log.close()
