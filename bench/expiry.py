"""Expiry bench: the real ``expire_points`` job over 1,000,000 due points lots of 100,000 members.

    .venv/bin/python -m bench.expiry                          # make bench-expiry
    .venv/bin/python -m bench.expiry --members 10000 --lots 100000

On a throwaway PostgreSQL database (``loyalty_bench_expiry_<run>`` beside ``--postgres-url``, dropped
at the end, also on an error or Ctrl-C) it creates a chain with the bench program (points expire
24 months after the local day they vest) and ``--members`` members, and writes in bulk
(``bench/bulk.py``, in the shape the core writes sales) ``--lots`` sales 25 to 36 months old, a lot
each, all of them due, spread over the members; and ``--fresh`` recent sales per member (10 days
old), whose lots are not due. One member registered through the core gets one old sale placed
through ``orders.place_order`` itself, which the shape check compares with the bulk rows. It runs
``loyalty verify``, then the job as the worker runs it (``loyalty_core.jobs.run_job("expire_points",
chain, now)`` on a Tortoise connection opened as ``loyalty worker`` opens it, statement timeout
included), counting the statements it sends, and prints lots/s, members/s and the wall time.

Afterwards SQL checks that every due lot is at zero and every other lot untouched, that each member
with due lots got exactly one expiry entry for the sum of them (and one ``balance.changed`` event),
that each points balance is what its open lots hold, and ``loyalty verify`` runs again. Then the
job runs a second time, which must find nothing to do; its time and the plan of its scan for due
lots are printed too. Writes ``bench/results/<timestamp>-expiry.json``; exit 0 (1 if a check fails).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from loyalty_core import jobs

from . import bulk, cli, common
from .common import bounded, say
from .history import Bench as _History

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DUE_FROM_DAYS, DUE_TO_DAYS = 1090, 770   # the due sales' ages (days): their lots expired 1 to 11 months ago
FRESH_DAYS = 10

# The job's scan for due lots (jobs.expire_points), for EXPLAIN.
DUE_SCAN = jobs.DUE_LOTS


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = datetime.now(timezone.utc).strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
        self.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.name = f"loyalty_bench_expiry_{self.run_id}"
        self.url = bulk.database_url(args.postgres_url, self.name)
        self.created = False
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}

    async def seed(self) -> dict:
        args = self.args
        now = datetime.now(timezone.utc)
        began = time.monotonic()
        await bulk.create_database(args.postgres_url, self.name)
        self.created = True
        self.chain = chain = await bulk.new_chain(self.url, "Expiry bench", common.program())
        joined = now - timedelta(days=DUE_FROM_DAYS + 10)
        conn = await bulk.connect(self.url)
        try:
            member_ids = await bulk.add_members(conn, chain, range(args.members), joined)
        finally:
            await conn.close()
        reference = await bulk.register_through_core(self.url, chain, args.members, joined)
        say(f"chain {chain.chain_id}: {args.members:,} members written in bulk, member {reference} through the core "
            f"({time.monotonic() - began:.0f} s); writing {args.lots - 1:,} due sales and {args.fresh} recent sale(s) "
            f"per member ...")
        due_spans = []
        for member_id, entries in bulk.spread(member_ids, args.lots - 1):
            first = now - timedelta(days=DUE_FROM_DAYS - bulk.jitter(member_id, 0, 60))
            due_spans.append(bulk.Span(member_id, entries, first, now - timedelta(days=DUE_TO_DAYS)))
        fresh_spans = [bulk.Span(m, args.fresh, now - timedelta(days=FRESH_DAYS + 1), now - timedelta(days=FRESH_DAYS))
                       for m in member_ids] if args.fresh else []
        conn = await bulk.connect(self.url)
        try:
            due = await bulk.add_sales(conn, chain, due_spans, txn_prefix="E")
            fresh = await bulk.add_sales(conn, chain, fresh_spans, txn_prefix="F")
            tiers = await bulk.settle_tiers(conn, chain, now)
        finally:
            await conn.close()
        await bulk.reference_sale(self.url, chain, reference, "REF-E", now - timedelta(days=DUE_FROM_DAYS - 100))
        conn = await bulk.connect(self.url)
        try:
            shape = await bulk.shape_check(conn, chain, "REF-E")
            await bulk.vacuum_analyze(conn)
            counts = await bulk.table_counts(conn, chain.chain_id)
        finally:
            await conn.close()
        self.timings["seeding"] = round(time.monotonic() - began, 1)
        checked = await bulk.verify(self.url)
        say(f"seeded in {self.timings['seeding']:.0f} s (due sales {due['seconds']:.0f} s, recent {fresh.get('seconds', 0):.0f} s): "
            f"{counts['journal_entries']:,} entries, {counts['points_lots']:,} lots, "
            f"{await bulk.database_size(self.args.postgres_url, self.name) / 1e6:,.0f} MB; tiers {tiers}")
        say(f"shape check: {'0 differences' if not shape else '; '.join(shape)}; loyalty verify: {checked['verdict']} "
            f"({checked['seconds']} s)")
        return {"counts": counts, "due_load": due, "fresh_load": fresh, "tiers": tiers, "shape_check": shape,
                "verify": checked}

    async def figures(self, now: datetime) -> dict:
        conn = await bulk.connect(self.url)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) AS lots, count(DISTINCT member_id) AS members, coalesce(sum(remaining), 0) AS points "
                "FROM points_lots WHERE chain_id = $1 AND remaining > 0 AND expires_at <= $2", self.chain.chain_id, now)
            return {k: int(v) for k, v in row.items()}
        finally:
            await conn.close()

    async def snapshot(self, now: datetime) -> None:
        """What each member's due lots hold before the job: the expected expiry entries."""
        conn = await bulk.connect(self.url)
        try:
            await conn.execute("CREATE TABLE bench_due AS SELECT member_id, count(*) AS lots, sum(remaining) AS points, "
                               "max(id) AS last_lot FROM points_lots WHERE chain_id = $1 AND remaining > 0 AND "
                               "expires_at <= $2 GROUP BY member_id", self.chain.chain_id, now)
            await conn.execute("CREATE TABLE bench_open AS SELECT id, remaining FROM points_lots WHERE chain_id = $1 "
                               "AND remaining > 0 AND (expires_at > $2 OR expires_at IS NULL)", self.chain.chain_id, now)
            self.entries_before = int(await conn.fetchval("SELECT count(*) FROM journal_entries"))
            self.events_before = int(await conn.fetchval(
                "SELECT count(*) FROM outbox_events WHERE topic = 'balance.changed'"))
        finally:
            await conn.close()

    async def job(self, now: datetime) -> dict:
        """``expire_points`` as the worker's schedule runs it, with its statements counted."""
        from gateway import db
        from loyalty_core import jobs
        from tests.roundtrips import counting

        await db.open_database(self.url)  # as `loyalty worker` opens it (statement timeout included)
        try:
            cpu, began = time.process_time(), time.perf_counter()
            with counting() as count:
                report = await jobs.run_job("expire_points", self.chain.chain_id, now)
            seconds = time.perf_counter() - began
            cpu = time.process_time() - cpu
        finally:
            await db.close_database()
        kinds: dict[str, int] = {}
        for statement in count.statements:
            head = " ".join(statement.split()[:3])[:40]
            kinds[head] = kinds.get(head, 0) + 1
        return {"processed": report.processed, "points": report.points, "seconds": round(seconds, 2),
                "job_process_cpu_seconds": round(cpu, 2), "statements": len(count.statements),
                "statement_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:12]),
                "first_statements": [s[:300] for s in count.statements[:8]]}

    async def checks(self, now: datetime) -> dict:
        chain_id = self.chain.chain_id
        conn = await bulk.connect(self.url)
        try:
            one = conn.fetchval
            out = {
                "due lots left with points": await one(
                    "SELECT count(*) FROM points_lots WHERE chain_id = $1 AND remaining > 0 AND expires_at <= $2",
                    chain_id, now),
                "lots not due that changed": await one(
                    "SELECT count(*) FROM bench_open o JOIN points_lots l ON l.id = o.id WHERE l.remaining <> o.remaining"),
                "members with due lots": await one("SELECT count(*) FROM bench_due"),
                "expiry entries": await one("SELECT count(*) FROM journal_entries WHERE chain_id = $1 AND kind = 'expiry'",
                                            chain_id),
                "members whose expiry entry is missing or wrong": await one("""
SELECT count(*) FROM bench_due d LEFT JOIN journal_entries j ON j.chain_id = $1 AND j.key = 'expire:' || d.member_id || ':' || d.last_lot
LEFT JOIN postings p ON p.entry_id = j.id AND p.ledger = 'points'
WHERE p.amount IS DISTINCT FROM -d.points""", chain_id),
                "members with more than one expiry entry": await one(
                    "SELECT count(*) FROM (SELECT member_id FROM journal_entries WHERE chain_id = $1 AND kind = 'expiry' "
                    "GROUP BY member_id HAVING count(*) > 1) x", chain_id),
                "points expired (postings)": await one(
                    "SELECT coalesce(sum(amount), 0) FROM postings WHERE chain_id = $1 AND ledger = 'points_expired'", chain_id),
                "points due before the job": await one("SELECT coalesce(sum(points), 0) FROM bench_due"),
                "balances off their open lots": await one(
                    "SELECT count(*) FROM accounts a LEFT JOIN (SELECT member_id, sum(remaining) s FROM points_lots "
                    "WHERE chain_id = $1 GROUP BY member_id) l ON l.member_id = a.member_id "
                    "WHERE a.chain_id = $1 AND a.kind = 'points' AND greatest(a.balance, 0) <> coalesce(l.s, 0)", chain_id),
                "accounts off their postings": await one(
                    "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) s FROM postings "
                    "WHERE chain_id = $1 AND account_id IS NOT NULL GROUP BY account_id) p ON p.account_id = a.id "
                    "WHERE a.chain_id = $1 AND a.balance <> coalesce(p.s, 0)", chain_id),
                "balance.changed events added": await one(
                    "SELECT count(*) FROM outbox_events WHERE topic = 'balance.changed'") - self.events_before,
                "entries added": await one("SELECT count(*) FROM journal_entries") - self.entries_before,
            }
            return {k: int(v) for k, v in out.items()}
        finally:
            await conn.close()

    async def explain_scan(self, now: datetime) -> list[str]:
        """The plan of the job's first step with the statistics as the load left them, and again
        after ANALYZE (as autovacuum would have it once the expired lots are counted)."""
        conn = await bulk.connect(self.url)
        try:
            out = []
            for title in ("statistics of before the run", "after ANALYZE points_lots"):
                if out:
                    await conn.execute("ANALYZE points_lots")
                rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + DUE_SCAN, self.chain.chain_id, now,
                                        jobs.BEFORE_ANY, 0, jobs.EXPIRY_SCAN)
                out += [f"-- {title}:"] + [r[0] for r in rows]
            return out
        finally:
            await conn.close()

    async def run(self) -> int:
        args = self.args
        machine = await _History.machine(self)  # the same machine record as the history bench
        problems: list[str] = []
        try:
            seeded = await self.seed()
            now = datetime.now(timezone.utc)
            before = await self.figures(now)
            await self.snapshot(now)
            say(f"due now: {before['lots']:,} lots of {before['members']:,} members, {before['points']:,} points; "
                "running expire_points ...")
            first = await self.job(now)
            say(f"first run: {first['processed']:,} lots, {first['points']:,} points in {first['seconds']:.1f} s: "
                f"{first['processed'] / first['seconds']:,.0f} lots/s, {before['members'] / first['seconds']:,.0f} "
                f"members/s ({first['statements']:,} statements)")
            checks = await self.checks(now)
            began = time.monotonic()
            verified = await bulk.verify(self.url)
            self.timings["verify after"] = round(time.monotonic() - began, 1)
            second = await self.job(datetime.now(timezone.utc))
            say(f"second run: {second['processed']} lots in {second['seconds']:.2f} s ({second['statements']} statements)")
            after_second = await self.checks(now)
            plan = await self.explain_scan(datetime.now(timezone.utc))
            if second["first_statements"][:1] != [DUE_SCAN]:
                plan.insert(0, f"(the job's scan is now {second['first_statements'][:1]}, not the statement explained)")
        finally:
            if self.created:
                try:
                    await asyncio.shield(bulk.drop_database(args.postgres_url, self.name))
                except Exception as error:
                    problems.append(f"could not drop {self.name}: {error}")
        ok = (checks["due lots left with points"] == 0 and checks["lots not due that changed"] == 0
              and checks["members whose expiry entry is missing or wrong"] == 0
              and checks["members with more than one expiry entry"] == 0
              and checks["expiry entries"] == checks["members with due lots"] == before["members"]
              and checks["points expired (postings)"] == checks["points due before the job"] == before["points"]
              and checks["balances off their open lots"] == 0 and checks["accounts off their postings"] == 0
              and checks["balance.changed events added"] == before["members"]
              and first["processed"] == before["lots"] and verified["exit"] == 0
              and second["processed"] == 0 and after_second["entries added"] == checks["entries added"]
              and not seeded["shape_check"] and seeded["verify"]["exit"] == 0)
        machine["loadavg_at_end"] = os.getloadavg()
        rates = {"lots_per_second": round(first["processed"] / first["seconds"], 1),
                 "members_per_second": round(before["members"] / first["seconds"], 1),
                 "points_per_second": round(first["points"] / first["seconds"], 1)}
        report = {"kind": "expiry", "run_id": self.run_id, "database": self.name, "started_at": self.stamp, "machine": machine,
                  "settings": {k: v for k, v in vars(args).items() if k not in ("postgres_url", "redis_url")},
                  "seed": seeded, "due_before": before, "first_run": first, "rates": rates, "checks": checks,
                  "verify_after": verified, "second_run": second, "second_run_scan_plan": plan, "all_as_expected": ok,
                  "timings": self.timings, "clean_up_problems": problems,
                  "wall_seconds": round(time.monotonic() - self.started, 1)}
        for line in render(report):
            say(line)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.stamp}-expiry.json"
        path.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
        say(f"\nwrote {path.relative_to(REPO)}")
        return 0 if ok else 1


def render(report: dict) -> list[str]:
    m, first, second, rates = report["machine"], report["first_run"], report["second_run"], report["rates"]
    before = report["due_before"]
    lines = ["", "Expiry: expire_points over due lots (figures)",
             f"  {m['cpu_count']} CPUs, PostgreSQL {m['postgresql']}, commit {m['git_commit'][:10]}"
             f"{' (dirty)' if m['git_dirty'] else ''}, load average at start {m['loadavg_at_start'][0]:.2f}, "
             f"at end {m['loadavg_at_end'][0]:.2f}",
             f"  due before the job: {before['lots']:,} lots of {before['members']:,} members, {before['points']:,} points",
             "",
             f"  first run:  {first['processed']:,} lots expired, {first['points']:,} points, wall {first['seconds']:.1f} s",
             f"              {rates['lots_per_second']:,.0f} lots/s, {rates['members_per_second']:,.0f} members/s; "
             f"{first['statements']:,} statements ({first['statements'] / max(before['members'], 1):.2f} per member), "
             f"job process CPU {first['job_process_cpu_seconds']:.1f} s",
             f"  second run: {second['processed']} lots, wall {second['seconds']:.2f} s, {second['statements']} statements",
             "", "checks after the first run:"]
    lines += [f"  {k:<50} {v:,}" for k, v in report["checks"].items()]
    lines.append(f"  loyalty verify: {report['verify_after']['verdict']} ({report['verify_after']['seconds']} s)")
    lines.append("  " + ("ALL AS EXPECTED" if report["all_as_expected"] else "NOT AS EXPECTED: see the figures above"))
    lines += ["", "the job's scan for due lots once none is left (EXPLAIN ANALYZE of the second run's first step):"]
    lines += [f"  {line}" for line in report["second_run_scan_plan"]]
    if report["clean_up_problems"]:
        lines.append("CLEAN-UP PROBLEMS: " + "; ".join(report["clean_up_problems"]))
    else:
        lines.append(f"dropped the database {report['database']}")
    lines.append(f"wall time {report['wall_seconds']:.0f} s (seeding {report['timings'].get('seeding', 0):.0f} s)")
    return lines


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench.expiry", description=__doc__.split("\n")[0])
    top.add_argument("--members", type=bounded(int, 10, 10_000_000), default=100_000,
                     help="members written in bulk (default 100000)")
    top.add_argument("--lots", type=bounded(int, 10, 100_000_000), default=1_000_000,
                     help="due lots, one per old sale, spread over the members (default 1000000)")
    top.add_argument("--fresh", type=bounded(int, 0, 100), default=1,
                     help="recent sales per member whose lots are not due (default 1)")
    cli.add_postgres_url(top)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.postgres_url = cli.postgres_url(args)
    return cli.run(Bench(args).run)


if __name__ == "__main__":
    sys.exit(main())
