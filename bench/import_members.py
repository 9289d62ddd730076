"""Import bench: ``loyalty import members`` of a generated CSV on a throwaway PostgreSQL database.

    .venv/bin/python -m bench.import_members                 # 1,000,000 rows
    .venv/bin/python -m bench.import_members --rows 100000 --kill-at 0.5

It creates a database (``loyalty_bench_import_<random>`` beside ``--postgres-url``), migrates it,
creates a chain whose program gives 100 welcome points, writes N members to a CSV file (every 200th
row bad, every 100th a phone repeated from the row before, every 7th with opening points, growth
and stored value, every 3rd with its own card number), runs the real command
(``loyalty import members``, a child process, its progress on stderr) and prints members/s. With
``--kill-at F`` the first run is SIGKILLed once its checkpoint passes that share of the file and
the same command is run again, which must go on from the checkpoint. Then it checks the members,
the welcome entries and the ledger's sums with SQL and drops the database. The figures go to
``bench/results/<timestamp>-import-<rows>.json`` as well.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg

from gateway import db

SECRET = "bench-secret-0123456789"
LOYALTY = str(Path(sys.executable).with_name("loyalty"))
PROGRAM = {"behaviors": {"register": {"points": 100}}, "points": {"expiry": {"mode": "year_end", "years_after": 1}},
           "tiers": {"levels": [{"code": "regular", "name": "普通会员", "threshold": 0},
                                {"code": "silver", "name": "银卡", "threshold": 1000},
                                {"code": "gold", "name": "金卡", "threshold": 5000}]}}
HEADER = "phone,name,birthday,card_no,store_code,tier,points,growth,stored_value,stored_value_bonus,joined_at\n"


def write_csv(path: Path, rows: int) -> dict[str, int]:
    """``rows`` data rows; answers what the import should make of them."""
    expected = {"imported": 0, "skipped": 0, "rejected": 0, "points": 0}
    with open(path, "w", encoding="utf-8") as out:
        out.write(HEADER)
        for n in range(rows):
            phone = f"13{n // 100_000_000 % 10}{n % 100_000_000:08d}"
            if n % 200 == 199:
                out.write(f"1{n:010d}x,坏行,,,,,,,,,\n")
                expected["rejected"] += 1
                continue
            if n % 100 == 99:
                previous = n - 1
                phone = f"13{previous // 100_000_000 % 10}{previous % 100_000_000:08d}"
                expected["skipped"] += 1
            else:
                expected["imported"] += 1
            card = f"B{n:09d}" if n % 3 == 0 else ""
            opening = n % 7 == 0
            points, growth, sv = (n % 1000, n % 6000, 5000) if opening else ("", "", "")
            tier = "silver" if n % 11 == 0 else ""
            if opening and n % 100 != 99:
                expected["points"] += int(points)
            out.write(f"{phone},会员{n},1990-{n % 12 + 1:02d}-{n % 28 + 1:02d},{card},S01,{tier},{points},{growth},"
                      f"{sv},,2020-01-01\n")
    return expected


async def prepare(admin_url: str, name: str) -> tuple[str, int]:
    conn = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    await db.migrate(url)
    await db.open_database(url)
    try:
        from loyalty_core.chains import create_chain, create_store, put_program
        from loyalty_core.program import Program

        chain, _ = await create_chain("Import bench")
        await put_program(chain.id, Program.model_validate(PROGRAM))
        await create_store(chain.id, "S01", "Bench store", None)
    finally:
        await db.close_database()
    return url, chain.id


async def drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run_import(url: str, chain_id: int, csv_path: Path, batch: int, parallel: int, kill_at: float | None) -> tuple[int, float]:
    env = {**os.environ, "DATABASE_URL": url, "LOYALTY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    command = [LOYALTY, "import", "members", str(csv_path), "--chain", str(chain_id), "--batch-size", str(batch),
               "--parallel", str(parallel)]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    if kill_at is not None:
        checkpoint = csv_path.with_name(csv_path.name + ".checkpoint")
        total = sum(1 for _ in open(csv_path, "rb"))
        while child.poll() is None:
            time.sleep(0.2)
            try:
                line = json.loads(checkpoint.read_text())["line"]
            except (FileNotFoundError, ValueError):
                continue
            if line >= kill_at * total:
                child.send_signal(signal.SIGKILL)
                print(f"  killed the first run (SIGKILL) at checkpoint line {line:,}", flush=True)
                break
    out, _ = child.communicate()
    if out:
        print("  " + out.strip().replace("\n", "\n  "), flush=True)
    return child.returncode, time.perf_counter() - started


async def check(url: str, chain_id: int) -> dict[str, int]:
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        one = conn.fetchval
        return {
            "members": await one("SELECT count(*) FROM members WHERE chain_id = $1", chain_id),
            "distinct phones": await one("SELECT count(DISTINCT phone_hash) FROM members WHERE chain_id = $1", chain_id),
            "welcome entries": await one("SELECT count(*) FROM journal_entries WHERE chain_id = $1 AND key LIKE "
                                         "'welcome:%'", chain_id),
            "import entries": await one("SELECT count(*) FROM journal_entries WHERE chain_id = $1 AND kind = 'import'",
                                        chain_id),
            "points held": await one("SELECT coalesce(sum(balance), 0) FROM accounts WHERE chain_id = $1 "
                                     "AND kind = 'points'", chain_id),
            "entries not balancing": await one(
                "SELECT count(*) FROM (SELECT entry_id, unit FROM postings WHERE chain_id = $1 GROUP BY entry_id, unit "
                "HAVING sum(amount) <> 0) x", chain_id),
            "accounts off their postings": await one(
                "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) s FROM postings "
                "WHERE chain_id = $1 AND account_id IS NOT NULL GROUP BY account_id) p ON p.account_id = a.id "
                "WHERE a.chain_id = $1 AND a.balance <> coalesce(p.s, 0)", chain_id),
            "members whose lots differ": await one(
                "SELECT count(*) FROM accounts a LEFT JOIN (SELECT member_id, sum(remaining) s FROM points_lots "
                "WHERE chain_id = $1 GROUP BY member_id) l ON l.member_id = a.member_id "
                "WHERE a.chain_id = $1 AND a.kind = 'points' AND greatest(a.balance, 0) <> coalesce(l.s, 0)", chain_id),
        }
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_members", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=2, help="batches written at once (the command's --parallel)")
    parser.add_argument("--kill-at", type=float, default=None, metavar="F",
                        help="SIGKILL the first run at this share of the file (0-1), then resume")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args(argv)
    name = f"loyalty_bench_import_{uuid.uuid4().hex[:8]}"
    stamp, load_at_start, runs = datetime.now().strftime("%Y%m%d-%H%M%S"), os.getloadavg(), []
    with tempfile.TemporaryDirectory(prefix="loyalty-import-bench-") as tmp:
        csv_path = Path(tmp) / "members.csv"
        started = time.perf_counter()
        expected = write_csv(csv_path, args.rows)
        print(f"wrote {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s;"
              f" expected: {expected}", flush=True)
        try:
            url, chain_id = asyncio.run(prepare(args.postgres_url, name))
            print(f"database {name}, chain {chain_id}; importing with batches of {args.batch_size}", flush=True)
            code, seconds = run_import(url, chain_id, csv_path, args.batch_size, args.parallel, args.kill_at)
            total_seconds = seconds
            runs.append({"exit": code, "seconds": round(seconds, 1)})
            if args.kill_at is not None:
                print(f"  first run: exit {code} after {seconds:.1f} s; running the same command again", flush=True)
                code, seconds = run_import(url, chain_id, csv_path, args.batch_size, args.parallel, None)
                total_seconds += seconds
                runs.append({"exit": code, "seconds": round(seconds, 1)})
            figures = asyncio.run(check(url, chain_id))
        finally:
            asyncio.run(drop(args.postgres_url, name))
    print(f"exit {code}; {args.rows:,} rows in {total_seconds:.1f} s: {args.rows / total_seconds:,.0f} rows/s, "
          f"{figures['members'] / total_seconds:,.0f} members/s (whole command, start-up included)")
    for what, value in figures.items():
        print(f"  {what:<30} {value:,}")
    ok = (figures["members"] == figures["distinct phones"] == expected["imported"] == figures["welcome entries"]
          and figures["points held"] == expected["points"] + 100 * expected["imported"]
          and not figures["entries not balancing"] and not figures["accounts off their postings"]
          and not figures["members whose lots differ"])
    print("checks: " + ("all as expected" if ok else f"NOT as expected (expected {expected})"))
    print(f"dropped database {name}")
    write_result(stamp, args, expected, figures, runs, code, total_seconds, ok, load_at_start)
    return 0 if ok else 1


def write_result(stamp: str, args, expected: dict, figures: dict, runs: list[dict], code: int, seconds: float,
                 ok: bool, load_at_start) -> None:
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    report = {"kind": "import", "started_at": stamp,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "loadavg_at_start": load_at_start,
                          "loadavg_at_end": os.getloadavg(), "git_commit": commit},
              "settings": {k: v for k, v in vars(args).items() if k != "postgres_url"},
              "runs": runs, "exit": code, "seconds": round(seconds, 1),
              "rows_per_second": round(args.rows / seconds, 1),
              "members_per_second": round(figures["members"] / seconds, 1),
              "expected": expected, "figures": {k: int(v) for k, v in figures.items()}, "all_as_expected": ok}
    path = repo / "bench" / "results" / f"{stamp}-import-{args.rows}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path.relative_to(repo)}")


if __name__ == "__main__":
    sys.exit(main())
