"""The bench's seeded database: one chain, its program, a store, a terminal and members with history.

Seeding goes through the core's own functions (``create_chain``, ``put_program``, ``create_store``,
``create_terminal``, ``register_member``, ``adjust``, ``place_order``, ``refund_order``) with
``now`` set in the past, so that the history is what the gateway itself would have written over
the past year and ``loyalty verify`` accepts it. It is done once into a template database named
after a hash of the schema (``loyalty_core/migrations``), this file, ``bench/common.py`` and the
member count; every run then copies it (``CREATE DATABASE … TEMPLATE …``, a few seconds).

Per member ``i`` (deterministic, ``random.Random(i)``): phone ``139`` + 8 digits, card ``9`` + 11
digits, registered 30-360 days ago at the bench store; one adjustment of 2000 points ("opening
balance", one lot) a minute later; then 1-5 orders (1 in 20 members: 12-20, larger baskets, so
that some are silver) spread between registration and an hour ago, 3 in 10 of them redeeming 100
points; 1 in 10 members has one of their orders half refunded by amount a day after it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg

from . import common

SEED_VERSION = 1
TEMPLATE_PREFIX = "loyalty_bench_seed_"
HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE.parent / "loyalty_core" / "migrations"
PER_PROCESS_CONCURRENCY = 8


# A live database holds 48 h of answered Idempotency-Keys (the worker deletes older ones). The seed
# writes them too: planned against an empty table, the claim's and the answer's statements would
# keep a sequential scan's plan for as long as nothing analyzes the table again (autovacuum does,
# on a server where it runs), and the gateway would slow down with every key it stores.
IDEMPOTENCY_RECORDS = 20_000
RETAINED_KEYS = """
INSERT INTO idempotency_records (chain_id, key, fingerprint, state, token, status, body, locked_until, created_at)
SELECT $1, 'seed-' || g, md5(g::text) || md5(g::text), 'done', md5(g::text), 201, repeat('x', 600),
       now() - (g % 172800) * interval '1 second', now() - (g % 172800) * interval '1 second'
FROM generate_series(1, $2::int) g
"""


def seed_hash(members: int) -> str:
    """What the template depends on: the schema, how it is seeded, and how many members."""
    digest = hashlib.sha256(f"seed v{SEED_VERSION} members {members}\n".encode())
    for path in sorted(MIGRATIONS.glob("*.py")) + [HERE / "seed.py", HERE / "common.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


def asyncpg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def admin_execute(admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(asyncpg_url(admin_url), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def admin_fetch(admin_url: str, query: str, *args) -> list:
    conn = await asyncpg.connect(asyncpg_url(admin_url), timeout=10)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def read_meta(url: str) -> dict | None:
    """The seed's metadata (chain, terminal and its secret, members, points), None if incomplete."""
    try:
        conn = await asyncpg.connect(asyncpg_url(url), timeout=10)
    except (asyncpg.InvalidCatalogNameError, OSError):
        return None
    try:
        row = await conn.fetchrow("SELECT meta FROM bench_seed WHERE id = 1")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return json.loads(row["meta"]) if row else None


async def ensure_template(admin_url: str, members: int, processes: int, reseed: bool, say) -> tuple[str, dict]:
    """The template database for ``members`` members (seeded now if missing); its name and metadata."""
    name = TEMPLATE_PREFIX + seed_hash(members)
    existing = {r["datname"] for r in await admin_fetch(
        admin_url, "SELECT datname FROM pg_database WHERE datname LIKE $1", TEMPLATE_PREFIX + "%")}
    if name in existing and not reseed:
        meta = await read_meta(database_url(admin_url, name))
        if meta is not None:
            say(f"seed: template {name} (cached, seeded {meta['seeded_at']})")
            return name, meta
    building = f"{name}_b{uuid.uuid4().hex[:8]}"
    say(f"seed: no usable template {name}: seeding {members} members into {building} ({processes} processes)")
    # commits need not wait for the disk while seeding (a crash only loses a build that is redone)
    await admin_execute(admin_url, f'CREATE DATABASE "{building}"',
                        f'ALTER DATABASE "{building}" SET synchronous_commit = off')
    try:
        meta = await _seed(database_url(admin_url, building), members, processes, say)
        await admin_execute(admin_url, f'ALTER DATABASE "{building}" RESET synchronous_commit',
                            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                            f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    except BaseException:
        await asyncio.shield(admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
        raise
    for old in sorted(existing - {name}):  # templates of an older schema or seed, and abandoned builds
        if "_b" not in old.removeprefix(TEMPLATE_PREFIX):
            say(f"seed: dropping the outdated template {old}")
            await admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
    return name, meta


async def _seed(url: str, members: int, processes: int, say) -> dict:
    from gateway import db
    from loyalty_core.chains import create_chain, create_store, create_terminal, put_program
    from loyalty_core.crypto import Vault
    from loyalty_core.program import load_program

    started = time.monotonic()
    await db.migrate(url)
    await db.open_database(url)
    try:
        chain, _key = await create_chain("Bench")
        await put_program(chain.id, load_program(common.program()))
        store = await create_store(chain.id, common.STORE, "Bench store", None)
        issued = await create_terminal(chain.id, common.STORE, common.TERMINAL, Vault(common.SECRET))
    finally:
        await db.close_database()
    say(f"seed: chain {chain.id}, store {common.STORE}, terminal {issued.terminal.terminal_id}; members ...")
    seeded_at = datetime.now(timezone.utc)
    ranges = [(k * members // processes, (k + 1) * members // processes) for k in range(processes)]
    counts = await asyncio.gather(*(_seed_process(url, chain.id, store.id, lo, hi, seeded_at) for lo, hi in ranges))
    totals = {key: sum(c[key] for c in counts) for key in counts[0]}
    say(f"seed: {totals} in {time.monotonic() - started:.0f} s; verifying ...")
    await db.open_database(url, command_timeout=None)
    try:
        from loyalty_core.models import Account
        from loyalty_core.verify import verify

        differences = await verify()
        if differences:
            raise SystemExit(f"bench: the seeded ledger does not verify: {differences[:5]}")
        points = sum(a.balance for a in await Account.filter(kind="points"))
    finally:
        await db.close_database()
    meta = {"chain_id": chain.id, "store_id": store.id, "store": common.STORE,
            "terminal_id": issued.terminal.terminal_id, "terminal_secret": issued.secret, "members": members,
            "points_total": points, "seeded_at": seeded_at.isoformat(timespec="seconds"),
            "seed_seconds": round(time.monotonic() - started, 1), "history": totals}
    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        await conn.execute("CREATE TABLE bench_seed (id int PRIMARY KEY, meta jsonb NOT NULL)")
        await conn.execute("INSERT INTO bench_seed VALUES (1, $1)", json.dumps(meta))
        await conn.execute(RETAINED_KEYS, chain.id, IDEMPOTENCY_RECORDS)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    say(f"seed: done in {time.monotonic() - started:.0f} s")
    return meta


async def _seed_process(url: str, chain_id: int, store_id: int, lo: int, hi: int, t0: datetime) -> dict:
    """``python -m bench.seed``: members ``lo`` .. ``hi - 1`` with their history, in a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.seed", url, str(chain_id), str(store_id), str(lo), str(hi), t0.isoformat(),
        cwd=HERE.parent, stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled (Ctrl-C): this process's own child
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise SystemExit(f"bench: seeding members {lo}-{hi - 1} failed (exit {process.returncode})")
    return json.loads(out)


async def _seed_members(url: str, chain_id: int, store_id: int, lo: int, hi: int, t0: datetime) -> dict:
    from gateway import db
    from gateway.logging import configure
    from loyalty_core.chains import get_program
    from loyalty_core.crypto import Vault

    configure("WARNING")
    await db.open_database(url + ("&" if "?" in url else "?") + f"maxsize={PER_PROCESS_CONCURRENCY}")
    try:
        program = await get_program(chain_id)
        vault = Vault(common.SECRET)
        counts = {"members": 0, "adjustments": 0, "orders": 0, "redemptions": 0, "refunds": 0}
        indexes = iter(range(lo, hi))

        async def worker() -> None:
            for index in indexes:
                await _member_history(chain_id, store_id, index, program, vault, t0, counts)

        await asyncio.gather(*(worker() for _ in range(PER_PROCESS_CONCURRENCY)))
        return counts
    finally:
        await db.close_database()


async def _member_history(chain_id: int, store_id: int, index: int, program, vault, t0: datetime,
                          counts: dict) -> None:
    from loyalty_core import members, orders
    from loyalty_core.models import Member
    from loyalty_core.rules.pricing import Line

    rng = random.Random(index)
    joined = t0 - timedelta(days=rng.uniform(30, 360))
    member = await members.register_member(chain_id, members.NewMember(
        phone=common.phone(index), name=f"会员{index}", card_no=common.card(index), store_code=common.STORE,
        channel="pos"), program, vault, joined)
    counts["members"] += 1
    await members.adjust(chain_id, member.id, "points", common.OPENING_POINTS, "opening balance", "bench:seed",
                         program, joined + timedelta(minutes=1))
    counts["adjustments"] += 1
    heavy = rng.random() < 0.05
    count = rng.randint(12, 20) if heavy else rng.randint(1, 5)
    span = (t0 - timedelta(hours=1) - joined).total_seconds() - 3600
    times = sorted(joined + timedelta(hours=1, seconds=rng.uniform(0, span)) for _ in range(count))
    source = f"store:{store_id}"
    placed: list[tuple[str, int, datetime]] = []
    for number, at in enumerate(times):
        basket = rng.choice([3, 3, 1]) if heavy else rng.randrange(len(common.BASKETS))
        redeem = common.REDEEM if rng.random() < 0.3 else 0
        payable = common.SUBTOTALS[basket] - redeem
        txn_id = f"H{index}-{number}"
        fresh = await Member.get(id=member.id)  # its tier as the last order left it
        order = orders.OrderInput(
            source=source, txn_id=txn_id, occurred_at=at, store_id=store_id, member=fresh, redeem_points=redeem,
            lines=[Line(sku=item["sku"], category=item["category"], qty=item["qty"], unit_price=item["unit_price"],
                        amount=item["amount"]) for item in common.BASKETS[basket]],
            payments=[orders.Payment("wechat_pay", payable)], received_at=at + timedelta(seconds=2))
        await orders.place_order(chain_id, order, program, at + timedelta(seconds=2))
        counts["orders"] += 1
        counts["redemptions"] += bool(redeem)
        placed.append((txn_id, payable, at))
    if rng.random() < 0.1:
        txn_id, payable, at = rng.choice(placed)
        when = min(at + timedelta(days=1), t0 - timedelta(minutes=1))
        await orders.refund_order(chain_id, orders.RefundInput(source=source, txn_id=txn_id, refund_id="R1",
                                                               amount=payable // 2), program, when)
        counts["refunds"] += 1


if __name__ == "__main__":  # one seeding process: URL CHAIN_ID STORE_ID LO HI T0
    _url, _chain, _store, _lo, _hi, _t0 = sys.argv[1:7]
    print(json.dumps(asyncio.run(_seed_members(_url, int(_chain), int(_store), int(_lo), int(_hi),
                                               datetime.fromisoformat(_t0)))))
