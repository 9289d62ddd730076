"""The in-process bench: the gateway in-process on a throwaway database, seven scenarios, one table.

``python -m bench.inprocess`` or ``make bench-inprocess``.

Each scenario sends a fixed number of requests at a fixed concurrency after a short warm-up:

- ``GET /healthz``: no database, no credential; the baseline the other rates are divided by;
- ``POST /v1/members/{id}/adjustments`` (+1 point) with a new Idempotency-Key each time: admin-key
  look-up, key claim, then one transaction with a journal entry, a points lot, an outbox row and
  the stored answer;
- the same adjustment with one Idempotency-Key sent again and again: the replay path;
- ``POST /v1/pos/scan`` with a member's phone, signed by a terminal (new X-Nonce each time): the
  terminal look-up, secret decryption, HMAC check, nonce record in the Redis stand-in, program,
  member by phone hash, tier standing and balances;
- ``POST /v1/pos/orders``, a new ``txn_id`` and Idempotency-Key each time, two lines (coffee, and
  fresh at x2 under the program set first), paid in full, the member named by phone: signature,
  nonce, key claim, duplicate look-up, pricing, then one transaction with the order, journal
  entry, points lot, tier check, outbox rows and the stored answer;
- the same order redeeming 100 points, for members credited with enough points beforehand: the
  balance check and the lot draw-down on top of the above;
- each order of the new-``txn_id`` scenario sent again under a new Idempotency-Key: the
  business-key duplicate path (200, ``"duplicate": true``, nothing applied).

Afterwards it checks the members' points against what the answers said, counts the stored orders
and runs ``verify`` on the bench chain. It prints figures and exits 0; reading them is the
reader's job (see bench/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import secrets
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.test_utils import TestClient, TestServer

from gateway import db
from gateway.app import create_app
from gateway.demo import DEMO_PROGRAM
from gateway.auth import signature
from gateway.logging import configure
from gateway.settings import Settings, normalise_database_url

SECRET = "bench-secret-0123456789"
ADJUSTMENT = orjson.dumps({"account": "points", "amount": 1, "reason": "bench"})

# The demo's program (API.md's example: 1 point per 100 fen, fresh x2, tobacco excluded, two
# campaigns, 100 points = 100 fen, silver and gold by growth), welcome points off so that the
# points cross-check adds up from the answers alone.
PROGRAM = {**DEMO_PROGRAM, "behaviors": {"register": {"points": 0}}}
LINES = [{"sku": "LATTE", "name": "Latte", "category": "coffee", "qty": 2, "unit_price": 900, "amount": 1800},
         {"sku": "APPLE", "name": "Apple", "category": "fresh", "qty": 1, "unit_price": 1200, "amount": 1200}]
SUBTOTAL = 3000        # fen; earns 18 + 2 x 12 = 42 points before tier and campaign factors, 30 growth
REDEEM = 100           # points, = 100 fen off under PROGRAM's redeem rule
# An order adds up to 30 growth and gold (2 % off, from 5000 growth) would change the payable the
# bench pays: members are added so that none gets more than this many orders in one scenario
# (warm-up included).
ORDERS_PER_MEMBER = 140
SHANGHAI = timezone(timedelta(hours=8))
STORE, TERMINAL = "B01", "POS1"

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
        self.terminal_id = ""
        self.terminal_secret = ""
        self.orders_created = 0   # 201 order answers, and the points they say were earned and redeemed
        self.points_earned = 0
        self.points_redeemed = 0

    def admin_headers(self, idempotency_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}", "Idempotency-Key": idempotency_key,
                "Content-Type": "application/json"}

    def pos_headers(self, path: str, body: bytes, idempotency_key: str | None = None) -> dict[str, str]:
        """Signed as a till signs (docs/pos-signing.md): its clock now, a nonce never used before."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {"X-Terminal-Id": self.terminal_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": signature(self.terminal_secret, "POST", path, timestamp, nonce, body),
                   "Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def healthz(self) -> tuple[str, str | None]:
        async with self.client.get("/healthz") as response:
            return await answer(response, "200")

    async def adjust(self, member_id: int, idempotency_key: str, expect: str) -> tuple[str, str | None]:
        async with self.client.post(f"/v1/members/{member_id}/adjustments", data=ADJUSTMENT,
                                    headers=self.admin_headers(idempotency_key)) as response:
            return await answer(response, expect)

    async def scan(self, phone: str) -> tuple[str, str | None]:
        body = orjson.dumps({"code": phone})
        headers = self.pos_headers("/v1/pos/scan", body)
        async with self.client.post("/v1/pos/scan", data=body, headers=headers) as response:
            return await answer(response, "200")

    async def order(self, body: bytes, expect: str) -> tuple[str, str | None]:
        """``POST /v1/pos/orders`` under a new Idempotency-Key; "200 duplicate" for a known txn_id."""
        headers = self.pos_headers("/v1/pos/orders", body, uuid.uuid4().hex)
        async with self.client.post("/v1/pos/orders", data=body, headers=headers) as response:
            raw, label = await response.read(), status_label(response)
            if response.status in (200, 201):
                result = orjson.loads(raw)
                if result.get("duplicate"):
                    label += " duplicate"
                if label == "201":
                    self.orders_created += 1
                    self.points_earned += result["points_earned"]
                    self.points_redeemed += result["points_redeemed"]
            return label, None if label == expect else f"{label}: {raw[:300].decode(errors='replace')}"

    async def setup(self, path: str, body: dict, method: str = "POST") -> dict:
        async with self.client.request(method, path, data=orjson.dumps(body),
                                       headers=self.admin_headers(uuid.uuid4().hex)) as response:
            if response.status not in (200, 201):
                raise SystemExit(f"bench: {method} {path} answered {response.status} {await response.text()}")
            return await response.json()

    async def new_member(self, phone: str) -> int:
        return (await self.setup("/v1/members", {"phone": phone, "name": "Bench"}))["id"]

    async def points(self, member_id: int) -> int:
        async with self.client.get(f"/v1/members/{member_id}",
                                   headers={"Authorization": f"Bearer {self.admin_key}"}) as response:
            return (await response.json())["balances"]["points"]


def status_label(response: aiohttp.ClientResponse) -> str:
    return str(response.status) + (" replayed" if response.headers.get("Idempotent-Replayed") == "true" else "")


async def answer(response: aiohttp.ClientResponse, expect: str) -> tuple[str, str | None]:
    label = status_label(response)
    body = await response.read()
    return label, None if label == expect else f"{label}: {body[:300].decode(errors='replace')}"


def order_body(txn_id: str, phone: str, redeem: int = 0) -> bytes:
    """An order as a till sends it: occurred now (Shanghai), paid in full by WeChat Pay."""
    body = {"txn_id": txn_id, "member_code": phone,
            "occurred_at": datetime.now(SHANGHAI).isoformat(timespec="seconds"), "lines": LINES,
            "payments": [{"method": "wechat_pay", "amount": SUBTOTAL - redeem}]}
    if redeem:
        body["redeem_points"] = redeem
    return orjson.dumps(body)


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
    from loyalty_core.models import Order
    from loyalty_core.verify import verify

    started = time.perf_counter()
    run = uuid.uuid4().hex[:8]
    chain, key = await create_chain(f"Bench {run}")
    gateway = Gateway(client, key.key)
    await gateway.setup("/v1/program", PROGRAM, method="PUT")
    await gateway.setup("/v1/stores", {"code": STORE, "name": f"Bench {run} {STORE}"})
    terminal = await gateway.setup(f"/v1/stores/{STORE}/terminals", {"code": TERMINAL})
    gateway.terminal_id, gateway.terminal_secret = terminal["terminal_id"], terminal["secret"]

    count = max(concurrency, 10, math.ceil((requests + warmup) / ORDERS_PER_MEMBER))
    phones = [f"139{n:08d}" for n in range(count)]          # adjustments, scans, orders, duplicates
    redeemer_phones = [f"138{n:08d}" for n in range(count)]  # redemptions only
    members = [await gateway.new_member(phone) for phone in phones]
    redeemers = [await gateway.new_member(phone) for phone in redeemer_phones]
    # Each redeemer is credited, in one lot, 100 points per redemption it will be sent.
    credit = REDEEM * (math.ceil(warmup / count) + math.ceil(requests / count))
    for member_id in redeemers:
        await gateway.setup(f"/v1/members/{member_id}/adjustments",
                            {"account": "points", "amount": credit, "reason": "bench credit"})

    async def healthz(index: int):
        return await gateway.healthz()

    def adjust(prefix: str):
        async def send(index: int):
            return await gateway.adjust(members[index % count], f"bench-{run}-{prefix}-{index}", "201")
        return send

    replayed_key = f"bench-{run}-replayed"

    async def replay(index: int):
        return await gateway.adjust(members[0], replayed_key, "201 replayed")

    async def scan(index: int):
        return await gateway.scan(phones[index % count])

    sent: dict[str, bytes] = {}  # txn_id -> the body sent, for the duplicates

    def order(prefix: str):
        async def send(index: int):
            txn_id = f"B-{run}-{prefix}-{index}"
            sent[txn_id] = order_body(txn_id, phones[index % count])
            return await gateway.order(sent[txn_id], "201")
        return send

    def redeem(prefix: str):
        async def send(index: int):
            body = order_body(f"B-{run}-{prefix}-{index}", redeemer_phones[index % count], REDEEM)
            return await gateway.order(body, "201")
        return send

    def duplicate(prefix: str):
        async def send(index: int):
            return await gateway.order(sent[f"B-{run}-{prefix}-{index}"], "200 duplicate")
        return send

    first = await gateway.adjust(members[0], replayed_key, "201")  # the answer that is replayed below
    plan: list[tuple[str, Send, Send]] = [
        ("GET /healthz (baseline)", healthz, healthz),
        ("POST adjustment, new key", adjust("new"), adjust("warm")),
        ("POST adjustment, replayed key", replay, replay),
        ("POST pos/scan, phone", scan, scan),
        ("POST pos/orders, new txn_id", order("o"), order("ow")),
        ("POST pos/orders, redeem 100", redeem("r"), redeem("rw")),
        ("POST pos/orders, same txn_id", duplicate("o"), duplicate("ow")),  # the orders sent just above
    ]
    results = []
    for name, send, warm in plan:
        await load(name, warm, warmup, concurrency)
        results.append(await load(name, send, requests, concurrency))

    held = sum([await gateway.points(m) for m in members + redeemers])
    adjusted = requests + warmup + 1
    expected = adjusted + credit * count + gateway.points_earned - gateway.points_redeemed
    stored = await Order.filter(chain_id=chain.id).count()
    differences = await verify(chain.id)
    lines = header(url, requests, concurrency, warmup, count) + table(results)
    notes = [f"  {f.name}: first unexpected answer {f.unexpected}" for f in results if f.unexpected]
    if first[1]:
        notes.append(f"  first call with the replayed key: {first[1]}")
    if notes:
        lines += ["", "unexpected answers:"] + notes
    lines += ["", "after the run:",
              f"  points held by the bench members           {held}",
              f"  expected from the answers                  {expected}  (= {adjusted} adjusted with a new key"
              f" + {credit * count} credited + {gateway.points_earned} earned - {gateway.points_redeemed} redeemed"
              f" in 201 order answers)",
              f"  orders stored                              {stored}  (201 order answers: {gateway.orders_created})",
              f"  loyalty verify differences (bench chain)   {len(differences)}",
              f"  wall time, set-up included                 {time.perf_counter() - started:.1f} s"]
    return lines


def header(url: str, requests: int, concurrency: int, warmup: int, members: int) -> list[str]:
    return [
        "loyalty gateway bench: figures, not pass/fail",
        f"  python {platform.python_version()} on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs,"
        f" aiohttp {aiohttp.__version__}",
        f"  database     {describe(url)}",
        "  redis        in-process stand-in (fakeredis): the POS nonces are recorded there",
        "  client       aiohttp TestClient in the same process and event loop as the gateway; it signs POS calls",
        f"  load         {requests} requests per scenario after {warmup} warm-up, concurrency {concurrency};"
        f" {members} members for adjustments, scans and orders, {members} others for redemptions",
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
    top = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    import sys

    sys.exit(main())
