"""Ledger history written in bulk, row for row in the shape ``loyalty_core`` writes it.

Through the HTTP API (or the core's functions) a sale costs milliseconds: a million of them would
take an hour. Here members and sales are written with a few ``COPY`` and ``INSERT … SELECT …
generate_series`` statements instead, as the core would have written them:

- a member, as ``members.register_member`` writes one: the member row (keyed phone hash, phone
  and name encrypted with the bench's ``LOYALTY_SECRET``, card number), its ``card`` identity and
  its five accounts at zero. The bench program gives no welcome points, so no welcome entry;
- a sale earning points, as ``orders.place_order`` writes one for a member named by phone, paid
  in full by WeChat Pay, without redemption or coupon: the order row (its priced lines and its
  stored result), one journal entry ``order:store:<store id>:<txn_id>`` with its four postings
  (points and growth, each against its chain ledger), one points lot (vested at the sale, its
  expiry by the program's rule), the sale added to the member's month and lifetime figures, and
  the member's accounts moved by the sums.

Neither writes outbox rows: the events of a long history were delivered and then deleted by the
worker's retention long ago (idempotency records likewise, after 48 h).

A sale is priced by the core's own rules (``rules.pricing``) for each basket and each campaign,
at the program's first level; which campaign a sale falls in (and its month, and its lot's expiry)
is worked out in SQL from the program on the chain's local calendar, and ``shape_check`` compares
a sample of rows with the core's Python functions. The tier multipliers and discounts a member
meets on the way up are not replayed: ``verify`` prices nothing, it checks that the ledger adds
up. After a load each member's tier is the level their window's figures earn now.

``shape_check`` also compares a sale placed through the core itself (``reference_sale``, on top
of the bulk rows) with a bulk sale of the same basket and campaign, column by column.
"""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from . import common

REPO = Path(__file__).resolve().parent.parent
LOYALTY = str(Path(sys.executable).with_name("loyalty"))
SOURCE_PREFIX = "store:"


# --- databases --------------------------------------------------------------------------------------
def database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


def asyncpg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_url(url), timeout=10, command_timeout=None)


async def admin(admin_url: str, *statements: str) -> None:
    conn = await connect(admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    await admin(admin_url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return database_url(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    await admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def database_size(admin_url: str, name: str) -> int:
    conn = await connect(admin_url)
    try:
        return int(await conn.fetchval("SELECT pg_database_size($1)", name))
    finally:
        await conn.close()


# --- the chain, through the core ----------------------------------------------------------------------
@dataclass
class Chain:
    chain_id: int
    store_id: int
    store_code: str
    terminal_id: str
    terminal_secret: str
    admin_key: str
    program: object  # loyalty_core.program.Program

    @property
    def source(self) -> str:
        return f"{SOURCE_PREFIX}{self.store_id}"


async def new_chain(url: str, name: str, program: dict) -> Chain:
    """Migrate ``url`` and create a chain, its program, store ``B01`` and terminal ``POS1`` with the
    core's own functions (as ``bench/import_members.py`` and ``bench/seed.py`` do)."""
    from gateway import db
    from loyalty_core.chains import create_chain, create_store, create_terminal, put_program
    from loyalty_core.crypto import Vault
    from loyalty_core.program import load_program

    await db.migrate(url)
    await db.open_database(url)
    try:
        chain, key = await create_chain(name)
        loaded = load_program(program)
        await put_program(chain.id, loaded)
        store = await create_store(chain.id, common.STORE, "Bench store", None)
        issued = await create_terminal(chain.id, common.STORE, common.TERMINAL, Vault(common.SECRET))
    finally:
        await db.close_database()
    return Chain(chain.id, store.id, common.STORE, issued.terminal.terminal_id, issued.secret, key.key, loaded)


async def register_through_core(url: str, chain: Chain, index: int, joined_at: datetime) -> int:
    """One member registered by ``members.register_member`` itself (the reference for the bulk rows)."""
    from gateway import db
    from loyalty_core import members
    from loyalty_core.crypto import Vault

    await db.open_database(url)
    try:
        member = await members.register_member(chain.chain_id, members.NewMember(
            phone=common.phone(index), name=f"会员{index}", card_no=common.card(index), store_code=chain.store_code,
            channel="pos"), chain.program, Vault(common.SECRET), joined_at)
    finally:
        await db.close_database()
    return member.id


async def reference_sale(url: str, chain: Chain, member_id: int, txn_id: str, at: datetime,
                         basket: int = 0) -> dict:
    """A sale placed by ``orders.place_order`` itself (paid in full by WeChat Pay), as seed.py places them."""
    from gateway import db
    from loyalty_core import orders
    from loyalty_core.models import Member
    from loyalty_core.rules.pricing import Line

    await db.open_database(url)
    try:
        member = await Member.get(id=member_id)
        lines = [Line(sku=i["sku"], category=i["category"], qty=i["qty"], unit_price=i["unit_price"],
                      amount=i["amount"]) for i in common.BASKETS[basket]]
        quote = await orders.quote(chain.chain_id, orders.OrderInput(
            source=chain.source, txn_id=txn_id, occurred_at=at, lines=lines, member=member), chain.program)
        placed = await orders.place_order(chain.chain_id, orders.OrderInput(
            source=chain.source, txn_id=txn_id, occurred_at=at, store_id=chain.store_id, member=member, lines=lines,
            payments=[orders.Payment("wechat_pay", quote.payable)], received_at=at + timedelta(seconds=2)),
            chain.program, at + timedelta(seconds=2))
    finally:
        await db.close_database()
    return placed.result


# --- ids ------------------------------------------------------------------------------------------------
async def reserve_ids(conn: asyncpg.Connection, table: str, count: int) -> int:
    """Moves ``table``'s id sequence on by ``count``; answers the id before the first one reserved
    (the bench is the database's only writer while it loads)."""
    sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
    row = await conn.fetchrow(f"SELECT last_value, is_called FROM {sequence}")
    before = int(row["last_value"]) if row["is_called"] else int(row["last_value"]) - 1
    if count:
        await conn.execute("SELECT setval($1, $2, true)", sequence, before + count)
    return before


# --- members ------------------------------------------------------------------------------------------
MEMBER_COLUMNS = ("id", "chain_id", "phone_hash", "phone_enc", "phone_last4", "name_enc", "birthday_enc", "card_no",
                  "store_code", "tier_code", "tier_since", "tags", "frozen", "frozen_reason", "erased_at", "created_at")


async def add_members(conn: asyncpg.Connection, chain: Chain, indexes: range, joined_at: datetime) -> list[int]:
    """Members ``indexes`` (phone ``common.phone(i)``, card ``common.card(i)``, name ``会员<i>``) as
    ``register_member`` writes them; answers their ids in the same order."""
    from loyalty_core.crypto import Vault
    from loyalty_core.ledger import MEMBER_ACCOUNTS

    vault = Vault(common.SECRET)
    level = chain.program.tiers.levels[0].code
    before = await reserve_ids(conn, "members", len(indexes))
    ids = [before + 1 + k for k in range(len(indexes))]
    rows = []
    for member_id, i in zip(ids, indexes):
        phone = common.phone(i)
        rows.append((member_id, chain.chain_id, vault.lookup_hash(chain.chain_id, phone), vault.encrypt(phone),
                     phone[-4:], vault.encrypt(f"会员{i}"), None, common.card(i), chain.store_code, level, joined_at,
                     "[]", False, None, None, joined_at))
    await conn.copy_records_to_table("members", records=rows, columns=MEMBER_COLUMNS)
    await conn.copy_records_to_table(
        "identities", columns=("chain_id", "member_id", "channel", "external_id", "created_at"),
        records=[(chain.chain_id, member_id, "card", common.card(i), joined_at) for member_id, i in zip(ids, indexes)])
    await conn.copy_records_to_table(
        "accounts", columns=("chain_id", "member_id", "kind", "balance"),
        records=[(chain.chain_id, member_id, kind, 0) for member_id in ids for kind in MEMBER_ACCOUNTS])
    return ids


# --- sales --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """``entries`` sales of one member, evenly spaced from ``first_at`` to ``last_at``."""

    member_id: int
    entries: int
    first_at: datetime
    last_at: datetime


def _campaign_case(program) -> str:
    """SQL for ``rules.pricing.active_campaign`` on ``local`` (a timestamp on the chain's calendar):
    the 1-based index of the active campaign with the largest factor (the first on ties), 0 for none."""
    ranked = sorted(enumerate(program.points.campaigns), key=lambda item: (-item[1].factor, item[0]))
    whens = []
    for index, campaign in ranked:
        tests = []
        if campaign.days_of_month is not None:
            tests.append(f"extract(day FROM local)::int = ANY(ARRAY{list(campaign.days_of_month)}::int[])")
        if campaign.weekdays is not None:
            tests.append(f"extract(isodow FROM local)::int = ANY(ARRAY{list(campaign.weekdays)}::int[])")
        if campaign.hours is not None:
            start, end = ((int(p[:2]) * 60 + int(p[3:])) for p in campaign.hours.split("-"))
            minute = "(extract(hour FROM local)::int * 60 + extract(minute FROM local)::int)"
            tests.append(f"{minute} >= {start} AND {minute} < {end}")
        whens.append(f"WHEN {' AND '.join(tests) or 'true'} THEN {index + 1}")
    return f"CASE {' '.join(whens)} ELSE 0 END" if whens else "0"


def _expiry_sql(program, column: str) -> str:
    """SQL for ``rules.lots.lot_expiry`` of a lot vested at ``column``."""
    expiry, tz = program.points.expiry, program.timezone
    if expiry.mode == "never":
        return "NULL::timestamptz"
    local = f"({column} AT TIME ZONE '{tz}')"
    if expiry.mode == "year_end":
        return (f"(make_date(extract(year FROM {local})::int + {expiry.years_after + 1}, 1, 1)::timestamp "
                f"AT TIME ZONE '{tz}')")
    return f"((({local})::date + interval '{int(expiry.months)} months')::date + 1)::timestamp AT TIME ZONE '{tz}'"


def prices(program) -> list[tuple]:
    """(basket, campaign, subtotal, payable, points, growth, campaign name, priced lines as JSON) for
    every basket of ``common.BASKETS`` and every campaign (0: none), by the core's pricing rules at
    the program's first level."""
    import orjson

    from loyalty_core.orders import _line_json
    from loyalty_core.rules import pricing

    level = program.tiers.levels[0]
    out = []
    for basket, items in enumerate(common.BASKETS):
        lines = [pricing.Line(sku=i["sku"], category=i["category"], qty=i["qty"], unit_price=i["unit_price"],
                              amount=i["amount"]) for i in items]
        # any instant prices the lines alike; the campaign only changes the points
        quote = pricing.price_order(lines, program, level, 0, 0, datetime(2026, 1, 5, 3, 0, tzinfo=ZoneInfo("UTC")))
        choices = [(0, None, pricing.Decimal(1))] + [(i + 1, c.name, c.factor)
                                                      for i, c in enumerate(program.points.campaigns)]
        for campaign, name, factor in choices:
            earned = pricing.earn_points(quote.lines, program.points, level.earn_multiplier, factor)
            out.append((basket, campaign, quote.subtotal, quote.payable, earned, quote.growth_to_earn, name,
                        orjson.dumps([_line_json(line) for line in quote.lines]).decode()))
    return out


async def add_sales(conn: asyncpg.Connection, chain: Chain, spans: list[Span], txn_prefix: str = "H") -> dict:
    """The sales of ``spans`` (txn_id ``<prefix><member id>-<n>``, basket ``(member id + n) % 4``), with
    everything ``place_order`` writes for them but the outbox; journal, order and lot ids follow
    the sales' times across members. Answers what was written."""
    program = chain.program
    if program.points.pending_days:
        raise SystemExit("bench: the bulk sales assume points available at once (pending_days 0)")
    total = sum(span.entries for span in spans)
    if not total:
        return {"sales": 0}
    started = time.monotonic()
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET work_mem = '256MB'")
    await conn.execute("DROP TABLE IF EXISTS bulk_plan, bulk_prices, bulk_sales")
    await conn.execute("CREATE TEMP TABLE bulk_plan (member_id bigint, entries int, first_at timestamptz, "
                       "last_at timestamptz)")
    await conn.copy_records_to_table("bulk_plan", records=[(s.member_id, s.entries, s.first_at, s.last_at)
                                                           for s in spans if s.entries])
    await conn.execute("CREATE TEMP TABLE bulk_prices (basket int, campaign int, subtotal bigint, payable bigint, "
                       "points bigint, growth bigint, campaign_name text, lines jsonb)")
    await conn.executemany("INSERT INTO bulk_prices VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)", prices(program))
    order0 = await reserve_ids(conn, "orders", total)
    entry0 = await reserve_ids(conn, "journal_entries", total)
    tz = program.timezone
    level = program.tiers.levels[0]
    steps: dict[str, float] = {}

    async def step(name: str, sql: str, *args) -> None:
        began = time.monotonic()
        await conn.execute(sql, *args)
        steps[name] = round(time.monotonic() - began, 1)

    # The foreign-key triggers are the load's largest cost (a look-up per key of every row, 3 per
    # posting): they are off for this session while it loads (superuser only; otherwise they run),
    # and every foreign key of the tables written is checked afterwards in one anti-join each.
    try:
        await conn.execute("SET session_replication_role = replica")
        triggers_off = True
    except asyncpg.InsufficientPrivilegeError:
        triggers_off = False
    async with conn.transaction():
        # every sale: its member, number, time, ids, month, basket and campaign, priced, with the
        # member's balances just after it (the order's stored answer shows them)
        await step("sales", f"""
CREATE TEMP TABLE bulk_sales AS
WITH x AS (
  SELECT p.member_id, s.seq,
         p.first_at + (p.last_at - p.first_at) * ((s.seq - 1)::float8 / greatest(p.entries - 1, 1)) AS at
  FROM bulk_plan p CROSS JOIN LATERAL generate_series(1, p.entries) AS s(seq)
), y AS (
  SELECT x.*, row_number() OVER (ORDER BY at, member_id, seq) AS n, (at AT TIME ZONE '{tz}') AS local FROM x
), z AS (
  SELECT y.member_id, y.seq, y.at, y.n,
         (extract(year FROM local)::int * 100 + extract(month FROM local)::int) AS period,
         ((y.member_id + y.seq) % {len(common.BASKETS)})::int AS basket, {_campaign_case(program)} AS campaign
  FROM y
), b AS (
  SELECT member_id,
         max(id) FILTER (WHERE kind = 'points') AS points_account,
         max(id) FILTER (WHERE kind = 'growth') AS growth_account,
         max(balance) FILTER (WHERE kind = 'points') AS points_before,
         max(balance) FILTER (WHERE kind = 'growth') AS growth_before,
         max(balance) FILTER (WHERE kind = 'points_pending') AS pending,
         max(balance) FILTER (WHERE kind = 'sv_principal') AS sv_principal,
         max(balance) FILTER (WHERE kind = 'sv_bonus') AS sv_bonus
  FROM accounts WHERE chain_id = $1 AND member_id IN (SELECT member_id FROM bulk_plan) GROUP BY member_id
)
SELECT z.*, $2::bigint + z.n AS order_id, $3::bigint + z.n AS entry_id,
       $4::text || z.member_id || '-' || z.seq AS txn_id,
       pr.subtotal, pr.payable, pr.points, pr.growth, pr.campaign_name, pr.lines,
       b.points_account, b.growth_account, b.pending, b.sv_principal, b.sv_bonus,
       b.points_before + SUM(pr.points) OVER w AS points_after,
       b.growth_before + SUM(pr.growth) OVER w AS growth_after
FROM z JOIN bulk_prices pr USING (basket, campaign) JOIN b USING (member_id)
WINDOW w AS (PARTITION BY z.member_id ORDER BY z.seq)
""", chain.chain_id, order0, entry0, txn_prefix)
        source = chain.source
        await step("orders", """
INSERT INTO orders (id, chain_id, store_id, channel, source, txn_id, member_id, member_code, occurred_at, received_at,
  period, tier_before, tier_after, subtotal, tier_discount, coupon_discount, points_discount, payable, points_redeemed,
  points_earned, points_pending_until, stored_value_principal, stored_value_bonus, growth_earned, lines, payments,
  coupons, result, refunded_amount, refund_state, created_at)
SELECT order_id, $1, $2, 'pos', $3::text, txn_id, member_id, NULL, at, at + interval '2 seconds',
  period, $4::text, NULL, subtotal, 0, 0, 0, payable, 0,
  points, NULL, 0, 0, growth, lines, jsonb_build_array(jsonb_build_object('method', 'wechat_pay', 'amount', payable)),
  '[]'::jsonb,
  jsonb_build_object('order_id', order_id, 'txn_id', txn_id, 'member_id', member_id, 'subtotal', subtotal,
    'tier_discount', 0, 'coupon_discount', 0, 'points_discount', 0, 'payable', payable, 'points_redeemed', 0,
    'points_earned', points, 'points_pending_until', NULL, 'campaign', campaign_name,
    'balances', jsonb_build_object('points', points_after, 'pending_points', pending, 'growth', growth_after,
      'stored_value', sv_principal + sv_bonus, 'stored_value_principal', sv_principal,
      'stored_value_bonus', sv_bonus),
    'tier', jsonb_build_object('code', $4::text, 'name', $5::text, 'changed', false), 'duplicate', false),
  0, '{}'::jsonb, at + interval '2 seconds'
FROM bulk_sales ORDER BY n
""", chain.chain_id, chain.store_id, source, level.code, level.name)
        await step("journal_entries", """
INSERT INTO journal_entries (id, chain_id, key, kind, member_id, channel, actor, reason, ref, occurred_at, created_at)
SELECT entry_id, $1, 'order:' || $2::text || ':' || txn_id, 'order', member_id, 'pos', NULL, NULL, 'order:' || order_id,
  at, at + interval '2 seconds'
FROM bulk_sales ORDER BY n
""", chain.chain_id, source)
        # the ledger's legs in _order_legs' order, those of amount 0 left out (as ledger.post does)
        await step("postings", """
INSERT INTO postings (entry_id, chain_id, account_id, ledger, unit, amount)
SELECT s.entry_id, $1, CASE l.leg WHEN 1 THEN s.points_account WHEN 3 THEN s.growth_account END, l.ledger, l.unit,
  CASE l.leg WHEN 1 THEN s.points WHEN 2 THEN -s.points WHEN 3 THEN s.growth ELSE -s.growth END
FROM bulk_sales s CROSS JOIN (VALUES (1, 'points', 'points'), (2, 'points_issued', 'points'),
                                     (3, 'growth', 'growth'), (4, 'growth_issued', 'growth')) AS l(leg, ledger, unit)
WHERE (l.leg <= 2 AND s.points <> 0) OR (l.leg >= 3 AND s.growth <> 0)
ORDER BY s.n, l.leg
""", chain.chain_id)
        # points.add_lot: remaining = min(amount, max(balance after, 0))
        await step("points_lots", f"""
INSERT INTO points_lots (chain_id, member_id, entry_id, order_id, amount, remaining, vested_at, expires_at)
SELECT $1, member_id, entry_id, order_id, points, LEAST(points, GREATEST(points_after, 0)), at,
  {_expiry_sql(program, 'at')}
FROM bulk_sales WHERE points > 0 ORDER BY n
""", chain.chain_id)
        # tiers.add_figures: the month's row and the lifetime row (period 0)
        await step("member_figures", """
INSERT INTO member_figures (chain_id, member_id, period, growth, points_earned, spend, stored_value, orders)
SELECT $1, member_id, q.p, SUM(growth), SUM(points), SUM(payable), 0, COUNT(*)
FROM bulk_sales CROSS JOIN LATERAL (VALUES (period), (0)) AS q(p) GROUP BY member_id, q.p
ON CONFLICT (chain_id, member_id, period) DO UPDATE SET growth = member_figures.growth + excluded.growth,
  points_earned = member_figures.points_earned + excluded.points_earned,
  spend = member_figures.spend + excluded.spend, orders = member_figures.orders + excluded.orders
""", chain.chain_id)
        await step("accounts", """
UPDATE accounts a SET balance = a.balance + s.amount
FROM (SELECT member_id, 'points' AS kind, SUM(points) AS amount FROM bulk_sales GROUP BY member_id
      UNION ALL SELECT member_id, 'growth', SUM(growth) FROM bulk_sales GROUP BY member_id) s
WHERE a.chain_id = $1 AND a.member_id = s.member_id AND a.kind = s.kind
""", chain.chain_id)
    if triggers_off:
        await conn.execute("SET session_replication_role = DEFAULT")
        began = time.monotonic()
        broken = await foreign_keys_broken(conn, WRITTEN)
        steps["foreign key checks"] = round(time.monotonic() - began, 1)
        if broken:
            raise SystemExit(f"bench: the bulk rows break foreign keys: {broken}")
    counts = {"sales": total, "seconds": round(time.monotonic() - started, 1), "steps": steps,
              "foreign keys": "checked after the load" if triggers_off else "checked row by row"}
    await conn.execute("DROP TABLE bulk_plan, bulk_prices, bulk_sales")
    return counts


WRITTEN = ("orders", "journal_entries", "postings", "points_lots", "member_figures", "accounts")


async def foreign_keys_broken(conn: asyncpg.Connection, tables: tuple[str, ...]) -> dict[str, int]:
    """Every foreign key of ``tables`` (read from the catalogue), checked set-wise: the rows whose
    key names no row; answers the broken constraints with their counts (empty: all hold)."""
    keys = await conn.fetch("""
SELECT c.conname, child.relname AS child, ca.attname AS column, parent.relname AS parent, pa.attname AS target
FROM pg_constraint c
JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid
JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = c.conkey[1]
JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1 AND child.relname = ANY($1::text[])
  AND child.relnamespace = 'public'::regnamespace
""", list(tables))
    broken = {}
    for key in keys:
        count = await conn.fetchval(
            f'SELECT count(*) FROM "{key["child"]}" c WHERE c."{key["column"]}" IS NOT NULL AND NOT EXISTS '
            f'(SELECT 1 FROM "{key["parent"]}" p WHERE p."{key["target"]}" = c."{key["column"]}")')
        if count:
            broken[key["conname"]] = int(count)
    return broken


async def settle_tiers(conn: asyncpg.Connection, chain: Chain, now: datetime) -> dict[str, int]:
    """Each member's tier as the level their window's figures earn at ``now`` (levels that need a
    manual review left out, as ``tiers.earned_level`` does), entered ``now``; answers members per level."""
    from loyalty_core import tiers

    program = chain.program
    first, last = tiers.window(program, now)
    metric = tiers.metric_column(program)
    levels = [lv for lv in program.tiers.levels if not lv.manual_review or lv.threshold == 0]
    case = "CASE " + " ".join(f"WHEN SUM(f.{metric}) >= {lv.threshold} THEN '{lv.code}'" for lv in reversed(levels))
    await conn.execute(f"""
UPDATE members mb SET tier_code = t.code, tier_since = $4
FROM (SELECT f.member_id, {case} END AS code FROM member_figures f
      WHERE f.chain_id = $1 AND f.period BETWEEN $2 AND $3 GROUP BY f.member_id) t
WHERE mb.id = t.member_id AND mb.tier_code IS DISTINCT FROM t.code
""", chain.chain_id, first, last, now)
    rows = await conn.fetch("SELECT tier_code, count(*) AS n FROM members WHERE chain_id = $1 GROUP BY tier_code",
                            chain.chain_id)
    return {r["tier_code"]: int(r["n"]) for r in sorted(rows, key=lambda r: r["tier_code"])}


async def vacuum_analyze(conn: asyncpg.Connection) -> None:
    """What autovacuum does to a long-lived database (statistics, visibility map), done now."""
    await conn.execute("VACUUM ANALYZE")


async def table_counts(conn: asyncpg.Connection, chain_id: int) -> dict[str, int]:
    counts = {}
    for table in ("members", "accounts", "journal_entries", "postings", "points_lots", "orders", "member_figures",
                  "outbox_events"):
        counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE chain_id = $1", chain_id))
    return counts


# --- checks --------------------------------------------------------------------------------------------
async def shape_check(conn: asyncpg.Connection, chain: Chain, real_txn: str, sample: int = 2000) -> list[str]:
    """Differences between the bulk rows and what the core wrote: the sale ``real_txn`` placed
    through ``orders.place_order`` against a bulk sale of the same basket and campaign, the member
    registered through the core against a bulk member, and a sample of bulk rows against the
    core's Python rules (campaign, month, lot expiry). Empty when the shapes agree."""
    from loyalty_core.rules.lots import lot_expiry
    from loyalty_core.rules.pricing import active_campaign
    from loyalty_core.tiers import period_of

    program, found = chain.program, []
    real = await conn.fetchrow("SELECT * FROM orders WHERE chain_id = $1 AND txn_id = $2", chain.chain_id, real_txn)
    if real is None:
        return [f"no order {real_txn}"]
    twin = await conn.fetchrow(
        "SELECT * FROM orders WHERE chain_id = $1 AND member_id <> $5 AND lines = $3::jsonb AND id <> $2 AND "
        "result->'campaign' IS NOT DISTINCT FROM $4::jsonb ORDER BY id DESC LIMIT 1",
        chain.chain_id, real["id"], real["lines"], _json_field(real["result"], "campaign"), real["member_id"])
    if twin is None:
        return [f"no bulk order of the same basket and campaign as {real_txn}"]
    varying = {"id", "txn_id", "member_id", "occurred_at", "received_at", "created_at", "period", "result"}
    for column in real.keys():
        if column not in varying and real[column] != twin[column]:
            found.append(f"orders.{column}: core {real[column]!r}, bulk {twin[column]!r}")
    import orjson

    real_result, twin_result = orjson.loads(real["result"]), orjson.loads(twin["result"])
    if set(real_result) != set(twin_result) or set(real_result["balances"]) != set(twin_result["balances"]):
        found.append(f"orders.result keys: core {sorted(real_result)}, bulk {sorted(twin_result)}")
    for key in set(real_result) - {"order_id", "txn_id", "member_id", "balances"}:
        if real_result.get(key) != twin_result.get(key):
            found.append(f"orders.result.{key}: core {real_result.get(key)!r}, bulk {twin_result.get(key)!r}")
    if twin_result["order_id"] != twin["id"] or twin_result["member_id"] != twin["member_id"]:
        found.append("orders.result names another order or member")
    shapes = []
    for order in (real, twin):
        entry = await conn.fetchrow("SELECT * FROM journal_entries WHERE chain_id = $1 AND ref = $2",
                                    chain.chain_id, f"order:{order['id']}")
        legs = await conn.fetch("SELECT p.ledger, p.unit, p.amount, a.kind, a.member_id FROM postings p "
                                "LEFT JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = $1 ORDER BY p.id",
                                entry["id"])
        lot = await conn.fetchrow("SELECT * FROM points_lots WHERE entry_id = $1", entry["id"])
        if entry["key"] != f"order:{chain.source}:{order['txn_id']}" or entry["occurred_at"] != order["occurred_at"]:
            found.append(f"journal entry {entry['id']}: key {entry['key']}, occurred_at {entry['occurred_at']}")
        if any(leg["kind"] is not None and leg["member_id"] != order["member_id"] for leg in legs):
            found.append(f"journal entry {entry['id']}: a posting on another member's account")
        if lot is None or lot["order_id"] != order["id"] or lot["member_id"] != order["member_id"] or \
                lot["vested_at"] != order["occurred_at"] or \
                lot["expires_at"] != lot_expiry(order["occurred_at"], program.points.expiry, ZoneInfo(program.timezone)):
            found.append(f"lot of order {order['id']}: {dict(lot) if lot else None}")
        shapes.append(({k: entry[k] for k in ("kind", "channel", "actor", "reason")},
                       [(leg["ledger"], leg["unit"], leg["amount"], leg["kind"]) for leg in legs],
                       (lot["amount"], lot["remaining"] == lot["amount"]) if lot else None))
    for what, core, bulk in zip(("journal entry", "postings", "lot"), shapes[0], shapes[1]):
        if core != bulk:
            found.append(f"{what}: core {core}, bulk {bulk}")
    # the member registered through the core against a bulk member
    members = await conn.fetch(
        "SELECT m.*, (SELECT array_agg(channel ORDER BY id) FROM identities i WHERE i.member_id = m.id) AS ids, "
        "(SELECT array_agg(kind ORDER BY id) FROM accounts a WHERE a.member_id = m.id) AS kinds "
        "FROM members m WHERE m.id IN ($1, $2)", real["member_id"], twin["member_id"])
    if len(members) == 2:
        a, b = members
        for column in a.keys():
            if (a[column] is None) != (b[column] is None):
                found.append(f"members.{column}: one is null, the other not")
        for column in ("store_code", "tags", "frozen", "ids", "kinds"):
            if a[column] != b[column]:
                found.append(f"members.{column}: {a[column]!r} / {b[column]!r}")
    # a sample of bulk sales against the core's Python rules
    rows = await conn.fetch(
        "SELECT o.occurred_at, o.period, o.result->>'campaign' AS campaign, l.expires_at FROM orders o "
        "JOIN points_lots l ON l.order_id = o.id WHERE o.chain_id = $1 AND o.id <> $2 "
        "ORDER BY random() LIMIT $3", chain.chain_id, real["id"], sample)
    tz = ZoneInfo(program.timezone)
    wrong = 0
    for row in rows:
        name, _ = active_campaign(program.points.campaigns, row["occurred_at"], tz)
        expected = (period_of(row["occurred_at"], program), name, lot_expiry(row["occurred_at"], program.points.expiry, tz))
        if expected != (row["period"], row["campaign"], row["expires_at"]):
            wrong += 1
            if wrong <= 3:
                found.append(f"bulk sale at {row['occurred_at']}: period/campaign/expiry {tuple(row)[1:]}, "
                             f"the core's rules say {expected}")
    if wrong > 3:
        found.append(f"... {wrong} of {len(rows)} sampled bulk sales differ from the core's rules")
    return found


def _json_field(raw: str, key: str) -> str:
    import orjson

    return orjson.dumps(orjson.loads(raw).get(key)).decode()


async def verify(url: str) -> dict:
    """``loyalty verify`` on the database (a child process, as an operator runs it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "LOYALTY_SECRET")}
    env.update(DATABASE_URL=url, LOG_LEVEL="WARNING")
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(LOYALTY, "verify", env=env, cwd=REPO,
                                                   stdout=asyncio.subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    return {"exit": process.returncode, "verdict": lines[-1] if lines else f"exit {process.returncode}",
            "differences": lines[:-1][:20], "seconds": round(time.monotonic() - started, 1)}


def spread(members: list[int], entries: int) -> list[tuple[int, int]]:
    """``entries`` shared out over ``members`` as evenly as can be (the first ones get one more)."""
    if not members:
        return []
    each, extra = divmod(entries, len(members))
    return [(m, each + (1 if k < extra else 0)) for k, m in enumerate(members)]


def jitter(seed: int, low: float, high: float) -> float:
    return random.Random(seed).uniform(low, high)
