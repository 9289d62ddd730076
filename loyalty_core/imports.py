"""Bringing a chain's members over from another loyalty system: ``loyalty import members FILE.csv``.

One CSV row is one member (the columns are in docs/import.md). A row becomes what registration
makes (the member, their card identity, five accounts, the welcome points once per phone ever)
plus one journal entry of kind ``import`` for the opening balances, so the ledger balances and
``loyalty verify`` stays clean.

- **All or nothing per row.** Rows are written in batches, one transaction each, with multi-row
  INSERTs. If the database refuses a batch (say a card number taken by an identity the checks
  did not see), every row of it is written again alone: the refused row is reported and the
  others land.
- **A phone that is a member already is skipped and reported**, never imported twice: the
  batch reads the phones it holds first, and the insert itself does nothing on a unique
  conflict (a member registered at a till meanwhile).
- **Bad rows are reported with their line number** and skipped; the import goes on.
- **Resumable.** After each committed batch a checkpoint file records the line reached, the
  byte offset and a SHA-256 of the file up to it. Running the same import again goes on after
  that line, and refuses if the file changed before it. A crash between a commit and its
  checkpoint only means that batch is read again, and its members are then skipped as existing.
"""
from __future__ import annotations

import asyncio
import csv
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time as clock_time
from pathlib import Path
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

import orjson

from tortoise.connection import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import sql, tiers
from .bounds import MAX_COUNT, MAX_FEN, is_phone
from .chains import get_program
from .clock import Clock, utc
from .crypto import Vault
from .errors import LoyaltyError
from .ledger import MEMBER_ACCOUNTS, Leg, check_balanced, unit_of
from .members import shown_balances
from .models import Chain, Store
from .program import Program
from .rules.lots import lot_expiry

COLUMNS = ("phone", "name", "birthday", "card_no", "store_code", "tier", "points", "growth", "stored_value",
           "stored_value_bonus", "joined_at")
CHANNEL = "import"
ACTOR = "cli:import"
DEFAULT_BATCH = 1000
DEADLOCK_RETRIES = 3
MAX_PARAMS = 30_000  # per statement: PostgreSQL's protocol and SQLite both stop at 32,766
CARD = re.compile(r"^[A-Za-z0-9-]{4,32}$")
DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
DIGITS = re.compile(r"^[0-9]{1,19}$")
# Opening balances: each member account and the chain-level ledger that takes the other side.
OPENING = (("points", "points_adjusted"), ("growth", "growth_issued"), ("sv_principal", "sv_adjusted"),
           ("sv_bonus", "bonus_adjusted"))


class ImportRefused(LoyaltyError):
    """The file as a whole cannot be imported (its header, its checkpoint); nothing was written."""

    code, status, title = "import_refused", 422, "Import refused"


# --- one row -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberRow:
    line: int
    phone: str
    name: str | None = None
    birthday: date | None = None
    card_no: str | None = None
    store_code: str | None = None
    tier: str | None = None
    points: int = 0
    growth: int = 0
    stored_value: int = 0
    stored_value_bonus: int = 0
    joined_at: datetime | None = None


@dataclass(frozen=True)
class RowProblem:
    """A row that was not imported: ``rejected`` (bad data) or ``skipped`` (a member already)."""

    line: int
    outcome: str
    field: str
    reason: str


class BadRow(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def read_header(fields: list[str]) -> list[str]:
    """The header's column names (case and surrounding spaces ignored); refuses unknown,
    repeated or missing required columns before anything is written."""
    names = [name.strip().lower() for name in fields]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise ImportRefused(f"unknown column {unknown[0]!r}; the columns are: {', '.join(COLUMNS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ImportRefused(f"column {repeated[0]!r} appears twice in the header")
    if "phone" not in names:
        raise ImportRefused("the header has no phone column (it is required)")
    return names


class RowReader:
    """Turns one CSV record into a ``MemberRow``, or raises ``BadRow`` with the field and reason.
    The checks are registration's (API.md's phone, card and name rules) plus the opening figures'."""

    def __init__(self, columns: list[str], program: Program, store_codes: set[str], now: datetime,
                 encoding: str) -> None:
        self.columns = columns
        self.program = program
        self.store_codes = store_codes
        self.levels = {level.code for level in program.tiers.levels}
        self.zone = ZoneInfo(program.timezone)
        self.now = now
        self.encoding = encoding

    def read(self, line: int, fields: list[str]) -> MemberRow:
        if len(fields) != len(self.columns):
            raise BadRow("(row)", f"has {len(fields)} fields, the header has {len(self.columns)}")
        cells = {}
        for name, value in zip(self.columns, fields):
            if any("\udc80" <= char <= "\udcff" for char in value):
                raise BadRow(name, f"is not valid {self.encoding} text (see --encoding)")
            if "\x00" in value:
                raise BadRow(name, "contains a NUL character")
            if value != "":
                cells[name] = value
        phone = cells.get("phone")
        if phone is None or not is_phone(phone):
            raise BadRow("phone", "must be an 11-digit mainland mobile number in ASCII digits")
        return MemberRow(
            line=line, phone=phone, name=self._name(cells.get("name")), birthday=self._birthday(cells.get("birthday")),
            card_no=self._card(cells.get("card_no")), store_code=self._store(cells.get("store_code")),
            tier=self._tier(cells.get("tier")), points=self._count(cells, "points", MAX_COUNT),
            growth=self._count(cells, "growth", MAX_COUNT), stored_value=self._count(cells, "stored_value", MAX_FEN),
            stored_value_bonus=self._count(cells, "stored_value_bonus", MAX_FEN),
            joined_at=self._joined(cells.get("joined_at")),
        )

    @staticmethod
    def _name(value: str | None) -> str | None:
        if value is not None and len(value) > 50:
            raise BadRow("name", "is longer than 50 characters")
        return value

    def _birthday(self, value: str | None) -> date | None:
        if value is None:
            return None
        day = _date(value, "birthday")
        if not date(1900, 1, 1) <= day <= self.now.astimezone(self.zone).date():
            raise BadRow("birthday", "must lie between 1900-01-01 and today")
        return day

    @staticmethod
    def _card(value: str | None) -> str | None:
        if value is not None and not CARD.match(value):
            raise BadRow("card_no", "must be 4-32 characters of A-Z, a-z, 0-9 and '-'")
        return value

    def _store(self, value: str | None) -> str | None:
        if value is not None and value not in self.store_codes:
            raise BadRow("store_code", f"no store {value!r} in this chain")
        return value

    def _tier(self, value: str | None) -> str | None:
        if value is not None and value not in self.levels:
            raise BadRow("tier", f"no level {value!r} in the program; levels: {', '.join(sorted(self.levels))}")
        return value

    @staticmethod
    def _count(cells: dict[str, str], name: str, limit: int) -> int:
        value = cells.get(name)
        if value is None:
            return 0
        if not DIGITS.match(value) or int(value) > limit:
            raise BadRow(name, f"must be a whole number from 0 to {limit} in ASCII digits")
        return int(value)

    def _joined(self, value: str | None) -> datetime | None:
        if value is None:
            return None
        if DAY.match(value):
            moment = datetime.combine(_date(value, "joined_at"), clock_time(0), self.zone)
        else:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None or not value.isascii():
                raise BadRow("joined_at", "must be a date (YYYY-MM-DD) or an RFC 3339 time with an offset")
        if moment > self.now:
            raise BadRow("joined_at", "lies in the future")
        return utc(moment)


def _date(value: str, name: str) -> date:
    try:
        if not DAY.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadRow(name, "must be a date as YYYY-MM-DD") from None


# --- one batch -----------------------------------------------------------------------------------

@dataclass
class BatchOutcome:
    imported: int = 0
    welcomed: int = 0
    problems: list[RowProblem] = field(default_factory=list)


@dataclass
class _Member:
    """A row on its way in: what it will hold, and the ids the database gives it."""

    row: MemberRow
    phone_hash: str
    card_no: str
    welcome: int
    tier: str
    id: int = 0
    entries: list[tuple[str, str, list[Leg]]] = field(default_factory=list)  # (key, kind, legs)
    entry_ids: list[int] = field(default_factory=list)

    def balances(self) -> dict[str, int]:
        raw = dict.fromkeys(MEMBER_ACCOUNTS, 0)
        for _, _, legs in self.entries:
            for leg in legs:
                if leg.member_id is not None:
                    raw[leg.ledger] += leg.amount
        return raw


class MemberWriter:
    """Writes a batch of rows in one transaction: a few reads, then one multi-row INSERT per table."""

    def __init__(self, chain_id: int, program: Program, vault: Vault, welcome: bool, source: str) -> None:
        self.chain_id = chain_id
        self.program = program
        self.vault = vault
        self.welcome_points = program.behaviors.register_.points if welcome else 0
        self.source = source

    async def write(self, rows: list[MemberRow], now: datetime) -> BatchOutcome:
        """One transaction for ``rows``; if the database refuses it, each row alone."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                async with in_transaction():
                    return await self._write(rows, utc(now))
            except IntegrityError:
                break  # some row of the batch: find it by writing each alone
            except Exception as error:
                # Two batches written at once wait on each other's phones (one file holding a phone
                # twice, far apart): PostgreSQL ends one of them, which is simply written again.
                if getattr(error, "sqlstate", None) != "40P01" or attempt == DEADLOCK_RETRIES:
                    raise
        outcome = BatchOutcome()
        for row in rows:
            try:
                async with in_transaction():
                    alone = await self._write([row], utc(now))
            except IntegrityError as error:
                alone = BatchOutcome(problems=[RowProblem(row.line, "rejected", *_refusal(error))])
            outcome.imported += alone.imported
            outcome.welcomed += alone.welcomed
            outcome.problems += alone.problems
        return outcome

    async def _write(self, rows: list[MemberRow], now: datetime) -> BatchOutcome:
        outcome = BatchOutcome()
        if _dialect() == "postgres":
            # The look-ups are prepared once, while the tables are still small: a cached generic plan
            # would go on scanning whole tables as they fill. Plan each with its own values instead.
            await sql.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        hashes = {row.line: self.vault.lookup_hash(self.chain_id, row.phone) for row in rows}
        existing = await self._present("SELECT phone_hash AS v FROM members WHERE chain_id = $1 AND phone_hash IN",
                                       list(hashes.values()))
        fresh, seen_phone, seen_card = [], {}, {}
        taken_cards = await self._taken_cards([row.card_no for row in rows if row.card_no])
        for row in rows:
            phone_hash = hashes[row.line]
            if phone_hash in existing:
                outcome.problems.append(RowProblem(row.line, "skipped", "phone", "already a member of this chain"))
            elif phone_hash in seen_phone:
                outcome.problems.append(RowProblem(row.line, "skipped", "phone",
                                                   f"the same phone as line {seen_phone[phone_hash]}"))
            elif row.card_no and (row.card_no in taken_cards or row.card_no in seen_card):
                where = f"line {seen_card[row.card_no]}" if row.card_no in seen_card else "another member"
                outcome.problems.append(RowProblem(row.line, "rejected", "card_no", f"is {where}'s card number"))
            else:
                seen_phone[phone_hash] = row.line
                if row.card_no:
                    seen_card[row.card_no] = row.line
                fresh.append((row, phone_hash))
        if not fresh:
            return outcome
        welcomed = await self._present("SELECT key AS v FROM journal_entries WHERE chain_id = $1 AND key IN",
                                       [f"welcome:{h}" for _, h in fresh]) if self.welcome_points else set()
        cards = await self._new_cards(sum(1 for row, _ in fresh if not row.card_no))
        if _dialect() == "postgres":
            await sql.execute("SET LOCAL plan_cache_mode = auto")  # the inserts have no plan to choose
        members = [self._prepare(row, phone_hash, row.card_no or cards.pop(), welcomed)
                   for row, phone_hash in fresh]
        await self._insert_members(members, now)
        for member in members:
            if member.id == 0:  # the insert did nothing: a member with this phone or card came meanwhile
                outcome.problems.append(RowProblem(member.row.line, "skipped", "phone",
                                                   "a member with this phone or card number was registered meanwhile"))
        members = [member for member in members if member.id]
        if members:
            await self._insert_rest(members, now)
        outcome.imported = len(members)
        outcome.welcomed = sum(1 for member in members if member.welcome)
        return outcome

    def _prepare(self, row: MemberRow, phone_hash: str, card_no: str, welcomed: set[str]) -> _Member:
        welcome = self.welcome_points if f"welcome:{phone_hash}" not in welcomed else 0
        reading = tiers.Reading({"growth": welcome + row.growth, "points_earned": welcome}.get(
            self.program.tiers.metric, 0), 0)
        level = tiers.earned_level(self.program, reading)
        if row.tier:
            level = tiers.higher(self.program, level, self.program.level(row.tier))
        return _Member(row, phone_hash, card_no, welcome, level.code)

    async def _present(self, query: str, values: list[str]) -> set[str]:
        """Which of ``values`` a ``... IN`` query finds (``$1`` is the chain)."""
        found: set[str] = set()
        for start in range(0, len(values), MAX_PARAMS):
            chunk = values[start:start + MAX_PARAMS]
            marks = ", ".join(f"${i + 2}" for i in range(len(chunk)))
            found |= {row["v"] for row in await sql.rows(f"{query} ({marks})", self.chain_id, *chunk)}
        return found

    async def _taken_cards(self, cards: list[str]) -> set[str]:
        """The members' card numbers among ``cards`` (a card identity without a member's card_no,
        as registration, is left to the unique constraint: that row alone is then refused)."""
        if not cards:
            return set()
        return await self._present("SELECT card_no AS v FROM members WHERE chain_id = $1 AND card_no IN", cards)

    async def _new_cards(self, count: int) -> list[str]:
        """``count`` card numbers as registration makes them ("9" and 11 digits), none in use."""
        cards: set[str] = set()
        while len(cards) < count:
            drawn = {f"9{secrets.randbelow(10**11):011d}" for _ in range(count - len(cards))} - cards
            cards |= drawn - await self._taken_cards(sorted(drawn))
        return sorted(cards)

    async def _insert_members(self, members: list[_Member], now: datetime) -> None:
        vault = self.vault
        rows = [(self.chain_id, m.phone_hash, vault.encrypt(m.row.phone), m.row.phone[-4:], vault.encrypt(m.row.name),
                 vault.encrypt(m.row.birthday.isoformat() if m.row.birthday else None), m.card_no, m.row.store_code,
                 m.tier, now, m.row.joined_at or now, m.row.birthday.month if m.row.birthday else None) for m in members]
        found = await insert(
            "members", ("chain_id", "phone_hash", "phone_enc", "phone_last4", "name_enc", "birthday_enc", "card_no",
                        "store_code", "tier_code", "tier_since", "created_at", "birth_month"), rows,
            fixed={"tags": "'[]'", "frozen": "FALSE"}, tail="ON CONFLICT DO NOTHING RETURNING id, phone_hash")
        ids = {row["phone_hash"]: int(row["id"]) for row in found}
        for member in members:
            member.id = ids.get(member.phone_hash, 0)

    async def _insert_rest(self, members: list[_Member], now: datetime) -> None:
        """Identities, accounts, entries, postings, lots, figures and events of inserted members."""
        chain_id = self.chain_id
        await insert("identities", ("chain_id", "member_id", "channel", "external_id", "created_at"),
                     [(chain_id, m.id, "card", m.card_no, now) for m in members])
        for member in members:
            self._entries(member)
        accounts = await insert(
            "accounts", ("chain_id", "member_id", "kind", "balance"),
            [(chain_id, m.id, kind, balance) for m in members for kind, balance in m.balances().items()],
            tail="RETURNING id, member_id, kind")
        account_ids = {(int(a["member_id"]), a["kind"]): int(a["id"]) for a in accounts}
        entries = [(m, key, kind) for m in members for key, kind, _ in m.entries]
        if entries:
            found = await insert(
                "journal_entries", ("chain_id", "key", "kind", "member_id", "channel", "actor", "reason", "ref",
                                    "occurred_at", "created_at"),
                [(chain_id, key, kind, m.id, CHANNEL, ACTOR if kind == "import" else None,
                  "register" if kind == "behavior" else f"opening balance imported from {self.source}"[:500],
                  f"{self.source}:{m.row.line}"[-200:], now, now) for m, key, kind in entries],
                tail="RETURNING id, key")
            entry_ids = {row["key"]: int(row["id"]) for row in found}
            for member in members:
                member.entry_ids = [entry_ids[key] for key, _, _ in member.entries]
            await self._insert_postings(members, account_ids)
            await self._insert_lots(members, now)
            await self._insert_figures(members, now)
        events = []  # as loyalty_core.outbox writes them, in one insert of rows (no ORM objects)
        for member in members:
            events.append(("member.created", {"member_id": member.id, "channel": CHANNEL}))
            if member.entry_ids:
                events.append(("balance.changed", {"member_id": member.id, "entry_id": member.entry_ids[-1],
                                                   "balances": shown_balances(member.balances())}))
        await insert("outbox_events", ("chain_id", "event_id", "topic", "payload", "next_attempt_at", "created_at"),
                     [(chain_id, str(uuid.uuid4()), topic, orjson.dumps(payload).decode(), now, now)
                      for topic, payload in events],
                     fixed={"status": "'pending'", "attempts": "0"})

    def _entries(self, member: _Member) -> None:
        """The welcome entry (as registration posts it) and the opening balances' ``import`` entry."""
        member_id, row = member.id, member.row
        if member.welcome:
            member.entries.append((f"welcome:{member.phone_hash}", "behavior", [
                Leg("points_issued", -member.welcome), Leg("points", member.welcome, member_id),
                Leg("growth_issued", -member.welcome), Leg("growth", member.welcome, member_id)]))
        opening = {"points": row.points, "growth": row.growth, "sv_principal": row.stored_value,
                   "sv_bonus": row.stored_value_bonus}
        legs = [leg for account, counterpart in OPENING if opening[account]
                for leg in (Leg(account, opening[account], member_id), Leg(counterpart, -opening[account]))]
        if legs:
            member.entries.append((f"import:member:{member_id}", "import", legs))
        for _, _, entry_legs in member.entries:
            check_balanced(entry_legs)

    async def _insert_postings(self, members: list[_Member], account_ids: dict[tuple[int, str], int]) -> None:
        rows = []
        for member in members:
            for entry_id, (_, _, legs) in zip(member.entry_ids, member.entries):
                for leg in sorted(legs, key=lambda leg: (leg.member_id or 0, leg.ledger)):
                    account = account_ids[(member.id, leg.ledger)] if leg.member_id is not None else None
                    rows.append((entry_id, self.chain_id, account, leg.ledger, unit_of(leg.ledger), leg.amount))
        await insert("postings", ("entry_id", "chain_id", "account_id", "ledger", "unit", "amount"), rows)

    async def _insert_lots(self, members: list[_Member], now: datetime) -> None:
        """Every credit to available points is a lot (the welcome's, the opening balance's)."""
        expires_at = lot_expiry(now, self.program.points.expiry, ZoneInfo(self.program.timezone))
        expires_at = utc(expires_at) if expires_at else None
        rows = []
        for member in members:
            for entry_id, (_, _, legs) in zip(member.entry_ids, member.entries):
                credit = sum(leg.amount for leg in legs if leg.ledger == "points" and leg.member_id is not None)
                if credit > 0:
                    rows.append((self.chain_id, member.id, entry_id, credit, credit, now, expires_at))
        await insert("points_lots", ("chain_id", "member_id", "entry_id", "amount", "remaining", "vested_at",
                                     "expires_at"), rows)

    async def _insert_figures(self, members: list[_Member], now: datetime) -> None:
        """The month's and the lifetime tier figures: welcome growth and points, imported growth."""
        period = tiers.period_of(now, self.program)
        rows = []
        for member in members:
            growth, earned = member.welcome + member.row.growth, member.welcome
            if growth or earned:
                rows += [(self.chain_id, member.id, at, growth, earned) for at in (period, 0)]
        await insert("member_figures", ("chain_id", "member_id", "period", "growth", "points_earned"), rows,
                     fixed={"spend": "0", "stored_value": "0", "orders": "0"})


def _dialect() -> str:
    return connections.get("default").capabilities.dialect


def _refusal(error: IntegrityError) -> tuple[str, str]:
    """The field and reason of a row the database refused on its own."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "identities" in text:
        return "card_no", "is the card number of another identity in this chain"
    return "(row)", f"refused by the database: {text}"[:300]


# PostgreSQL types of the columns the import writes: there a table's rows go in as one array per column.
PG_TYPES = {
    **dict.fromkeys(("chain_id", "member_id", "balance", "entry_id", "account_id", "amount", "remaining", "growth",
                     "points_earned"), "bigint"),
    **dict.fromkeys(("phone_hash", "phone_enc", "phone_last4", "name_enc", "birthday_enc", "card_no", "store_code",
                     "tier_code", "channel", "external_id", "kind", "key", "actor", "reason", "ref", "ledger", "unit"),
                    "text"),
    **dict.fromkeys(("tier_since", "created_at", "occurred_at", "vested_at", "expires_at"), "timestamptz"),
    "period": "integer", "birth_month": "integer", "event_id": "text", "topic": "text", "payload": "jsonb", "next_attempt_at": "timestamptz",
}


async def insert(table: str, columns: tuple[str, ...], rows: list[tuple], fixed: dict[str, str] | None = None,
                 tail: str = "") -> list[dict]:
    """Multi-row ``INSERT`` of ``rows``; ``fixed`` columns take the same SQL literal on every row.
    Answers what ``tail``'s RETURNING returns.

    On PostgreSQL one statement whatever the count: ``INSERT ... SELECT FROM unnest($1::bigint[], ...)``,
    one array per column (a few parameters, one prepared statement, nothing to plan). Elsewhere
    ``VALUES (...), (...)``, as many statements as the parameter limit needs."""
    if not rows:
        return []
    fixed = fixed or {}
    names = ", ".join((*columns, *fixed))
    literals = "".join(f", {value}" for value in fixed.values())
    returning = "RETURNING" in tail
    if _dialect() == "postgres":
        arrays = ", ".join(f"${i + 1}::{PG_TYPES[name]}[]" for i, name in enumerate(columns))
        statement = (f"INSERT INTO {table} ({names}) SELECT *{literals} FROM unnest({arrays}) {tail}")
        params = [list(column) for column in zip(*rows)]
        if returning:
            return await sql.rows(statement, *params)
        await sql.execute(statement, *params)
        return []
    per_statement = max(1, MAX_PARAMS // len(columns))
    found: list[dict] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        marks, params = [], []
        for row in chunk:
            base = len(params)
            marks.append("(" + ", ".join(f"${base + i + 1}" for i in range(len(row))) + literals + ")")
            params.extend(row)
        statement = f"INSERT INTO {table} ({names}) VALUES {', '.join(marks)} {tail}"
        if returning:
            found += await sql.rows(statement, *params)
        else:
            await sql.execute(statement, *params)
    return found


# --- the file ------------------------------------------------------------------------------------

@dataclass
class Counts:
    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    welcomed: int = 0

    def add(self, outcome: BatchOutcome) -> None:
        self.imported += outcome.imported
        self.welcomed += outcome.welcomed
        self.skipped += sum(1 for p in outcome.problems if p.outcome == "skipped")
        self.rejected += sum(1 for p in outcome.problems if p.outcome == "rejected")


@dataclass
class Progress:
    """Where an import stands after a committed batch (``total`` counts the file's lines)."""

    line: int
    total: int
    first_line: int  # where this run started (1 = the header)
    started: float  # time.monotonic() at this run's start
    counts: Counts  # the whole import's, earlier runs included
    run: Counts  # this run's

    @property
    def done(self) -> int:
        return max(0, self.line - 1)

    @property
    def rate(self) -> float:
        seconds = time.monotonic() - self.started
        return (self.line - self.first_line) / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class ImportOptions:
    checkpoint: Path | None = None  # default: FILE.checkpoint
    report: Path | None = None      # default: FILE.report.csv
    batch_size: int = DEFAULT_BATCH
    parallel: int = 2  # batches written at once, each on its own connection
    welcome: bool = True
    encoding: str = "utf-8-sig"


@dataclass
class Summary:
    file: str
    report: str
    checkpoint: str
    counts: Counts
    run: Counts
    first_line: int
    last_line: int
    seconds: float
    resumed: bool
    already_done: bool = False


class _Checkpoint:
    """The line reached, with what proves the file is the same one up to it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            raise ImportRefused(f"the checkpoint {self.path} is not readable JSON: delete it to start over") from None

    def save(self, state: dict) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as out:
            out.write(json.dumps(state))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


class _Lines:
    """The file's lines as text, counting bytes and hashing them as they go by."""

    def __init__(self, handle, encoding: str) -> None:
        self.handle = handle
        self.encoding = encoding
        self.offset = 0
        self.hasher = hashlib.sha256()

    def skip_to(self, offset: int) -> None:
        while self.offset < offset:
            chunk = self.handle.read(min(1 << 20, offset - self.offset))
            if not chunk:
                break
            self.hasher.update(chunk)
            self.offset += len(chunk)

    def __iter__(self) -> Iterator[str]:
        while raw := self.handle.readline():
            self.hasher.update(raw)
            self.offset += len(raw)
            yield raw.decode(self.encoding, "surrogateescape")


def count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


async def import_file(chain_id: int, path: Path, vault: Vault, clock: Clock, options: ImportOptions = ImportOptions(),
                      progress: Callable[[Progress], None] | None = None) -> Summary:
    """Import ``path`` into the chain, resuming after its checkpoint if there is one."""
    if not await Chain.exists(id=chain_id):
        raise ImportRefused(f"no chain {chain_id}")
    if options.batch_size < 1 or options.parallel < 1:
        raise ImportRefused("the batch size and the batches written at once must be at least 1")
    checkpoint = _Checkpoint(options.checkpoint or path.with_name(path.name + ".checkpoint"))
    report_path = options.report or path.with_name(path.name + ".report.csv")
    program = await get_program(chain_id)
    store_codes = set(await Store.filter(chain_id=chain_id).values_list("code", flat=True))
    writer = MemberWriter(chain_id, program, vault, options.welcome, path.name)
    total = count_lines(path)
    with open(path, "rb") as handle:
        _lock(handle, path)
        lines = _Lines(handle, options.encoding)
        text = iter(lines)
        header = next(text, None)
        if header is None:
            raise ImportRefused(f"{path} is empty: the first line must be the header")
        columns = read_header(next(csv.reader([header])))
        state = _resume_state(checkpoint.load(), chain_id, lines)
        counts = Counts(**state["counts"]) if state else Counts()
        first_line = state["line"] if state else 1
        summary = Summary(str(path), str(report_path), str(checkpoint.path), counts, Counts(), first_line,
                          first_line, 0.0, resumed=state is not None)
        if state and state.get("done"):
            summary.already_done = True
            return summary
        started = time.monotonic()
        report = _open_report(report_path, state)
        try:
            reader = RowReader(columns, program, store_codes, clock.now(), options.encoding)
            run = _Run(writer, clock, checkpoint, report, lines, chain_id, summary, started, total, progress)
            await run.rows(csv.reader(text), first_line, reader, options.batch_size, options.parallel)
        finally:
            report.close()
        summary.seconds = time.monotonic() - started
    return summary


def _lock(handle, path: Path) -> None:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ImportRefused(f"another import of {path} is running") from None


def _resume_state(state: dict | None, chain_id: int, lines: _Lines) -> dict | None:
    """The checkpoint to go on from, once the file up to it is the one it was taken on."""
    if state is None:
        return None
    if state.get("chain_id") != chain_id:
        raise ImportRefused(f"the checkpoint is of an import into chain {state.get('chain_id')}, not {chain_id}: "
                            "pass another --checkpoint, or delete it")
    lines.skip_to(int(state["offset"]))
    if lines.offset != state["offset"] or lines.hasher.hexdigest() != state["sha256"]:
        raise ImportRefused(f"the file changed before line {state['line']}, where the checkpoint stands: "
                            "delete the checkpoint to import it from the start (members already there are skipped)")
    return state


def _open_report(path: Path, state: dict | None):
    """The bad-rows report: started afresh, or cut back to what the checkpoint had seen."""
    if state is None:
        report = open(path, "w", newline="", encoding="utf-8")
        csv.writer(report).writerow(["line", "outcome", "field", "reason"])
        return report
    report = open(path, "a", newline="", encoding="utf-8")
    report.truncate(int(state.get("report_size", 0)))
    return report


@dataclass
class _Batch:
    rows: list[MemberRow]
    problems: list[RowProblem]
    line: int  # its last line
    offset: int  # and where it ends in the file, with the hash of the file up to there
    sha256: str
    writing: asyncio.Task | None = None


class _Run:
    """Reads rows into batches and writes up to ``parallel`` of them at once (each its own
    transaction on its own connection); then, strictly in file order, records each batch's
    problems in the report and its line in the checkpoint."""

    def __init__(self, writer: MemberWriter, clock: Clock, checkpoint: _Checkpoint, report, lines: _Lines,
                 chain_id: int, summary: Summary, started: float, total: int,
                 progress: Callable[[Progress], None] | None) -> None:
        self.writer, self.clock, self.checkpoint, self.report, self.lines = writer, clock, checkpoint, report, lines
        self.chain_id, self.summary, self.started, self.total, self.progress = chain_id, summary, started, total, progress
        self.report_csv = csv.writer(report)

    async def rows(self, records, first_line: int, reader: RowReader, batch_size: int, parallel: int) -> None:
        writing: deque[_Batch] = deque()
        rows: list[MemberRow] = []
        problems: list[RowProblem] = []
        line = first_line
        try:
            for fields in records:
                start, line = line + 1, first_line + records.line_num  # a quoted newline makes a row span lines
                if fields:
                    try:
                        rows.append(reader.read(start, fields))
                    except BadRow as bad:
                        problems.append(RowProblem(start, "rejected", bad.field, bad.reason))
                if (len(rows) + len(problems)) % 100 == 0:
                    await asyncio.sleep(0)  # let the batches being written send their next statement
                if len(rows) + len(problems) >= batch_size:
                    writing.append(self.start(rows, problems, line))
                    rows, problems = [], []
                    while len(writing) >= parallel:
                        await self.finish(writing.popleft(), done=False)
            writing.append(self.start(rows, problems, line))
            while writing:
                await self.finish(writing.popleft(), done=not writing)
        finally:
            for batch in writing:  # stopped early: what is being written commits or rolls back, unrecorded
                if batch.writing:
                    batch.writing.cancel()
            await asyncio.gather(*(b.writing for b in writing if b.writing), return_exceptions=True)

    def start(self, rows: list[MemberRow], problems: list[RowProblem], line: int) -> _Batch:
        batch = _Batch(rows, problems, line, self.lines.offset, self.lines.hasher.hexdigest())
        if rows:
            batch.writing = asyncio.create_task(self.writer.write(rows, self.clock.now()))
        return batch

    async def finish(self, batch: _Batch, done: bool) -> None:
        outcome = await batch.writing if batch.writing else BatchOutcome()
        outcome.problems = sorted(batch.problems + outcome.problems, key=lambda p: p.line)
        for problem in outcome.problems:
            self.report_csv.writerow([problem.line, problem.outcome, problem.field, problem.reason])
        self.report.flush()
        os.fsync(self.report.fileno())
        summary = self.summary
        summary.counts.add(outcome)
        summary.run.add(outcome)
        summary.last_line = batch.line
        self.checkpoint.save({"chain_id": self.chain_id, "file": summary.file, "line": batch.line,
                              "offset": batch.offset, "sha256": batch.sha256, "report_size": self.report.tell(),
                              "done": done, "counts": asdict(summary.counts)})
        if self.progress:
            self.progress(Progress(batch.line, self.total, summary.first_line, self.started, summary.counts,
                                   summary.run))
