"""Idempotency-Key handling, stored in the database so it holds across gateway processes.

A key is claimed by inserting a ``running`` record (committed at once, so a concurrent twin sees
it and gets 409). The handler's changes and the stored answer then commit in one transaction,
so a crash leaves either nothing or both. A running record whose lease ran out (its process
died) may be taken over. Answers are stored for 2xx and for business refusals (4xx after the
request was accepted); validation errors and 5xx are not stored, so the same key can be
retried with a corrected body or after a fault. Stored answers are encrypted with the vault:
they may hold personal data or a credential shown once (a terminal secret, an admin key).
"""
from __future__ import annotations

import hashlib
import re
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


async def claim(chain_id: int, key: str, print_: str, now: datetime, vault: Vault) -> IdempotencyRecord | Replay:
    """The record to finish, or the stored answer to replay."""
    for _ in range(3):
        try:
            return await IdempotencyRecord.create(chain_id=chain_id, key=key, fingerprint=print_, state="running",
                                                  locked_until=now + LEASE, created_at=now)
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
    taken = await IdempotencyRecord.filter(id=record.id, state="running", locked_until__lt=now).update(
        locked_until=now + LEASE)
    if not taken:
        raise RequestInProgress("The first request with this Idempotency-Key is still running")
    return record


async def finish(record: IdempotencyRecord, status: int, body: str, vault: Vault) -> None:
    await IdempotencyRecord.filter(id=record.id).update(state="done", status=status, body=vault.encrypt(body))



async def release(record: IdempotencyRecord) -> None:
    await IdempotencyRecord.filter(id=record.id, state="running").delete()


def storable(status: int, code: str | None) -> bool:
    return status < 500 and code not in {"validation_error", "invalid_json", "request_in_progress"}


async def purge(now: datetime) -> int:
    return await IdempotencyRecord.filter(created_at__lt=now - KEEP).delete()
