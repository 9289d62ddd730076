"""Member codes as a till scans them: dynamic codes from the mini-program, cards and phones.

A dynamic code is 18 digits (1D and 2D scanners both read digits): ``8``, eleven random digits,
then six digits of an HMAC over them keyed from ``LOYALTY_SECRET``. The MAC rejects a typo or a
forgery without any look-up; the random part finds the code in Redis (a key, never a table
scan), which remembers whom it names and when it expires. It is valid for 120 s and remembered
for a day, so that a late scan answers 410 ``code_expired`` rather than "unknown".

Codes are scoped to their chain (the Redis key carries the chain, as a Redis Cluster hash tag),
and a new code is written with ``SET NX``: two codes remembered at once are never equal, and a
collision draws again. A code commits one order only: the order keeps it with its issue time
(``<code>@<issued ms>``) under a unique (chain, member_code) constraint, so the same digits
issued again months later are a different code, not a false ``code_used``.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from . import sql
from .bounds import is_phone
from .crypto import Vault
from .errors import CodeExpired, CodeNotFound, MemberFrozen, MemberNotFound
from .models import Member
from .unit import Opening

VALID = timedelta(seconds=120)
REFRESH_AFTER = timedelta(seconds=60)
REMEMBER = timedelta(days=1)
PREFIX = "8"
DRAWS = 8


class Cache(Protocol):
    redis: object

    def key(self, *parts: object) -> str: ...


@dataclass(frozen=True)
class MemberCode:
    code: str
    expires_at: datetime
    expires_in: int
    refresh_after: int


def _mac(vault: Vault, random_part: str) -> str:
    digest = hmac.new(vault.code_key, random_part.encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def looks_dynamic(code: str) -> bool:
    return len(code) == 18 and code.isascii() and code.isdigit() and code.startswith(PREFIX)


def _key(cache: Cache, chain_id: int, code: str) -> str:
    return cache.key(f"{{chain:{chain_id}}}", "mcode", code)


async def issue(cache: Cache, vault: Vault, chain_id: int, member_id: int, now: datetime) -> MemberCode:
    expires_at = now + VALID
    record = json.dumps({"member_id": member_id, "issued_ms": int(now.timestamp() * 1000),
                         "expires_at": expires_at.timestamp()})
    for _ in range(DRAWS):
        random_part = "".join(secrets.choice("0123456789") for _ in range(11))
        code = PREFIX + random_part + _mac(vault, random_part)
        if await cache.redis.set(_key(cache, chain_id, code), record, nx=True, ex=int(REMEMBER.total_seconds())):
            return MemberCode(code, expires_at, int(VALID.total_seconds()), int(REFRESH_AFTER.total_seconds()))
    raise RuntimeError(f"no free member code after {DRAWS} draws")  # 1e11 codes: never, short of a broken RNG


@dataclass(frozen=True)
class Resolved:
    member_id: int
    use_key: str  # what the order keeps to commit this code once: <code>@<issued ms>


async def resolve_dynamic(cache: Cache, vault: Vault, chain_id: int, code: str, at: datetime) -> Resolved:
    """The member a dynamic code names, if it was valid at ``at``."""
    if not looks_dynamic(code) or not hmac.compare_digest(_mac(vault, code[1:12]), code[12:]):
        raise CodeNotFound("Not a member code of this chain")
    raw = await cache.redis.get(_key(cache, chain_id, code))
    if raw is None:
        raise CodeNotFound("Unknown or forgotten member code")
    record = json.loads(raw)
    if not record["issued_ms"] / 1000 - 5 <= at.timestamp() <= record["expires_at"]:
        raise CodeExpired("This member code has expired: ask the member to refresh it")
    return Resolved(int(record["member_id"]), f"{code}@{record['issued_ms']}")


# A member by what the scanner read; ``{columns}``: more of the same row (a scan's balances, see
# ``members.counter_view_of``), with parameters from $3 on.
MEMBER_BY_ID = "SELECT members.*{columns} FROM members WHERE id = $1 AND chain_id = $2"
MEMBER_BY_PHONE = "SELECT members.*{columns} FROM members WHERE chain_id = $1 AND phone_hash = $2"
MEMBER_BY_CARD = ("SELECT members.*{columns} FROM identities JOIN members ON members.id = identities.member_id "
                  "WHERE identities.chain_id = $1 AND identities.channel = 'card' AND identities.external_id = $2 "
                  "AND members.chain_id = $1")


async def find_member(cache: Cache, vault: Vault, chain_id: int, code: str, at: datetime,
                      opening: Opening | None = None) -> tuple[Member, str | None]:
    """Whatever the scanner read: a dynamic code, an 11-digit phone or a card number (one
    indexed look-up each). Returns the member and the dynamic code's single-use key (None for
    static codes)."""
    row, dynamic = await find_member_row(cache, vault, chain_id, code, at, opening=opening)
    return Member._init_from_db(**row), dynamic


async def find_member_row(cache: Cache, vault: Vault, chain_id: int, code: str, at: datetime, columns: str = "",
                          params: tuple = (), opening: Opening | None = None) -> tuple[dict, str | None]:
    """``find_member``'s row, with ``columns`` (and their ``params``) read in the same statement,
    and the caller's ``opening`` sent with it."""
    code = code.strip()
    dynamic = None
    if looks_dynamic(code):
        resolved = await resolve_dynamic(cache, vault, chain_id, code, at)
        query, key, dynamic = MEMBER_BY_ID, (resolved.member_id, chain_id), resolved.use_key
    elif is_phone(code):
        query, key = MEMBER_BY_PHONE, (chain_id, vault.lookup_hash(chain_id, code))
    else:
        query, key = MEMBER_BY_CARD, (chain_id, code)
    found = await read_opening(query.format(columns=columns), [*key, *params], opening)
    if found and found[0]["merged_into"] is not None:  # a merged record answers for the member it went to
        found = await sql.rows(MEMBER_BY_ID.format(columns=columns), found[0]["merged_into"], chain_id, *params)
    if not found or found[0]["erased_at"] is not None:
        raise CodeNotFound("No member with this code")
    return found[0], dynamic


async def read_opening(query: str, params: list, opening: Opening | None) -> list[dict]:
    """``query``'s rows, with the caller's ``opening`` sent in the same statement (PostgreSQL; on
    SQLite just before) and its returned id handed to it, found or not."""
    if opening is None:
        return await sql.rows(query, *params)
    if sql.dialect() != "postgres":
        await opening.alone()
        return await sql.rows(query, *params)
    found = await sql.rows(_opened(query, opening.statement, len(params)), *params, *opening.params)
    opening.opened(found[0].pop("opening_id"))
    return found if found[0]["id"] is not None else []


@functools.lru_cache(maxsize=64)
def _opened(query: str, statement: str, shift: int) -> str:
    """One row whatever ``query`` finds (its columns NULL when nothing), with the opening's id."""
    return (f"WITH opening AS ({sql.renumbered(statement, shift)}) SELECT (SELECT id FROM opening) AS opening_id, "
            f"found.* FROM (SELECT 1) AS one LEFT JOIN ({query}) AS found ON true")


async def member_with_phone(chain_id: int, phone: str, vault) -> Member | None:
    """The member who holds this phone (a merged record: the member it went to), or None."""
    found = await Member.get_or_none(chain_id=chain_id, phone_hash=vault.lookup_hash(chain_id, phone))
    if found is not None and found.merged_into is not None:
        return await member_by_id(chain_id, found.merged_into)
    return found


async def member_by_id(chain_id: int, member_id: int, opening: Opening | None = None) -> Member:
    """The member with this id, or the one a merge moved it into (``opening`` sent with the read)."""
    found = await read_opening(MEMBER_BY_ID.format(columns=""), [member_id, chain_id], opening)
    member = Member._init_from_db(**found[0]) if found else None
    if member is not None and member.merged_into is not None:
        member = await sql.one(Member, MEMBER_BY_ID.format(columns=""), member.merged_into, chain_id)
    if member is None or member.erased_at is not None:
        raise MemberNotFound(f"No member {member_id}")
    return member


MEMBER_STATE = "SELECT id, frozen, erased_at FROM members WHERE chain_id = $1 AND id = $2"


async def lock_active_member(chain_id: int, member_id: int, frozen: str | None) -> None:
    """Lock the member's row for the caller's transaction, so that one member's coupons, mall
    redemptions or behaviours are counted one after another across processes; an unknown or
    erased member is ``MemberNotFound``, a frozen one ``MemberFrozen`` with ``frozen`` as its
    detail (``None``: frozen members pass)."""
    found = await sql.rows(sql.locking(MEMBER_STATE, "FOR NO KEY UPDATE"), chain_id, member_id)
    if not found or found[0]["erased_at"] is not None:
        raise MemberNotFound(f"No member {member_id}")
    if frozen is not None and found[0]["frozen"]:
        raise MemberFrozen(frozen)
