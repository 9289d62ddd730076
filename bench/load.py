"""The load generator: one process per (target, round), started by ``bench.mix``.

``python -m bench.load SETTINGS.json`` runs, against one target, a warm-up, a closed loop and an
open loop, and writes what it measured to the ``out`` path named in the settings:

1. **warm-up**: ``warmup`` seconds of the closed loop below, not measured;
2. **closed loop**: ``concurrency`` connections, each sending its next request as soon as the
   answer to the previous one is in, for ``duration`` seconds: the target's peak rate;
3. **open loop**: requests arrive at ``load_fraction`` (0.7) of that peak (of the 2xx answers),
   as a Poisson process (exponential gaps from a seeded generator), for ``open_duration``
   seconds, whether or not earlier ones have been answered. Each is sent on an idle connection,
   or a new one if none is idle (at most ``max_connections``; beyond that it waits for one). Its
   latency runs from its *scheduled* arrival, so a server that falls behind is charged for the
   queue (no coordinated omission).

The mix, drawn per request from a seeded generator: 60 % ``POST /v1/pos/scan`` (half by phone,
half by card), 25 % ``POST /v1/pos/orders`` (half of them redeeming 100 points), 10 % ``POST
/v1/pos/checkout/preview`` (the body an order would have, half redeeming), 5 % ``POST
/v1/pos/orders/{txn_id}/refunds`` (half the payable back, by amount) of the oldest order placed
in this run at this target and not refunded yet (handed over from the earlier rounds, then the
ones placed in this process). A member is drawn uniformly from all the seeded members for each
request; an order's member is named by phone or card, as a scan. Every request is signed (a new
nonce each time, the timestamp of the current second) and orders and refunds carry a new
Idempotency-Key.

The client is the cheapest correct one at hand: a hand-written HTTP/1.1 client on asyncio
protocols (keep-alive, ``Content-Length`` bodies; no ``aiohttp``), each request built as one
bytes object with an f-string and signed with ``hmac.digest``, the bodies with orjson. On the
two-core machine it shares the CPU with the servers, PostgreSQL and Redis: its own CPU time is
measured and reported per phase, as are the servers', PostgreSQL's and Redis' (from /proc).
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from .common import BASKETS, REDEEM, SUBTOTALS, card, phone, sign

SHANGHAI = timezone(timedelta(hours=8))
EXPECTED = {"scan": 200, "order": 201, "preview": 200, "refund": 201}
ENDPOINTS = tuple(EXPECTED)
TIMEOUT = 10.0          # seconds an answer may take before it counts as an error
DRAIN = TIMEOUT + 2  # seconds the open loop waits for the last answers after its last arrival
LINES_JSON = [orjson.dumps(basket).decode() for basket in BASKETS]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Closed(Exception):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, the answer read by Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.need = -1        # total bytes of the answer being read, once its head is in
        self.head = 0
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            start = buffer.find(b"Content-Length: ", 0, end)
            if start < 0:
                start = buffer.lower().find(b"content-length:", 0, end)
                if start < 0:
                    self._fail(Closed("an answer without Content-Length"))
                    return
            stop = buffer.find(b"\r\n", start, end + 2)
            self.head = end + 4
            self.need = self.head + int(buffer[start + 15:stop].strip() or b"0")
        if len(buffer) >= self.need:
            status = int(buffer[9:12])
            body = bytes(buffer[self.head:self.need])
            if buffer.find(b"Connection: close", 0, self.head) >= 0:
                self.closed = True
            del buffer[:self.need]
            self.need = -1
            if self.timer is not None:
                self.timer.cancel()
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((status, body))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(Closed(f"connection lost: {exc}"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def _timeout(self) -> None:
        self._fail(TimeoutError(f"no answer within {TIMEOUT} s"))

    def send(self, data: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.timer = loop.call_later(TIMEOUT, self._timeout)
        self.transport.write(data)
        return self.waiter


class Phase:
    """What one phase measured."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies = {e: [] for e in ENDPOINTS}       # seconds, every answer (good or not)
        self.statuses = {e: Counter() for e in ENDPOINTS}
        self.samples: dict[str, str] = {}                  # "endpoint status" -> the first such body
        self.seconds = 0.0
        self.late = 0            # open loop: arrivals that found no idle connection and waited for one
        self.connections = 0
        self.cpu: dict = {}

    def record(self, endpoint: str, status: int, body: bytes, seconds: float) -> None:
        self.latencies[endpoint].append(seconds)
        self.statuses[endpoint][status] += 1
        if status != EXPECTED[endpoint]:
            self.samples.setdefault(f"{endpoint} {status}", body[:400].decode(errors="replace"))

    def good(self, endpoint: str | None = None) -> int:
        endpoints = ENDPOINTS if endpoint is None else (endpoint,)
        return sum(self.statuses[e][EXPECTED[e]] for e in endpoints)

    def summary(self) -> dict:
        out = {"seconds": round(self.seconds, 3), "late": self.late, "connections": self.connections,
               "cpu": self.cpu, "endpoints": {}, "error_samples": self.samples}
        total = sum(len(v) for v in self.latencies.values())
        out["requests"] = total
        out["good"] = self.good()
        out["errors"] = total - out["good"]
        out["rate"] = round(out["good"] / self.seconds, 2) if self.seconds else 0.0
        for endpoint in ENDPOINTS:
            latencies = sorted(self.latencies[endpoint])
            good = self.good(endpoint)
            out["endpoints"][endpoint] = {
                "requests": len(latencies), "good": good, "errors": len(latencies) - good,
                "statuses": {str(k): v for k, v in sorted(self.statuses[endpoint].items())},
                "rate": round(good / self.seconds, 2) if self.seconds else 0.0,
                **{f"p{q}": round(quantile(latencies, q / 100) * 1000, 2) for q in (50, 90, 95, 99)},
                "p99.9": round(quantile(latencies, 0.999) * 1000, 2),
                "max": round(latencies[-1] * 1000, 2) if latencies else 0.0,
                "mean": round(sum(latencies) / len(latencies) * 1000, 2) if latencies else 0.0,
            }
        return out


def quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


class Load:
    def __init__(self, settings: dict) -> None:
        self.s = settings
        self.host, self.port = settings["host"], settings["port"]
        self.terminal = settings["terminal_id"]
        self.secret = settings["terminal_secret"].encode()
        self.members = settings["members"]
        self.tag = settings["tag"]                  # unique per run, target and round
        self.rng = random.Random(settings["seed"])
        self.refundable = deque(tuple(item) for item in settings.get("refundable", []))
        self.created: list[tuple[str, int]] = []      # (txn_id, payable) of every 201 order
        self.refunded: list[str] = []
        self.points = Counter()                      # what the 201 answers said moved
        self.counter = 0
        self.fallbacks = 0                          # refunds that found no order to refund (sent as orders)
        self.second = -1
        self.timestamp = ""
        self.occurred_at = ""
        self.host_header = f"Host: {self.host}:{self.port}\r\n"
        self.idle: list[Connection] = []
        self.opened = 0

    # --- requests ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second, self.timestamp = second, str(second)
            self.occurred_at = datetime.fromtimestamp(second, SHANGHAI).isoformat()

    def _code(self) -> str:
        index = self.rng.randrange(self.members)
        return phone(index) if self.rng.random() < 0.5 else card(index)

    def build(self) -> tuple[str, bytes, object]:
        """The next request of the mix: (endpoint, its bytes, what to remember about it)."""
        self._tick()
        self.counter += 1
        pick = self.rng.random()
        if pick >= 0.95:
            if self.refundable:
                txn_id, payable = self.refundable.popleft()
                body = b'{"refund_id":"R1","amount":%d}' % (payable // 2)
                return "refund", self._request(f"/v1/pos/orders/{txn_id}/refunds", body, f"k{txn_id}R1"), txn_id
            self.fallbacks += 1
            pick = 0.6
        if pick < 0.6:
            return "scan", self._request("/v1/pos/scan", b'{"code":"%s"}' % self._code().encode()), None
        basket = self.rng.randrange(len(BASKETS))
        redeem = REDEEM if self.rng.random() < 0.5 else 0
        payable = SUBTOTALS[basket] - redeem
        txn_id = f"L{self.tag}-{self.counter}"
        body = (f'{{"txn_id":"{txn_id}","member_code":"{self._code()}","occurred_at":"{self.occurred_at}",'
                f'"lines":{LINES_JSON[basket]},' + (f'"redeem_points":{redeem},' if redeem else "")
                + f'"payments":[{{"method":"wechat_pay","amount":{payable}}}]}}').encode()
        if pick < 0.85:
            return "order", self._request("/v1/pos/orders", body, f"k{txn_id}"), (txn_id, payable)
        return "preview", self._request("/v1/pos/checkout/preview", body), None

    def _request(self, path: str, body: bytes, key: str | None = None) -> bytes:
        nonce = f"{self.tag}n{self.counter:012x}"
        signature = sign(self.secret, "POST", path, self.timestamp, nonce, body)
        keyed = f"Idempotency-Key: {key}\r\n" if key else ""
        return (f"POST {path} HTTP/1.1\r\n{self.host_header}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Terminal-Id: {self.terminal}\r\nX-Timestamp: {self.timestamp}\r\n"
                f"X-Nonce: {nonce}\r\nX-Signature: {signature}\r\n{keyed}\r\n").encode() + body

    def answered(self, endpoint: str, status: int, body: bytes, memo) -> None:
        if endpoint == "order" and status == 201:
            self.created.append(memo)
            self.refundable.append(memo)
            answer = orjson.loads(body)
            self.points["earned"] += answer.get("points_earned", 0)
            self.points["redeemed"] += answer.get("points_redeemed", 0)
        elif endpoint == "refund" and status == 201:
            self.refunded.append(memo)
            answer = orjson.loads(body)
            self.points["reversed"] += answer.get("points_reversed", 0)
            self.points["returned"] += answer.get("points_returned", 0)

    # --- connections -----------------------------------------------------------------------------
    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(Connection, self.host, self.port)
        self.opened += 1
        return connection

    async def exchange(self, connection: Connection, endpoint: str, data: bytes) -> tuple[int, bytes]:
        try:
            return await connection.send(data)
        except (Closed, TimeoutError, OSError) as error:
            return 599, f"{type(error).__name__}: {error}".encode()

    # --- the loops ---------------------------------------------------------------------------------
    async def closed(self, phase: Phase | None, seconds: float, concurrency: int) -> None:
        """``concurrency`` senders, each waiting for its answer before its next request."""
        while len(self.idle) < concurrency:
            self.idle.append(await self.connect())
        connections = [self.idle.pop() for _ in range(concurrency)]
        deadline = time.perf_counter() + seconds
        clock = time.perf_counter

        async def sender(connection: Connection) -> Connection:
            while clock() < deadline:
                if connection.closed:
                    connection = await self.connect()
                endpoint, data, memo = self.build()
                started = clock()
                status, body = await self.exchange(connection, endpoint, data)
                if phase is not None:
                    phase.record(endpoint, status, body, clock() - started)
                self.answered(endpoint, status, body, memo)
            return connection

        started = clock()
        self.idle = list(await asyncio.gather(*(sender(c) for c in connections)))
        if phase is not None:
            phase.seconds = clock() - started
            phase.connections = concurrency

    async def open(self, phase: Phase, seconds: float, rate: float, most: int) -> None:
        """Poisson arrivals at ``rate`` per second for ``seconds``; latency from the scheduled time."""
        loop = asyncio.get_running_loop()
        clock = time.perf_counter
        arrivals = random.Random(self.s["seed"] + 1)
        pending: set[asyncio.Task] = set()
        waiters: deque[asyncio.Future] = deque()
        live = len(self.idle)  # connections open now (idle or busy)
        phase.connections = live

        async def acquire() -> Connection:
            nonlocal live
            if self.idle:
                return self.idle.pop()
            phase.late += 1
            if live < most:
                live += 1
                phase.connections = max(phase.connections, live)
                try:
                    return await self.connect()
                except OSError:
                    live -= 1
                    raise
            waiter = loop.create_future()
            waiters.append(waiter)
            return await waiter

        async def replace(waiter: asyncio.Future) -> None:
            try:
                waiter.set_result(await self.connect())
            except OSError as error:
                waiter.set_exception(error)

        def release(connection: Connection) -> None:
            nonlocal live
            if connection.closed:
                if waiters:  # a new connection for the one who waits longest
                    loop.create_task(replace(waiters.popleft()))
                else:
                    live -= 1
            elif waiters:
                waiters.popleft().set_result(connection)
            else:
                self.idle.append(connection)

        async def one(scheduled: float) -> None:
            endpoint, data, memo = self.build()
            try:
                connection = await acquire()
            except OSError as error:
                phase.record(endpoint, 599, f"connect: {error}".encode(), clock() - scheduled)
                return
            status, body = await self.exchange(connection, endpoint, data)
            phase.record(endpoint, status, body, clock() - scheduled)
            self.answered(endpoint, status, body, memo)
            release(connection)

        started = clock()
        next_at = started
        end = started + seconds
        while True:
            next_at += arrivals.expovariate(rate)
            if next_at >= end:
                break
            delay = next_at - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(one(next_at))
            pending.add(task)
            task.add_done_callback(pending.discard)
        phase.seconds = seconds
        if pending:
            await asyncio.wait(pending, timeout=DRAIN)
        for task in list(pending):  # still unanswered after the drain: counted as errors by their timeouts
            task.cancel()

    async def run(self) -> dict:
        s = self.s
        cpu = CpuWatch(s.get("watch", {}))
        await self.closed(None, s["warmup"], s["concurrency"])
        closed = Phase("closed")
        cpu.start()
        await self.closed(closed, s["duration"], s["concurrency"])
        closed.cpu = cpu.stop(closed.seconds, closed.good())
        rate = max(1.0, closed.good() / closed.seconds * s["load_fraction"])
        await asyncio.sleep(0.5)  # let the closed loop's last answers and writes settle
        opened = Phase("open")
        cpu.start()
        await self.open(opened, s["open_duration"], rate, s["max_connections"])
        opened.cpu = cpu.stop(opened.seconds, opened.good())
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
        return {"closed": closed.summary(), "open": {**opened.summary(), "target_rate": round(rate, 2)},
                "created": self.created, "refunded": self.refunded, "refund_fallbacks": self.fallbacks,
                "points": dict(self.points), "connections_opened": self.opened}


class CpuWatch:
    """CPU seconds spent during a phase by groups of processes (Linux /proc), and by the machine."""

    def __init__(self, watch: dict) -> None:
        self.groups = {name: [int(p) for p in pids] for name, pids in watch.items()}
        self.before: dict = {}

    @staticmethod
    def _process_seconds(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            return 0.0

    @staticmethod
    def _named(name: str) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "comm").read_text().strip() == name:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    def _sample(self) -> dict:
        try:
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            busy, total = sum(values) - values[3] - values[4], sum(values)
        except (OSError, ValueError, IndexError):
            busy = total = 0
        groups = {name: sum(self._process_seconds(p) for p in pids) for name, pids in self.groups.items()}
        groups["postgres"] = {p: self._process_seconds(p) for p in self._named("postgres")}
        groups["redis"] = sum(self._process_seconds(p) for p in self._named("redis-server"))
        groups["load generator"] = time.process_time()
        return {"busy": busy / CLOCK_TICKS, "total": total / CLOCK_TICKS, "groups": groups}

    def start(self) -> None:
        self.before = self._sample()

    def stop(self, seconds: float, good: int) -> dict:
        after, before = self._sample(), self.before
        out = {"machine busy %": round(100 * (after["busy"] - before["busy"]) / max(1e-9, after["total"] - before["total"]), 1)}
        for name, value in after["groups"].items():
            if name == "postgres":  # backends that lived through the phase, and the ones that started in it
                spent = sum(v - before["groups"]["postgres"].get(pid, 0.0) for pid, v in value.items())
            else:
                spent = value - before["groups"][name]
            out[f"{name} cpu s"] = round(spent, 2)
            out[f"{name} cpu ms/request"] = round(1000 * spent / good, 3) if good else None
        return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = orjson.loads(Path(argv[0]).read_bytes())
    result = asyncio.run(Load(settings).run())
    Path(settings["out"]).write_bytes(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
