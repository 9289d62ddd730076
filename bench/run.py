"""The HTTP bench: the gateway in-process on a throwaway database, three scenarios, one table.

Each scenario sends a fixed number of requests at a fixed concurrency after a short warm-up:

- ``GET /healthz``: no database, no credential; the baseline the other rates are divided by;
- ``POST /v1/members/{id}/adjustments`` (+1 point) with a new Idempotency-Key each time: admin-key
  look-up, key claim, then one transaction with a journal entry, a points lot, an outbox row and
  the stored answer;
- the same adjustment with one Idempotency-Key sent again and again: the replay path.

It prints figures and exits 0; reading them is the reader's job (see bench/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.test_utils import TestClient, TestServer

from gateway import db
from gateway.app import create_app
from gateway.logging import configure
from gateway.settings import Settings, normalise_database_url

SECRET = "bench-secret-0123456789"
ADJUSTMENT = orjson.dumps({"account": "points", "amount": 1, "reason": "bench"})

Send = Callable[[int], Awaitable[tuple[str, str | None]]]


@dataclass
class Figures:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)
    unexpected: str | None = None  # the first answer that was not the expected one

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def millis(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000 if ordered else 0.0


async def load(name: str, send: Send, requests: int, concurrency: int) -> Figures:
    """Send ``requests`` requests from ``concurrency`` concurrent senders; time the whole and each."""
    figures = Figures(name)
    indexes = iter(range(requests))  # shared: each index is taken by exactly one sender

    async def sender() -> None:
        for index in indexes:
            started = time.perf_counter()
            answer, unexpected = await send(index)
            figures.latencies.append(time.perf_counter() - started)
            figures.answers[answer] += 1
            if unexpected and figures.unexpected is None:
                figures.unexpected = unexpected

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    figures.seconds = time.perf_counter() - started
    return figures


class Gateway:
    """The calls the scenarios make, each answering (label, the body if unexpected)."""

    def __init__(self, client: TestClient, admin_key: str) -> None:
        self.client = client
        self.admin_key = admin_key

    def admin_headers(self, idempotency_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}", "Idempotency-Key": idempotency_key,
                "Content-Type": "application/json"}

    async def healthz(self) -> tuple[str, str | None]:
        async with self.client.get("/healthz") as response:
            return await answer(response, "200")

    async def adjust(self, member_id: int, idempotency_key: str, expect: str) -> tuple[str, str | None]:
        async with self.client.post(f"/v1/members/{member_id}/adjustments", data=ADJUSTMENT,
                                    headers=self.admin_headers(idempotency_key)) as response:
            return await answer(response, expect)

    async def new_member(self, phone: str) -> int:
        body = orjson.dumps({"phone": phone, "name": "Bench"})
        async with self.client.post("/v1/members", data=body, headers=self.admin_headers(uuid.uuid4().hex)) as response:
            if response.status != 201:
                raise SystemExit(f"bench: could not create a member: {response.status} {await response.text()}")
            return (await response.json())["id"]

    async def points(self, member_id: int) -> int:
        async with self.client.get(f"/v1/members/{member_id}",
                                   headers={"Authorization": f"Bearer {self.admin_key}"}) as response:
            return (await response.json())["balances"]["points"]


async def answer(response: aiohttp.ClientResponse, expect: str) -> tuple[str, str | None]:
    label = str(response.status) + (" replayed" if response.headers.get("Idempotent-Replayed") == "true" else "")
    body = await response.read()
    return label, None if label == expect else f"{label}: {body[:300].decode(errors='replace')}"


async def bench(database_url: str | None, requests: int, concurrency: int, warmup: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
        url = normalise_database_url(database_url) if database_url else f"sqlite://{Path(tmp) / 'bench.sqlite3'}"
        await db.migrate(url)
        client = TestClient(TestServer(create_app(Settings(database_url=url, secret=SECRET, redis_prefix="bench:"))))
        await client.start_server()  # opens the database: from here the core can be called directly too
        try:
            return await scenarios(client, url, requests, concurrency, warmup)
        finally:
            await client.close()


async def scenarios(client: TestClient, url: str, requests: int, concurrency: int, warmup: int) -> list[str]:
    from loyalty_core.chains import create_chain
    from loyalty_core.verify import verify

    run = uuid.uuid4().hex[:8]
    chain, key = await create_chain(f"Bench {run}")
    gateway = Gateway(client, key.key)
    members = [await gateway.new_member(f"139{n:08d}") for n in range(max(concurrency, 10))]

    async def healthz(index: int):
        return await gateway.healthz()

    def adjust(prefix: str):
        async def send(index: int):
            return await gateway.adjust(members[index % len(members)], f"bench-{run}-{prefix}-{index}", "201")
        return send

    replayed_key = f"bench-{run}-replayed"

    async def replay(index: int):
        return await gateway.adjust(members[0], replayed_key, "201 replayed")

    first = await gateway.adjust(members[0], replayed_key, "201")  # the answer that is replayed below
    plan: list[tuple[str, Send, Send]] = [
        ("GET /healthz (baseline)", healthz, healthz),
        ("POST adjustment, new key", adjust("new"), adjust("warm")),
        ("POST adjustment, replayed key", replay, replay),
    ]
    results = []
    for name, send, warm in plan:
        await load(name, warm, warmup, concurrency)
        results.append(await load(name, send, requests, concurrency))

    credited = sum([await gateway.points(m) for m in members])
    differences = await verify(chain.id)
    lines = header(url, requests, concurrency, warmup, len(members)) + table(results)
    notes = [f"  {f.name}: first unexpected answer {f.unexpected}" for f in results if f.unexpected]
    if first[1]:
        notes.append(f"  first call with the replayed key: {first[1]}")
    if notes:
        lines += ["", "unexpected answers:"] + notes
    lines += ["", "after the run:",
              f"  points credited to the bench members  {credited}"
              f"  (adjustments sent with a new key: {requests + warmup + 1})",
              f"  loyalty verify differences (bench chain)  {len(differences)}"]
    return lines


def header(url: str, requests: int, concurrency: int, warmup: int, members: int) -> list[str]:
    return [
        "loyalty gateway bench: figures, not pass/fail",
        f"  python {platform.python_version()} on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs,"
        f" aiohttp {aiohttp.__version__}",
        f"  database     {describe(url)}",
        "  redis        in-process stand-in (the admin paths measured here do not use Redis)",
        "  client       aiohttp TestClient in the same process and event loop as the gateway",
        f"  load         {requests} requests per scenario after {warmup} warm-up, concurrency {concurrency},"
        f" adjustments spread over {members} members",
        "",
    ]


def table(results: list[Figures]) -> list[str]:
    baseline = results[0].rate
    lines = [f"{'scenario':<31} {'req/s':>8} {'x baseline':>11} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}  answers"]
    for f in results:
        answers = ", ".join(f"{label} x{count}" for label, count in f.answers.most_common())
        lines.append(f"{f.name:<31} {f.rate:>8.1f} {f.rate / baseline if baseline else 0:>11.3f} "
                     f"{f.millis(0.50):>7.1f} {f.millis(0.95):>7.1f} {f.millis(1.0):>7.1f}  {answers}")
    return lines


def describe(url: str) -> str:
    if url.startswith("sqlite://"):
        return "SQLite, a temporary file (removed afterwards)"
    parts = urlsplit(url)
    return f"PostgreSQL {parts.hostname}:{parts.port or 5432}{parts.path} (left as it is afterwards)"


def bounded(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    top.add_argument("--database-url", help="postgres://... of an existing, throwaway database "
                                            "(default: a temporary SQLite file)")
    top.add_argument("--requests", type=bounded(1, 10_000), default=300, help="per scenario (default 300)")
    top.add_argument("--concurrency", type=bounded(1, 100), default=10, help="concurrent senders (default 10)")
    top.add_argument("--warmup", type=bounded(0, 1_000), default=20, help="unmeasured requests first (default 20)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.database_url and not normalise_database_url(args.database_url).startswith("postgres://"):
        parser().error("--database-url takes a postgres:// (or postgresql://) URL")
    configure("WARNING")
    for line in asyncio.run(bench(args.database_url, args.requests, args.concurrency, args.warmup)):
        print(line)
    return 0
