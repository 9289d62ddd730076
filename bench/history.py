"""History bench: a scan and the member view with 1,000 and with 1,000,000 journal entries in the chain.

    .venv/bin/python -m bench.history            # make bench-history
    .venv/bin/python -m bench.history --large 200000 --large-own 2000 --rounds 2

The speed issue's check that these costs do not grow with history ("scan and the member view take
the same time with 1,000 and 1,000,000 journal entries in the chain, within 20 %"). Two throwaway
PostgreSQL databases (``loyalty_bench_history_<run>_a`` and ``_b`` beside ``--postgres-url``,
dropped at the end, also on an error or Ctrl-C) hold the same chain: one program (tiers by growth
over 12 months), store ``B01``, terminal ``POS1``, ``--members`` members written in bulk and one
member registered through the core. ``_b`` is a copy of ``_a`` made before any history, so both
have the same members, keys and ids. Then each gets its history (``bench/bulk.py``: sales written
with ``INSERT … SELECT generate_series`` in the shape the core writes them):

- state a: ``--small`` (1,000) journal entries in the chain: the ``--measured`` (10) members
  ``--small-own`` (10) each, the rest spread over the other members;
- state b: ``--large`` (1,000,000): the measured members ``--large-own`` (10,000) each over the
  last 720 days, the rest spread over the other members;

in both, one of the entries is a sale placed through ``orders.place_order`` itself for the member
registered through the core, which the shape check compares with the bulk rows. Each state is
checked (foreign keys, the shape check, ``loyalty verify``) and vacuumed and analysed (what
autovacuum does to a database that grew over years).

Then the real gateway, ``loyalty serve --workers 1`` per database (with Redis under a key prefix of
the run's own), answers sequential requests from one keep-alive connection (no concurrency: each
latency is one request's), for the measured members in turn: ``POST /v1/pos/scan`` by phone,
signed with a new nonce; ``GET /v1/members/{id}`` (balances, tier and its progress, identities) with
the owner key; and, for information, ``GET /v1/members/{id}/ledger?limit=N`` (the first page,
N = ``--small-own`` up to 50, so that it holds as many entries in both states).
In each of ``--rounds`` (3) rounds, after a warm-up of each state, the ``--requests`` (300) of each
endpoint go to the two states interleaved: one request to one, the same request to the other, the
order turning at each request and each round, so that a burst of other work on the shared machine
falls on both states alike (``--blocks``: all of one state's requests, then the other's, the order
turning each round). It prints median and p95 per state, the ratio b/a, PASS when the medians are within
``--tolerance`` (20 %) of each other and MISS otherwise; then the statements each request sends
to PostgreSQL in each state, counted in-process (``tests/roundtrips.py``) with the caches warm:
the same count in both states shows that no statement grows with history. It writes
``bench/results/<timestamp>-history.json`` and always exits 0 (a bench prints figures).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

from . import bulk, cli, common
from .common import bounded, say
from .load import Closed, Connection, quantile
from .mix import LOYALTY, Server, free_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
STATES = ("a", "b")
ENDPOINTS = ("scan", "member", "ledger")
JUDGED = ("scan", "member")  # the two; the ledger page is for information
LABELS = {"scan": "POST /v1/pos/scan (phone)", "member": "GET /v1/members/{id}",
          "ledger": "GET /v1/members/{id}/ledger?limit"}
SPAN_DAYS = 720


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = datetime.now(timezone.utc).strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
        self.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.names = {state: f"loyalty_bench_history_{self.run_id}_{state}" for state in STATES}
        self.urls = {state: bulk.database_url(args.postgres_url, name) for state, name in self.names.items()}
        self.created: list[str] = []
        self.redis_prefix = f"loyalty-bench-history:{self.run_id}:"
        self.tmp = Path(tempfile.mkdtemp(prefix="loyalty-bench-history-"))
        self.servers: dict[str, Server] = {}
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.counter = 0
        self.page = min(50, args.small_own)  # the ledger page: as many entries in both states

    # --- set-up --------------------------------------------------------------------------------------
    async def seed(self) -> dict:
        args = self.args
        now = datetime.now(timezone.utc)
        self.now = now
        began = time.monotonic()
        url = await bulk.create_database(args.postgres_url, self.names["a"])
        self.created.append(self.names["a"])
        self.chain = await bulk.new_chain(url, "History bench", common.program())
        joined = now - timedelta(days=SPAN_DAYS + 10)
        conn = await bulk.connect(url)
        try:
            self.member_ids = await bulk.add_members(conn, self.chain, range(args.members), joined)
        finally:
            await conn.close()
        self.reference = await bulk.register_through_core(url, self.chain, args.members, joined)
        self.measured = list(zip(self.member_ids[:args.measured], range(args.measured)))
        say(f"chain {self.chain.chain_id}: {args.members:,} members written in bulk, member {self.reference} registered "
            f"through the core; measured: members {self.measured[0][0]}-{self.measured[-1][0]}")
        await self._copy(self.names["a"], self.names["b"])
        self.created.append(self.names["b"])
        self.timings["chain and members"] = round(time.monotonic() - began, 1)
        states = {}
        for state, total, own in (("a", args.small, args.small_own), ("b", args.large, args.large_own)):
            states[state] = await self.history(state, total, own)
        return states

    async def _copy(self, source: str, target: str) -> None:
        for attempt in range(20):  # an autovacuum worker on the source makes CREATE … TEMPLATE wait
            try:
                await bulk.create_database(self.args.postgres_url, target, template=source)
                return
            except Exception as error:  # asyncpg.ObjectInUseError
                if "being accessed" not in str(error) or attempt == 19:
                    raise
                await asyncio.sleep(0.5)

    def spans(self, total: int, own: int) -> list[bulk.Span]:
        """The measured members ``own`` entries each over the last 720 days; the rest (less the
        reference sale) spread over the other members, each from a day of its own up to 2 h ago."""
        last = self.now - timedelta(hours=2)
        measured = [m for m, _ in self.measured]
        rest = total - own * len(measured) - 1
        if rest < 0:
            raise SystemExit(f"bench: {total} entries cannot give {len(measured)} members {own} each")
        spans = [bulk.Span(m, own, self.now - timedelta(days=SPAN_DAYS), last) for m in measured]
        for member_id, entries in bulk.spread(self.member_ids[len(measured):], rest):
            first = self.now - timedelta(days=bulk.jitter(member_id, 30, SPAN_DAYS))
            spans.append(bulk.Span(member_id, entries, first, last))
        return spans

    async def history(self, state: str, total: int, own: int) -> dict:
        url, chain = self.urls[state], self.chain
        say(f"state {state}: writing {total:,} journal entries ({own:,} for each measured member) ...")
        began = time.monotonic()
        conn = await bulk.connect(url)
        try:
            loaded = await bulk.add_sales(conn, chain, self.spans(total, own))
            tiers = await bulk.settle_tiers(conn, chain, self.now)
        finally:
            await conn.close()
        txn = f"REF-{state}"
        await bulk.reference_sale(url, chain, self.reference, txn, self.now - timedelta(minutes=30))
        conn = await bulk.connect(url)
        try:
            shape = await bulk.shape_check(conn, chain, txn)
            vacuum_began = time.monotonic()
            await bulk.vacuum_analyze(conn)
            vacuum = round(time.monotonic() - vacuum_began, 1)
            counts = await bulk.table_counts(conn, chain.chain_id)
            ids = [m for m, _ in self.measured]
            own_rows = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM journal_entries WHERE member_id = ANY($1::bigint[])) AS entries, "
                "(SELECT count(*) FROM points_lots WHERE member_id = ANY($1::bigint[]) AND remaining > 0) AS lots, "
                "(SELECT count(*) FROM member_figures WHERE member_id = ANY($1::bigint[])) AS figures", ids)
        finally:
            await conn.close()
        seeded = round(time.monotonic() - began, 1)
        checked = await bulk.verify(url)
        size = await bulk.database_size(self.args.postgres_url, self.names[state])
        n = len(self.measured)
        say(f"state {state}: {counts['journal_entries']:,} entries, {counts['postings']:,} postings, "
            f"{counts['points_lots']:,} lots, {counts['orders']:,} orders in {seeded:.0f} s "
            f"(sales {loaded['seconds']:.0f} s, vacuum {vacuum:.0f} s); database {size / 1e6:,.0f} MB; "
            f"each measured member: {own_rows['entries'] // n:,} entries, {own_rows['lots'] // n:,} open lots, "
            f"{own_rows['figures'] // n} figure rows; tiers {tiers}")
        say(f"state {state}: shape check: {'0 differences' if not shape else '; '.join(shape)}; "
            f"loyalty verify: {checked['verdict']} ({checked['seconds']} s)")
        return {"database": self.names[state], "journal_entries_asked": total, "own_entries_asked": own,
                "counts": counts, "measured_member_each": {k: int(v) // n for k, v in own_rows.items()},
                "tiers": tiers, "load": loaded, "vacuum_seconds": vacuum, "seconds": seeded, "database_bytes": size,
                "shape_check": shape, "verify": checked}

    def env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in (
            "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "LOYALTY_SECRET", "LOG_LEVEL")}
        env.update(PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", **values)
        return env

    async def start_servers(self) -> None:
        for state in STATES:
            port = free_port()
            self.servers[state] = Server(
                f"gateway {state}", [LOYALTY, "serve", "--workers", "1", "--host", "127.0.0.1", "--port", str(port)],
                self.env(DATABASE_URL=self.urls[state], REDIS_URL=self.args.redis_url,
                         REDIS_PREFIX=f"{self.redis_prefix}{state}:", LOYALTY_SECRET=common.SECRET),
                port, 1, self.tmp / f"gateway-{state}.log")
            self.servers[state].start()
        for state in STATES:
            await self.servers[state].ready()
            say(f"gateway {state}: loyalty serve --workers 1 on port {self.servers[state].port}, "
                f"pid {self.servers[state].pids[0]}")

    # --- requests --------------------------------------------------------------------------------------
    def request(self, endpoint: str, member_id: int, index: int, host: str) -> bytes:
        self.counter += 1
        if endpoint == "scan":
            body = b'{"code":"%s"}' % common.phone(index).encode()
            timestamp = str(int(time.time()))
            nonce = f"h{self.run_id}{self.counter:012x}"
            signature = common.sign(self.chain.terminal_secret.encode(), "POST", "/v1/pos/scan", timestamp, nonce,
                                    body)
            return (f"POST /v1/pos/scan HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nX-Terminal-Id: {self.chain.terminal_id}\r\n"
                    f"X-Timestamp: {timestamp}\r\nX-Nonce: {nonce}\r\nX-Signature: {signature}\r\n\r\n").encode() + body
        path = f"/v1/members/{member_id}" + (f"/ledger?limit={self.page}" if endpoint == "ledger" else "")
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {self.chain.admin_key}\r\n\r\n".encode()

    async def send(self, state: str, connection: Connection, endpoint: str, k: int, figures: dict,
                   measured: bool = True) -> None:
        member_id, index = self.measured[k % len(self.measured)]
        data = self.request(endpoint, member_id, index, f"127.0.0.1:{self.servers[state].port}")
        began = time.perf_counter()
        status, body = await connection.send(data)
        seconds = time.perf_counter() - began
        if not measured:
            return
        figures["latencies_ms"][endpoint].append(round(seconds * 1000, 3))
        figures["statuses"][f"{endpoint} {status}"] = figures["statuses"].get(f"{endpoint} {status}", 0) + 1
        samples = figures["samples"]
        if status != 200:
            samples.setdefault(f"{endpoint} {status}", body[:300].decode(errors="replace"))
        elif endpoint not in samples:
            answer = json.loads(body)
            samples[endpoint] = answer if endpoint != "ledger" else {
                "items": len(answer["items"]), "first": answer["items"][0] if answer["items"] else None}

    async def one_round(self, number: int, connections: dict[str, Connection]) -> dict:
        """A warm-up of each state, then ``--requests`` of each endpoint per state: interleaved by
        default (a request to one state, the same to the other, the order turning each time, so that
        whatever else the machine does falls on both alike), or with ``--blocks`` all of one state's,
        then all of the other's (the order turning each round)."""
        args = self.args
        order = STATES if number % 2 else tuple(reversed(STATES))
        out = {state: {"latencies_ms": {e: [] for e in ENDPOINTS}, "statuses": {}, "samples": {}} for state in STATES}
        for state in order:
            for k in range(args.warmup):
                for endpoint in ENDPOINTS:
                    await self.send(state, connections[state], endpoint, k, out[state], measured=False)
        if args.blocks:
            for state in order:
                for endpoint in ENDPOINTS:
                    for k in range(args.requests):
                        await self.send(state, connections[state], endpoint, k, out[state])
        else:
            for endpoint in ENDPOINTS:
                for k in range(args.requests):
                    for state in (order if k % 2 == 0 else tuple(reversed(order))):
                        await self.send(state, connections[state], endpoint, k, out[state])
        return {"order": list(order), "interleaved": not args.blocks, **out}

    async def rounds(self) -> list[dict]:
        loop = asyncio.get_running_loop()
        connections = {}
        for state in STATES:
            _, connections[state] = await loop.create_connection(Connection, "127.0.0.1", self.servers[state].port)
        out = []
        try:
            for number in range(1, self.args.rounds + 1):
                figures = await self.one_round(number, connections)
                for state in figures["order"]:
                    statuses = figures[state]["statuses"]
                    say(f"round {number} state {state}: " + ", ".join(
                        f"{e} median {statistics.median(figures[state]['latencies_ms'][e]):.2f} ms" for e in ENDPOINTS)
                        + ("" if all(k.endswith(" 200") for k in statuses) else f"  UNEXPECTED {statuses}"))
                out.append(figures)
        except (Closed, TimeoutError, OSError) as error:
            raise SystemExit(f"bench: a gateway stopped answering: {error}") from None
        finally:
            for connection in connections.values():
                if connection.transport is not None:
                    connection.transport.close()
        return out

    # --- statements per request ----------------------------------------------------------------------------
    async def statements(self) -> dict:
        """Per state and endpoint: the statements (and Redis commands) each of ``--count-requests``
        requests sends, counted in this process around the real app (caches warm)."""
        from aiohttp.test_utils import TestClient, TestServer

        from gateway.app import create_app
        from gateway.settings import Settings
        from tests.roundtrips import counting

        out = {}
        for state in STATES:
            settings = Settings(database_url=self.urls[state], redis_url=self.args.redis_url,
                                redis_prefix=f"{self.redis_prefix}count-{state}:", secret=common.SECRET,
                                log_level="WARNING")
            client = TestClient(TestServer(create_app(settings)))
            await client.start_server()
            try:
                figures = {}
                for endpoint in ENDPOINTS:
                    counts, commands, texts = [], [], []
                    for k in range(3 + self.args.count_requests):
                        member_id, index = self.measured[k % len(self.measured)]
                        with counting() as count:
                            status = await self._in_process(client, endpoint, member_id, index)
                        if status != 200:
                            raise SystemExit(f"bench: in-process {endpoint} answered {status}")
                        if k >= 3:  # after 3 warm-up requests (the per-process caches filled)
                            counts.append(len(count.statements))
                            commands.append(len(count.commands))
                            texts = texts or [s[:200] for s in count.statements]
                    figures[endpoint] = {"statements": counts, "redis_commands": commands, "texts": texts}
                out[state] = figures
            finally:
                await client.close()
        return out

    async def _in_process(self, client, endpoint: str, member_id: int, index: int) -> int:
        if endpoint == "scan":
            body = b'{"code":"%s"}' % common.phone(index).encode()
            self.counter += 1
            timestamp, nonce = str(int(time.time())), f"c{self.run_id}{self.counter:012x}"
            headers = {"Content-Type": "application/json", "X-Terminal-Id": self.chain.terminal_id,
                       "X-Timestamp": timestamp, "X-Nonce": nonce,
                       "X-Signature": common.sign(self.chain.terminal_secret.encode(), "POST", "/v1/pos/scan",
                                                  timestamp, nonce, body)}
            async with client.post("/v1/pos/scan", data=body, headers=headers) as answer:
                await answer.read()
                return answer.status
        path = f"/v1/members/{member_id}" + (f"/ledger?limit={self.page}" if endpoint == "ledger" else "")
        async with client.get(path, headers={"Authorization": f"Bearer {self.chain.admin_key}"}) as answer:
            await answer.read()
            return answer.status

    # --- clean-up ------------------------------------------------------------------------------------------
    async def stop_servers(self) -> list[str]:
        problems = []
        for server in self.servers.values():
            left = await asyncio.to_thread(server.stop)
            if left:
                problems.append(f"{server.name} processes still alive: {left}")
        self.servers.clear()
        return problems

    async def clean_up(self) -> list[str]:
        problems = await self.stop_servers()
        for name in self.created:
            try:
                await bulk.drop_database(self.args.postgres_url, name)
            except Exception as error:
                problems.append(f"could not drop {name}: {error}")
        try:
            from redis.asyncio import Redis

            client = Redis.from_url(self.args.redis_url, socket_timeout=5)
            try:
                keys = [key async for key in client.scan_iter(match=self.redis_prefix + "*", count=1000)]
                for start in range(0, len(keys), 1000):
                    await client.delete(*keys[start:start + 1000])
            finally:
                await client.aclose()
        except Exception as error:
            problems.append(f"could not delete Redis keys {self.redis_prefix}*: {error}")
        for item in self.tmp.iterdir():
            item.unlink()
        self.tmp.rmdir()
        return problems

    # --- the run -----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        problems: list[str] = []
        machine = await self.machine()
        try:
            began = time.monotonic()
            states = await self.seed()
            self.timings["seeding and checks"] = round(time.monotonic() - began, 1)
            began = time.monotonic()
            await self.start_servers()
            rounds = await self.rounds()
            problems += await self.stop_servers()
            self.timings["measured rounds"] = round(time.monotonic() - began, 1)
            began = time.monotonic()
            statements = await self.statements()
            self.timings["statement counts"] = round(time.monotonic() - began, 1)
        finally:
            problems += await asyncio.shield(self.clean_up())
        machine["loadavg_at_end"] = os.getloadavg()
        report = {"kind": "history", "run_id": self.run_id, "started_at": self.stamp, "machine": machine,
                  "settings": {k: v for k, v in vars(self.args).items() if k not in ("postgres_url", "redis_url")},
                  "states": states, "rounds": rounds, "summary": summarise(rounds, statements, self.args.tolerance, self.args.small,
                                                           self.args.large),
                  "statements": statements, "timings": self.timings, "clean_up_problems": problems,
                  "wall_seconds": round(time.monotonic() - self.started, 1)}
        for line in render(report):
            say(line)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.stamp}-history.json"
        path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        say(f"\nwrote {path.relative_to(REPO)}")

    async def machine(self) -> dict:
        def version(name: str) -> str | None:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return None

        def git(*argv: str) -> str:
            return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.strip()

        conn = await bulk.connect(self.args.postgres_url)
        try:
            server = await conn.fetchval("SHOW server_version")
            buffers = await conn.fetchval("SHOW shared_buffers")
        finally:
            await conn.close()
        return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                "loadavg_at_start": os.getloadavg(), "postgresql": server, "shared_buffers": buffers,
                "packages": {n: version(n) for n in ("aiohttp", "asyncpg", "tortoise-orm", "redis", "uvloop")},
                "git_commit": git("rev-parse", "HEAD"), "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# --- figures --------------------------------------------------------------------------------------------------
def figures_of(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(ordered), "median": round(statistics.median(ordered), 3) if ordered else 0.0,
            "p95": round(quantile(ordered, 0.95), 3), "p99": round(quantile(ordered, 0.99), 3),
            "mean": round(statistics.fmean(ordered), 3) if ordered else 0.0,
            "min": round(ordered[0], 3) if ordered else 0.0}


def summarise(rounds: list[dict], statements: dict, tolerance: float, small: int, large: int) -> dict:
    out: dict = {"endpoints": {}, "checks": []}
    for endpoint in ENDPOINTS:
        per_state = {}
        for state in STATES:
            pooled = [v for r in rounds for v in r[state]["latencies_ms"][endpoint]]
            per_state[state] = figures_of(pooled) | {
                "round medians": [round(statistics.median(r[state]["latencies_ms"][endpoint]), 3) for r in rounds]}
        a, b = per_state["a"], per_state["b"]
        ratio = round(b["median"] / a["median"], 3) if a["median"] else 0.0
        p95_ratio = round(b["p95"] / a["p95"], 3) if a["p95"] else 0.0
        by_round = [round(b_ / a_, 3) if a_ else 0.0 for a_, b_ in zip(a["round medians"], b["round medians"])]
        counts = {state: statements[state][endpoint]["statements"] for state in STATES}
        same = len({c for state in STATES for c in counts[state]}) == 1
        out["endpoints"][endpoint] = {**per_state, "ratio b/a (median)": ratio, "ratio b/a (p95)": p95_ratio,
                                      "ratio b/a per round (medians)": by_round,
                                      "statements per request": counts, "same statements in both states": same}
        if endpoint in JUDGED:
            out["checks"].append({"check": f"{LABELS[endpoint]}: median with {large:,} entries in the chain within "
                                           f"{tolerance:.0%} of the median with {small:,}",
                                  "value": ratio, "pass": abs(ratio - 1) <= tolerance})
            out["checks"].append({"check": f"{LABELS[endpoint]}: the same statements per request in both states",
                                  "value": counts["a"][0] if same else None, "pass": same})
    return out


def render(report: dict) -> list[str]:
    s, m, summary = report["settings"], report["machine"], report["summary"]
    states = report["states"]
    lines = ["", "History: scan and member view with a short and a long ledger (figures; always exits 0)",
             f"  {m['cpu_count']} CPUs, python {m['python']}, PostgreSQL {m['postgresql']} (shared_buffers "
             f"{m['shared_buffers']}), commit {m['git_commit'][:10]}{' (dirty)' if m['git_dirty'] else ''}, "
             f"load average at start {m['loadavg_at_start'][0]:.2f}, at end {m['loadavg_at_end'][0]:.2f}",
             f"  {s['members']:,} members + 1; {s['measured']} measured members; one loyalty serve --workers 1 per "
             f"state; {s['rounds']} rounds, each {s['warmup']} warm-up requests of each endpoint per state, then "
             f"{s['requests']} sequential requests of each per state, "
             + ("in blocks (one state, then the other)" if s.get("blocks") else "the states interleaved"), ""]
    for state in STATES:
        st = states[state]
        lines.append(f"  state {state}: {st['counts']['journal_entries']:,} journal entries in the chain "
                     f"({st['counts']['postings']:,} postings, {st['counts']['points_lots']:,} lots), each measured "
                     f"member {st['measured_member_each']['entries']:,} entries; verify: {st['verify']['verdict']}; "
                     f"shape check: {len(st['shape_check'])} differences")
    head = (f"{'endpoint':<30}{'state':>6}{'median ms':>11}{'p95 ms':>9}{'p99 ms':>9}{'n':>6}  "
            f"{'round medians':<24}{'statements':>11}")
    lines += ["", head, "-" * len(head)]
    for endpoint in ENDPOINTS:
        e = summary["endpoints"][endpoint]
        for state in STATES:
            f = e[state]
            counts = sorted(set(e["statements per request"][state]))
            lines.append(f"{LABELS[endpoint] if state == 'a' else '':<30}{state:>6}{f['median']:>11.2f}{f['p95']:>9.2f}"
                         f"{f['p99']:>9.2f}{f['n']:>6}  {', '.join(f'{v:.2f}' for v in f['round medians']):<24}"
                         f"{'/'.join(map(str, counts)):>11}")
        per_round = ", ".join(f"{v:.2f}" for v in e["ratio b/a per round (medians)"])
        lines.append(f"{'':<30}{'b/a':>6}{e['ratio b/a (median)']:>11.3f}{e['ratio b/a (p95)']:>9.3f}"
                     f"{'':>15}  {per_round:<24}{'same' if e['same statements in both states'] else 'DIFFERENT':>11}")
    lines += ["", "checks (the speed issue: costs that do not grow with history):"]
    for check in summary["checks"]:
        value = check["value"]
        lines.append(f"  {'PASS' if check['pass'] else 'MISS'}  {check['check']}: "
                     + (f"{value:.3f}" if isinstance(value, float) else str(value)))
    unexpected = {state: {k: v for r in report["rounds"] for k, v in r[state]["statuses"].items()
                          if not k.endswith(" 200")} for state in STATES}
    if any(unexpected.values()):
        lines.append(f"  FLAGGED: answers other than 200: {unexpected}")
    lines += ["", "statements per request (state b, the first counted request of each):"]
    for endpoint in ENDPOINTS:
        counted = report["statements"]["b"][endpoint]
        lines.append(f"  {LABELS[endpoint]}: {counted['statements'][0]} statements, "
                     f"{counted['redis_commands'][0]} Redis commands")
        lines += [f"    {text[:150]}" for text in counted["texts"]]
    if report["clean_up_problems"]:
        lines.append("CLEAN-UP PROBLEMS: " + "; ".join(report["clean_up_problems"]))
    else:
        lines.append("cleaned up: gateways stopped, both databases dropped, Redis keys deleted")
    lines.append("times: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["timings"].items())
                 + f"; wall time {report['wall_seconds']:.0f} s")
    return lines


# --- the command ------------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n")[0])
    top.add_argument("--members", type=bounded(int, 20, 1_000_000), default=1000,
                     help="members written in bulk, the same in both states (default 1000)")
    top.add_argument("--measured", type=bounded(int, 1, 100), default=10, help="members measured (default 10)")
    top.add_argument("--small", type=bounded(int, 100, 10_000_000), default=1000,
                     help="journal entries in the chain in state a (default 1000)")
    top.add_argument("--large", type=bounded(int, 100, 10_000_000), default=1_000_000,
                     help="journal entries in the chain in state b (default 1000000)")
    top.add_argument("--small-own", type=bounded(int, 1, 1_000_000), default=10,
                     help="entries of each measured member in state a (default 10)")
    top.add_argument("--large-own", type=bounded(int, 1, 1_000_000), default=10_000,
                     help="entries of each measured member in state b (default 10000)")
    top.add_argument("--rounds", type=bounded(int, 1, 40), default=3,
                     help="rounds, each with both states, a first then b first ... (default 3)")
    top.add_argument("--requests", type=bounded(int, 10, 100_000), default=300,
                     help="measured requests of each endpoint per state and round (default 300)")
    top.add_argument("--blocks", action="store_true",
                     help="in each round all of one state's requests, then the other's (default: interleaved)")
    top.add_argument("--warmup", type=bounded(int, 0, 10_000), default=30,
                     help="unmeasured requests of each endpoint before each turn (default 30)")
    top.add_argument("--count-requests", type=bounded(int, 1, 100), default=5,
                     help="requests per endpoint and state whose statements are counted (default 5)")
    top.add_argument("--tolerance", type=bounded(float, 0.01, 10), default=0.20,
                     help="how far b/a may be from 1 (default 0.20)")
    cli.add_postgres_url(top)
    cli.add_redis_url(top)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.postgres_url = cli.postgres_url(args)
    if args.small_own * args.measured >= args.small or args.large_own * args.measured >= args.large:
        raise SystemExit("bench: the measured members' own entries must leave some for the others")
    if args.measured >= args.members:
        raise SystemExit("bench: --measured must be below --members")
    return cli.run(Bench(args).run)


if __name__ == "__main__":
    sys.exit(main())
