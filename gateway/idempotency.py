"""Idempotency-Key handling, stored in the database so it holds across gateway processes.

A key is claimed by inserting a ``running`` record (committed at once, so a concurrent twin sees
it and gets 409). The claim carries a lease and a random token: a running record whose lease ran
out (its process died) may be taken over, which draws a new token, and ``finish`` and
``release`` only act while the token is still theirs, so a request that lost its lease can never
overwrite the answer of the one that took over. The core owns its transactions; a handler hands
it a seal (``Call.seal``) that stores the answer inside the core's transaction, so the change and
its answer commit together or not at all. Long handlers keep their lease alive. Answers are stored for 2xx and for business refusals (4xx after the
request was accepted); validation errors and 5xx are not stored, so the same key can be
retried with a corrected body or after a fault. Stored answers are encrypted with the vault:
they may hold personal data or a credential shown once (a terminal secret, an admin key).
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from tortoise.exceptions import IntegrityError

from loyalty_core.crypto import Vault
from loyalty_core.errors import (BadRequest, IdempotencyKeyRequired, IdempotencyKeyReused,
                                 RequestInProgress)
from loyalty_core.models import IdempotencyRecord

LEASE = timedelta(seconds=60)
KEEP = timedelta(hours=48)
KEY = re.compile(r"^[\x20-\x7e]{1,128}$")


@dataclass(frozen=True)
class Replay:
    status: int
    body: str


@dataclass(frozen=True)
class Claim:
    id: int
    token: str
    chain_id: int  # every statement on the record names its chain too (docs/scaling.md)


def read_key(header: str | None) -> str:
    if header is None:
        raise IdempotencyKeyRequired("This request changes balances: send an Idempotency-Key header")
    if not KEY.match(header):
        raise BadRequest("Idempotency-Key must be 1-128 printable ASCII characters")
    return header


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Same method, path and JSON (whatever its spacing or key order) -> same fingerprint."""
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + _canonical(body)).hexdigest()


def _canonical(body: bytes) -> bytes:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


async def claim(chain_id: int, key: str, print_: str, now: datetime, vault: Vault,
                lease: timedelta = LEASE) -> Claim | Replay:
    """The claim to finish, or the stored answer to replay."""
    token = secrets.token_hex(16)
    for _ in range(3):
        try:
            record = await IdempotencyRecord.create(chain_id=chain_id, key=key, fingerprint=print_, state="running",
                                                    token=token, locked_until=now + lease, created_at=now)
            return Claim(record.id, token, chain_id)
        except IntegrityError:
            pass
        record = await IdempotencyRecord.get_or_none(chain_id=chain_id, key=key)
        if record is not None:
            break
        # The twin that held the key was just released (an answer not kept): claim it afresh.
    else:
        raise RequestInProgress("Another request with this Idempotency-Key is running")
    if record.fingerprint != print_:
        raise IdempotencyKeyReused("This Idempotency-Key was used with another request body")
    if record.state == "done":
        return Replay(record.status or 200, vault.decrypt(record.body) or "")
    taken = await IdempotencyRecord.filter(chain_id=chain_id, id=record.id, state="running",
                                           locked_until__lt=now).update(locked_until=now + lease, token=token)
    if not taken:
        raise RequestInProgress("The first request with this Idempotency-Key is still running")
    return Claim(record.id, token, chain_id)


def _held(claim: Claim):
    return IdempotencyRecord.filter(chain_id=claim.chain_id, id=claim.id, token=claim.token, state="running")


async def finish(claim: Claim, status: int, body: str, vault: Vault) -> bool:
    """Store the answer; False when the lease was taken over meanwhile (nothing is written)."""
    return bool(await _held(claim).update(state="done", status=status, body=vault.encrypt(body)))


async def release(claim: Claim) -> None:
    """Forget a claim whose answer is not kept, so that the key can be sent again."""
    await _held(claim).delete()


async def keep_alive(claim: Claim, now, lease: timedelta = LEASE, every: float | None = None) -> None:
    """Renew the lease (every third of it) while a long handler (an offline batch, a job) runs;
    cancelled when it ends."""
    while True:
        await asyncio.sleep(every if every is not None else lease.total_seconds() / 3)
        if not await _held(claim).update(locked_until=now() + lease):
            return


def storable(status: int, code: str | None) -> bool:
    return status < 500 and code not in {"validation_error", "invalid_json", "request_in_progress"}
