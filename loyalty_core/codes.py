"""Member codes as a till scans them: dynamic codes from the mini-program, cards and phones.

A dynamic code is 18 digits (1D and 2D scanners both read digits): ``8``, eleven random digits,
then six digits of an HMAC over them keyed from ``LOYALTY_SECRET``. The MAC rejects a typo or a
forgery without any look-up; the random part finds the code in Redis (a key, never a table
scan), which remembers whom it names and when it expires. It is valid for 120 s and remembered
for a day, so that a late scan answers 410 ``code_expired`` rather than "unknown". It commits one
order only: the order table holds it under a unique constraint.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from .bounds import is_phone
from .crypto import Vault
from .errors import CodeExpired, CodeNotFound, MemberNotFound
from .models import Identity, Member

VALID = timedelta(seconds=120)
REFRESH_AFTER = timedelta(seconds=60)
REMEMBER = timedelta(days=1)
PREFIX = "8"


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


async def issue(cache: Cache, vault: Vault, chain_id: int, member_id: int, now: datetime) -> MemberCode:
    random_part = "".join(secrets.choice("0123456789") for _ in range(11))
    code = PREFIX + random_part + _mac(vault, random_part)
    expires_at = now + VALID
    record = {"chain_id": chain_id, "member_id": member_id, "issued_at": now.timestamp(),
              "expires_at": expires_at.timestamp()}
    await cache.redis.set(cache.key("mcode", code), json.dumps(record), ex=int(REMEMBER.total_seconds()))
    return MemberCode(code, expires_at, int(VALID.total_seconds()), int(REFRESH_AFTER.total_seconds()))


async def resolve_dynamic(cache: Cache, vault: Vault, chain_id: int, code: str, at: datetime) -> int:
    """The member a dynamic code names, if it was valid at ``at``."""
    if not looks_dynamic(code) or not hmac.compare_digest(_mac(vault, code[1:12]), code[12:]):
        raise CodeNotFound("Not a member code of this chain")
    raw = await cache.redis.get(cache.key("mcode", code))
    if raw is None:
        raise CodeNotFound("Unknown or forgotten member code")
    record = json.loads(raw)
    if record["chain_id"] != chain_id:
        raise CodeNotFound("Not a member code of this chain")
    if not record["issued_at"] - 5 <= at.timestamp() <= record["expires_at"]:
        raise CodeExpired("This member code has expired: ask the member to refresh it")
    return int(record["member_id"])


async def find_member(cache: Cache, vault: Vault, chain_id: int, code: str, at: datetime) -> tuple[Member, str | None]:
    """Whatever the scanner read: a dynamic code, an 11-digit phone or a card number.
    Returns the member and the dynamic code (None for static codes)."""
    code = code.strip()
    dynamic = None
    if looks_dynamic(code):
        member = await Member.get_or_none(id=await resolve_dynamic(cache, vault, chain_id, code, at), chain_id=chain_id)
        dynamic = code
    elif is_phone(code):
        member = await Member.get_or_none(chain_id=chain_id, phone_hash=vault.lookup_hash(chain_id, code))
    else:
        identity = await Identity.get_or_none(chain_id=chain_id, channel="card", external_id=code)
        member = await Member.get_or_none(id=identity.member_id) if identity and identity.member_id else None
    if member is None or member.erased_at is not None:
        raise CodeNotFound("No member with this code")
    return member, dynamic


async def member_by_id(chain_id: int, member_id: int) -> Member:
    member = await Member.get_or_none(chain_id=chain_id, id=member_id)
    if member is None or member.erased_at is not None:
        raise MemberNotFound(f"No member {member_id}")
    return member
