"""The POS-mix bench: the real gateway against a bare baseline, in the same run, in alternating rounds.

``python -m bench`` (``make bench``): a throwaway copy of a seeded database (10,000 members with
history, see ``bench/seed.py``), ``loyalty serve --workers N`` and ``bench/baseline.py`` with N
processes each, and per round, for each in turn, a load generator process (``bench/load.py``):
a closed loop at concurrency 32 (the peak rate) and an open loop at 70 % of that peak (the
latencies). It prints per target and endpoint the rates, p50/p95/p99 and errors, the
gateway/baseline ratios and the checks against the speed issue's targets, writes
``bench/results/<timestamp>-pos-mix.json`` and ``.png``, runs ``loyalty verify``, and always
exits 0 (bench/README.md says how to read it).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import aiohttp
import asyncpg

from . import cli, common, seed
from .common import bounded, say
from .load import ENDPOINTS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LOYALTY = str(Path(sys.executable).with_name("loyalty"))
TARGETS = ("gateway", "baseline")
# The speed issue's targets: (label, how to read the figure, bound, higher is better)
HEADLINE_RATIO = 0.40
ORDER_P99_MS = 50.0
SCAN_P99_MS = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> int:
    """How many sockets listen on this loopback port (one per process with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    """A server under test: a parent process and its N children, in a session of their own (so a
    Ctrl-C in the terminal reaches the bench, which stops them in order)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, processes: int, log: Path):
        self.name, self.argv, self.env, self.port, self.processes = name, argv, env, port, processes
        self.log = log
        self.popen: subprocess.Popen | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self, timeout: float = 60) -> None:
        """Every process listens and /healthz answers."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise SystemExit(f"bench: {self.name} exited {self.popen.returncode}; its log:\n{self.tail()}")
                if listening(self.port) >= self.processes:
                    try:
                        async with session.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                            if response.status == 200:
                                self.pids = [self.popen.pid, *children(self.popen.pid)]
                                return
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        pass
                await asyncio.sleep(0.1)
        raise SystemExit(f"bench: {self.name} not ready within {timeout} s; its log:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20) -> list[int]:
        """SIGTERM to the parent (it passes it on), then SIGKILL to whatever of ours is left; the
        pids still alive after that (none, or something is wrong)."""
        if self.popen is None:
            return []
        known = set(self.pids) | {self.popen.pid, *children(self.popen.pid)}
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + grace
        while any(alive(p) for p in known) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in known:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(5)
        time.sleep(0.2)
        return [p for p in known if alive(p)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
        self.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.tmp = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
        self.database = f"loyalty_bench_run_{self.run_id}"
        self.database_url = seed.database_url(args.postgres_url, self.database)
        self.redis_prefix = f"loyalty-bench:{self.run_id}:"
        self.servers: dict[str, Server] = {}
        self.load_process: asyncio.subprocess.Process | None = None
        self.database_created = False
        self.started = time.monotonic()
        self.results: dict = {}

    # --- set-up ------------------------------------------------------------------------------------
    def env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in (
            "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "LOYALTY_SECRET", "LOG_LEVEL")}
        env.update(PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", **values)
        return env

    async def check_services(self) -> None:
        try:
            await seed.admin_fetch(self.args.postgres_url, "SELECT 1")
        except Exception as error:
            raise SystemExit(f"bench: PostgreSQL at {self.args.postgres_url} does not answer: {error}") from None
        from redis.asyncio import Redis

        client = Redis.from_url(self.args.redis_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            await client.ping()
        except Exception as error:
            raise SystemExit(f"bench: Redis at {self.args.redis_url} does not answer: {error}") from None
        finally:
            await client.aclose()

    async def set_up(self) -> None:
        args = self.args
        await self.check_services()
        template, self.meta = await seed.ensure_template(args.postgres_url, args.members, args.seed_processes,
                                                         args.reseed, say)
        started = time.monotonic()
        self.database_created = True
        await seed.admin_execute(args.postgres_url, f'CREATE DATABASE "{self.database}" TEMPLATE "{template}"')
        say(f"database: {self.database}, a copy of {template} ({time.monotonic() - started:.1f} s); "
            f"Redis prefix {self.redis_prefix}")
        await self.command(LOYALTY, "migrate", env=self.env(DATABASE_URL=self.database_url))
        await self.command(sys.executable, "-m", "bench.baseline", "setup", self.database_url,
                           "--members", str(args.members), env=self.env())
        n = str(args.processes)
        gateway_port, baseline_port = free_port(), free_port()
        self.servers["gateway"] = Server(
            "gateway", [LOYALTY, "serve", "--workers", n, "--host", "127.0.0.1", "--port", str(gateway_port)],
            self.env(DATABASE_URL=self.database_url, REDIS_URL=args.redis_url, REDIS_PREFIX=self.redis_prefix,
                     LOYALTY_SECRET=common.SECRET), gateway_port, args.processes, self.tmp / "gateway.log")
        self.servers["baseline"] = Server(
            "baseline", [sys.executable, "-m", "bench.baseline", "serve", self.database_url, "--host", "127.0.0.1",
                         "--port", str(baseline_port), "--processes", n, "--pool-size", str(args.pool_size)],
            self.env(BENCH_TERMINAL_ID=self.meta["terminal_id"], BENCH_TERMINAL_SECRET=self.meta["terminal_secret"]),
            baseline_port, args.processes, self.tmp / "baseline.log")
        for server in self.servers.values():
            server.start()
        for server in self.servers.values():
            await server.ready()
            say(f"{server.name}: port {server.port}, pids {server.pids}")
        say(f"set-up done in {time.monotonic() - self.started:.0f} s")

    async def command(self, *argv: str, env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(*argv, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        text = out.decode(errors="replace")
        if process.returncode not in (0, 1) or (process.returncode == 1 and "verify" not in argv):
            raise SystemExit(f"bench: {' '.join(argv[:3])} exited {process.returncode}:\n{text[-3000:]}")
        return process.returncode, text

    # --- the rounds ----------------------------------------------------------------------------------
    async def phase(self, target: str, round_no: int, refundable: list) -> dict:
        args, server = self.args, self.servers[target]
        out = self.tmp / f"{target}-{round_no}.json"
        settings = {
            "host": "127.0.0.1", "port": server.port, "terminal_id": self.meta["terminal_id"],
            "terminal_secret": self.meta["terminal_secret"], "members": args.members,
            "tag": f"{self.run_id[-8:]}{target[0]}{round_no}", "seed": args.seed * 1000 + round_no,
            "warmup": args.warmup, "duration": args.duration, "open_duration": args.open_duration,
            "concurrency": args.concurrency, "load_fraction": args.load_fraction,
            "max_connections": args.max_connections, "refundable": refundable, "out": str(out),
            "watch": {"server processes": server.pids},
        }
        path = self.tmp / f"{target}-{round_no}-settings.json"
        path.write_text(json.dumps(settings))
        self.load_process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.load", str(path),
                                                                 cwd=REPO, start_new_session=True)
        try:
            code = await self.load_process.wait()
        finally:
            if self.load_process.returncode is None:
                self.load_process.kill()
                await self.load_process.wait()
            self.load_process = None
        if code != 0 or not out.exists():
            raise SystemExit(f"bench: the load generator for {target} round {round_no} exited {code}")
        return json.loads(out.read_text())

    async def rounds(self) -> list[dict]:
        args = self.args
        refundable = {t: [] for t in TARGETS}
        self.answers = {t: {"created": 0, "refunded": 0, "points": {}, "fallbacks": 0} for t in TARGETS}
        rounds = []
        for round_no in range(1, args.rounds + 1):
            figures = {}
            for target in TARGETS:
                result = await self.phase(target, round_no, refundable[target])
                refunded = set(result["refunded"])
                refundable[target] = [item for item in refundable[target] + result["created"]
                                      if item[0] not in refunded]
                answers = self.answers[target]
                answers["created"] += len(result["created"])
                answers["refunded"] += len(result["refunded"])
                answers["fallbacks"] += result["refund_fallbacks"]
                for key, value in result["points"].items():
                    answers["points"][key] = answers["points"].get(key, 0) + value
                figures[target] = {"closed": result["closed"], "open": result["open"]}
                closed, opened = result["closed"], result["open"]
                say(f"round {round_no} {target:<8}  closed {closed['rate']:7.1f} req/s "
                    f"(orders {closed['endpoints']['order']['rate']:6.1f}/s, {closed['errors']} errors)   "
                    f"open at {opened['target_rate']:.0f}/s: order p99 {opened['endpoints']['order']['p99']:.1f} ms, "
                    f"scan p99 {opened['endpoints']['scan']['p99']:.1f} ms, {opened['errors']} errors")
            rounds.append(figures)
        return rounds

    # --- after the run ---------------------------------------------------------------------------------
    async def checks(self) -> dict:
        """``loyalty verify`` on the bench database, and the answers against what was stored."""
        started = time.monotonic()
        code, text = await self.command(LOYALTY, "verify", env=self.env(DATABASE_URL=self.database_url))
        verdict = text.strip().splitlines()[-1] if text.strip() else f"exit {code}"
        conn = await asyncpg.connect(seed.asyncpg_url(self.database_url))
        try:
            tag = f"L{self.run_id[-8:]}"
            orders = await conn.fetchval("SELECT count(*) FROM orders WHERE txn_id LIKE $1", tag + "g%")
            refunds = await conn.fetchval(
                "SELECT count(*) FROM refunds r JOIN orders o ON o.id = r.order_id WHERE o.txn_id LIKE $1", tag + "g%")
            points = int(await conn.fetchval("SELECT coalesce(sum(balance), 0) FROM accounts WHERE kind = 'points'"))
            b_orders = await conn.fetchval("SELECT count(*) FROM baseline_journal WHERE key LIKE $1",
                                           f"order:{tag}b%")
            b_refunds = await conn.fetchval("SELECT count(*) FROM baseline_journal WHERE key LIKE $1",
                                            f"refund:{tag}b%")
            b_balance = int(await conn.fetchval("SELECT sum(balance) FROM baseline_accounts"))
            b_journal = int(await conn.fetchval("SELECT sum(amount) FROM baseline_journal"))
        finally:
            await conn.close()
        g, b = self.answers["gateway"], self.answers["baseline"]
        moved = g["points"]
        expected = (self.meta["points_total"] + moved.get("earned", 0) - moved.get("redeemed", 0)
                    - moved.get("reversed", 0) + moved.get("returned", 0))
        b_expected = self.args.members * common.OPENING_POINTS + b_journal
        consistent = (code == 0 and orders == g["created"] and refunds == g["refunded"] and points == expected
                      and b_orders == b["created"] and b_refunds == b["refunded"] and b_balance == b_expected)
        return {"verify": verdict, "verify_exit": code, "verify_seconds": round(time.monotonic() - started, 1),
                "gateway": {"orders stored": orders, "order answers 201": g["created"], "refunds stored": refunds,
                            "refund answers 201": g["refunded"], "points held": points,
                            "points expected from the seed and the answers": expected,
                            "refunds sent as orders (no order to refund yet)": g["fallbacks"]},
                "baseline": {"orders stored": b_orders, "order answers 201": b["created"],
                             "refunds stored": b_refunds, "refund answers 201": b["refunded"],
                             "points held": b_balance, "points expected from its journal": b_expected,
                             "refunds sent as orders (no order to refund yet)": b["fallbacks"]},
                "consistent": consistent}

    async def clean_up(self) -> list[str]:
        problems = []
        if self.load_process is not None and self.load_process.returncode is None:
            self.load_process.kill()
            await self.load_process.wait()
        for server in self.servers.values():
            left = await asyncio.to_thread(server.stop)
            if left:
                problems.append(f"{server.name} processes still alive: {left}")
        if self.database_created:
            try:
                await seed.admin_execute(self.args.postgres_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except Exception as error:
                problems.append(f"could not drop {self.database}: {error}")
        try:
            from redis.asyncio import Redis

            client = Redis.from_url(self.args.redis_url, socket_timeout=5)
            try:
                keys = [key async for key in client.scan_iter(match=self.redis_prefix + "*", count=1000)]
                for start in range(0, len(keys), 1000):
                    await client.delete(*keys[start:start + 1000])
                if [key async for key in client.scan_iter(match=self.redis_prefix + "*", count=1000)]:
                    problems.append(f"Redis keys {self.redis_prefix}* left")
            finally:
                await client.aclose()
        except Exception as error:
            problems.append(f"could not clean Redis keys {self.redis_prefix}*: {error}")
        leftovers = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
        ours = [line.strip() for line in leftovers if self.database in line or
                any(f"--port {s.port}" in line for s in self.servers.values())]
        if ours:
            problems.append(f"processes left: {ours}")
        for item in self.tmp.iterdir():
            item.unlink()
        self.tmp.rmdir()
        return problems

    async def machine(self) -> dict:
        def version(name: str) -> str | None:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return None

        def git(*argv: str) -> str:
            return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.strip()

        rows = await seed.admin_fetch(self.args.postgres_url, "SHOW server_version")
        from redis.asyncio import Redis

        client = Redis.from_url(self.args.redis_url, socket_timeout=3)
        try:
            redis_version = (await client.info("server")).get("redis_version")
        finally:
            await client.aclose()
        return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                "loadavg_at_start": os.getloadavg(),
                "packages": {n: version(n) for n in ("aiohttp", "asyncpg", "tortoise-orm", "redis", "orjson")},
                "postgresql": rows[0][0], "redis_server": redis_version,
                "git_commit": git("rev-parse", "HEAD"), "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}

    async def run(self) -> None:
        args = self.args
        problems: list[str] = []
        try:
            machine = await self.machine()
            await self.set_up()
            rounds = await self.rounds()
            for server in self.servers.values():  # before verify: nothing may still be writing
                left = await asyncio.to_thread(server.stop)
                if left:
                    problems.append(f"{server.name} processes still alive: {left}")
            checks = await self.checks()
        finally:
            problems += await self.clean_up()
        machine["loadavg_at_end"] = os.getloadavg()
        summary = summarise(rounds)
        report = {"kind": "pos-mix", "run_id": self.run_id, "started_at": self.stamp, "machine": machine,
                  "settings": {k: v for k, v in vars(args).items() if k not in ("postgres_url", "redis_url")},
                  "seed": {k: v for k, v in self.meta.items() if k != "terminal_secret"},
                  "rounds": rounds, "summary": summary, "checks": checks, "clean_up_problems": problems,
                  "wall_seconds": round(time.monotonic() - self.started, 1)}
        for line in render(report):
            say(line)
        RESULTS.mkdir(parents=True, exist_ok=True)
        base = RESULTS / f"{self.stamp}-pos-mix"
        base.with_suffix(".json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        say(f"\nwrote {base.with_suffix('.json').relative_to(REPO)}")
        if not args.no_chart:
            try:
                chart(report, base.with_suffix(".png"))
                say(f"wrote {base.with_suffix('.png').relative_to(REPO)}")
            except ImportError:
                say("no chart: matplotlib is not installed (pip install -e '.[bench]')")


# --- figures ------------------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(rounds: list[dict]) -> dict:
    """Medians over the rounds per target and endpoint, and the per-round gateway/baseline ratios."""
    out: dict = {"targets": {}, "ratios": {}}
    for target in TARGETS:
        phases = [r[target] for r in rounds]
        figures: dict = {"closed rate": median([p["closed"]["rate"] for p in phases]),
                         "open rate": median([p["open"]["target_rate"] for p in phases]),
                         "errors": sum(p["closed"]["errors"] + p["open"]["errors"] for p in phases),
                         "endpoints": {}}
        for endpoint in ENDPOINTS:
            closed = [p["closed"]["endpoints"][endpoint] for p in phases]
            opened = [p["open"]["endpoints"][endpoint] for p in phases]
            figures["endpoints"][endpoint] = {
                "closed rate": median([c["rate"] for c in closed]),
                "closed p99": median([c["p99"] for c in closed]),
                **{f"open {q}": median([o[q] for o in opened]) for q in ("p50", "p95", "p99")},
                "errors": sum(c["errors"] + o["errors"] for c, o in zip(closed, opened)),
            }
        figures["cpu ms/request"] = {
            name: median([p["closed"]["cpu"].get(f"{name} cpu ms/request") or 0 for p in phases])
            for name in ("server processes", "postgres", "redis", "load generator")}
        figures["machine busy %"] = median([p["closed"]["cpu"].get("machine busy %", 0) for p in phases])
        out["targets"][target] = figures
    per_round = []
    for r in rounds:
        g, b = r["gateway"], r["baseline"]
        ratio = {"all": _ratio(g["closed"]["rate"], b["closed"]["rate"])}
        for endpoint in ENDPOINTS:
            ratio[endpoint] = _ratio(g["closed"]["endpoints"][endpoint]["rate"],
                                     b["closed"]["endpoints"][endpoint]["rate"])
        per_round.append(ratio)
    out["ratios"] = {"per round": per_round,
                     "median": {k: median([r[k] for r in per_round]) for k in per_round[0]} if per_round else {}}
    gateway = out["targets"]["gateway"]["endpoints"]
    headline = out["ratios"]["median"].get("order", 0.0)
    out["checks"] = [
        {"check": f"order throughput ratio gateway/baseline >= {HEADLINE_RATIO:.2f}", "value": headline,
         "pass": headline >= HEADLINE_RATIO},
        {"check": f"gateway order p99 at {70} % of its peak < {ORDER_P99_MS:.0f} ms", "value": gateway["order"]["open p99"],
         "pass": gateway["order"]["open p99"] < ORDER_P99_MS},
        {"check": f"gateway scan p99 at {70} % of its peak < {SCAN_P99_MS:.0f} ms", "value": gateway["scan"]["open p99"],
         "pass": gateway["scan"]["open p99"] < SCAN_P99_MS},
    ]
    return out


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def render(report: dict) -> list[str]:
    s, summary, rounds = report["settings"], report["summary"], report["rounds"]
    lines = ["", "POS mix: the gateway against the bare baseline (figures; the checks below never fail the run)",
             f"  {report['machine']['cpu_count']} CPUs, python {report['machine']['python']}, PostgreSQL "
             f"{report['machine']['postgresql']}, Redis {report['machine']['redis_server']}, commit "
             f"{report['machine']['git_commit'][:10]}{' (dirty)' if report['machine']['git_dirty'] else ''}, "
             f"load average at start {report['machine']['loadavg_at_start'][0]:.2f}",
             f"  {s['processes']} processes per target, {s['members']} members; per round and target: "
             f"{s['warmup']} s warm-up, closed loop at {s['concurrency']} for {s['duration']} s, "
             f"open loop (Poisson) at {s['load_fraction']:.0%} of that peak for {s['open_duration']} s; "
             f"{s['rounds']} rounds, gateway then baseline", ""]
    head = (f"{'round':<6}{'target':<9}{'endpoint':<9}{'peak/s':>8}{'errors':>7}  |{'open/s':>7}"
            f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'errors':>7}  statuses (closed + open)")
    lines += ["per round: peak = closed loop, latencies = open loop", head, "-" * len(head)]
    for number, r in enumerate(rounds, 1):
        for target in TARGETS:
            closed, opened = r[target]["closed"], r[target]["open"]
            lines.append(f"{number:<6}{target:<9}{'all':<9}{closed['rate']:>8.1f}{closed['errors']:>7}  |"
                         f"{opened['rate']:>7.1f}{'':>24}{opened['errors']:>7}")
            for endpoint in ENDPOINTS:
                c, o = closed["endpoints"][endpoint], opened["endpoints"][endpoint]
                statuses = {k: c["statuses"].get(k, 0) + o["statuses"].get(k, 0)
                            for k in sorted(set(c["statuses"]) | set(o["statuses"]))}
                lines.append(f"{'':<15}{endpoint:<9}{c['rate']:>8.1f}{c['errors']:>7}  |{o['rate']:>7.1f}"
                             f"{o['p50']:>8.1f}{o['p95']:>8.1f}{o['p99']:>8.1f}{o['errors']:>7}  "
                             + ", ".join(f"{k} x{v}" for k, v in statuses.items()))
    lines += ["", f"medians over {len(rounds)} rounds",
              f"{'endpoint':<9}{'gateway/s':>10}{'baseline/s':>11}{'ratio':>7}  |{'gateway p50/p95/p99 ms':>24}"
              f"  |{'baseline p50/p95/p99 ms':>25}"]
    g, b = summary["targets"]["gateway"], summary["targets"]["baseline"]
    median_ratio = summary["ratios"]["median"]
    lines.append(f"{'all':<9}{g['closed rate']:>10.1f}{b['closed rate']:>11.1f}{median_ratio.get('all', 0):>7.3f}  |")
    for endpoint in ENDPOINTS:
        ge, be = g["endpoints"][endpoint], b["endpoints"][endpoint]
        lines.append(f"{endpoint:<9}{ge['closed rate']:>10.1f}{be['closed rate']:>11.1f}"
                     f"{median_ratio.get(endpoint, 0):>7.3f}  |"
                     f"{ge['open p50']:>10.1f}{ge['open p95']:>7.1f}{ge['open p99']:>7.1f}  |"
                     f"{be['open p50']:>11.1f}{be['open p95']:>7.1f}{be['open p99']:>7.1f}")
    per_round = summary["ratios"]["per round"]
    lines += ["", "gateway/baseline peak ratio per round: "
              + "; ".join(f"round {i}: orders {r['order']:.3f}, all {r['all']:.3f}" for i, r in enumerate(per_round, 1)),
              "CPU per request in the closed loop (median ms; machine busy %): "
              + "; ".join(f"{t}: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["targets"][t]["cpu ms/request"].items())
                          + f" ({summary['targets'][t]['machine busy %']:.0f} % busy)" for t in TARGETS)]
    lines += ["", "checks (the speed issue's targets):"]
    for check in summary["checks"]:
        lines.append(f"  {'PASS' if check['pass'] else 'MISS'}  {check['check']}: {check['value']:.3f}")
    errors = {t: summary["targets"][t]["errors"] for t in TARGETS}
    if any(errors.values()):
        lines.append(f"  FLAGGED: this run had errors (gateway {errors['gateway']}, baseline {errors['baseline']}):"
                     " its figures measure failures too. First answers of each kind:")
        for number, r in enumerate(rounds, 1):
            for target in TARGETS:
                for phase in ("closed", "open"):
                    for kind, body in r[target][phase]["error_samples"].items():
                        lines.append(f"    round {number} {target} {phase} {kind}: {body[:200]}")
    else:
        lines.append("  no errors: every answer was the expected 200 (scan, preview) or 201 (order, refund)")
    checks = report["checks"]
    lines += ["", f"after the run ({'CONSISTENT' if checks['consistent'] else 'INCONSISTENT'}):",
              f"  loyalty verify on the bench database: {checks['verify']} ({checks['verify_seconds']} s)"]
    for target in TARGETS:
        lines.append(f"  {target}: " + ", ".join(f"{k} {v}" for k, v in checks[target].items()))
    if report["clean_up_problems"]:
        lines.append("  CLEAN-UP PROBLEMS: " + "; ".join(report["clean_up_problems"]))
    else:
        lines.append("  cleaned up: servers stopped (no process left), database dropped, Redis keys deleted")
    lines.append(f"  wall time, set-up included: {report['wall_seconds']:.0f} s")
    return lines


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]["targets"]
    labels = ["all", *ENDPOINTS]
    colours = {"gateway": "#d95f02", "baseline": "#1b9e77"}
    figure, (rates, latencies) = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.38
    for offset, target in ((-width / 2, "gateway"), (width / 2, "baseline")):
        t = summary[target]
        values = [t["closed rate"]] + [t["endpoints"][e]["closed rate"] for e in ENDPOINTS]
        bars = rates.bar([i + offset for i in range(len(labels))], values, width, label=target, color=colours[target])
        rates.bar_label(bars, fmt="%.0f", fontsize=7)
        p99 = [t["endpoints"][e]["open p99"] for e in ENDPOINTS]
        bars = latencies.bar([i + offset for i in range(len(ENDPOINTS))], p99, width, label=target,
                             color=colours[target])
        latencies.bar_label(bars, fmt="%.1f", fontsize=7)
    ratios = report["summary"]["ratios"]["median"]
    rates.set_xticks(range(len(labels)), [f"{label}\n×{ratios.get(label, 0):.2f}" for label in labels])
    rates.set_yscale("log")
    rates.set_ylabel("requests/s (closed loop, median of rounds, log scale)")
    rates.set_title("peak throughput (gateway/baseline ratio under each)")
    rates.legend()
    latencies.set_xticks(range(len(ENDPOINTS)), list(ENDPOINTS))
    latencies.axhline(ORDER_P99_MS, color="grey", linestyle="--", linewidth=0.8)
    latencies.text(len(ENDPOINTS) - 0.5, ORDER_P99_MS, f"order target {ORDER_P99_MS:.0f} ms", fontsize=7,
                   ha="right", va="bottom")
    latencies.axhline(SCAN_P99_MS, color="grey", linestyle=":", linewidth=0.8)
    latencies.text(len(ENDPOINTS) - 0.5, SCAN_P99_MS, f"scan target {SCAN_P99_MS:.0f} ms", fontsize=7,
                   ha="right", va="bottom")
    latencies.set_ylabel("p99 ms (open loop at 70 % of each one's own peak)")
    latencies.set_title("p99 latency")
    latencies.legend()
    m, s = report["machine"], report["settings"]
    figure.suptitle(f"POS mix {report['started_at']}: {s['processes']} processes each, {s['rounds']} rounds, "
                    f"{m['cpu_count']} CPUs, commit {m['git_commit'][:10]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- the command -----------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    top.add_argument("--processes", type=bounded(int, 1, 64), default=2,
                     help="processes per target: loyalty serve --workers N, and the baseline's (default 2)")
    top.add_argument("--rounds", type=bounded(int, 1, 20), default=2,
                     help="rounds of gateway then baseline (default 2)")
    top.add_argument("--duration", type=bounded(float, 1, 600), default=12.0,
                     help="closed-loop seconds per round and target (default 12)")
    top.add_argument("--open-duration", type=bounded(float, 1, 600), default=12.0,
                     help="open-loop seconds per round and target (default 12)")
    top.add_argument("--warmup", type=bounded(float, 0, 120), default=3.0,
                     help="unmeasured closed-loop seconds before each (default 3)")
    top.add_argument("--concurrency", type=bounded(int, 1, 512), default=32, help="closed-loop connections (default 32)")
    top.add_argument("--load-fraction", type=bounded(float, 0.01, 1.5), default=0.7,
                     help="open-loop arrival rate as a fraction of the same round's peak (default 0.7)")
    top.add_argument("--max-connections", type=bounded(int, 1, 4096), default=256,
                     help="open-loop connection cap (default 256)")
    top.add_argument("--members", type=bounded(int, 100, 1_000_000), default=10_000,
                     help="seeded members (default 10000; each count has its own template)")
    top.add_argument("--pool-size", type=bounded(int, 1, 100), default=5,
                     help="the baseline's asyncpg pool per process (default 5, the gateway's Tortoise default)")
    top.add_argument("--seed", type=int, default=1, help="of the load's random draws (default 1)")
    top.add_argument("--seed-processes", type=bounded(int, 1, 64), default=os.cpu_count() or 2,
                     help="processes seeding a new template (default: one per CPU)")
    top.add_argument("--reseed", action="store_true", help="seed the template again even if one is cached")
    top.add_argument("--no-chart", action="store_true", help="no PNG")
    cli.add_postgres_url(top)
    cli.add_redis_url(top)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.postgres_url = cli.postgres_url(args)
    return cli.run(Bench(args).run)
