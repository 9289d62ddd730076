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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import orjson

from loyalty_core import sql
from loyalty_core.crypto import Vault
from loyalty_core.unit import Opening
from loyalty_core.errors import (BadRequest, IdempotencyKeyRequired, IdempotencyKeyReused,
                                 RequestInProgress)

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


class KeyTaken(Exception):
    """The claim sent with a handler's first read found the key claimed already: the handler
    stops there (it has changed nothing) and the request is answered as ``claim`` says."""


@dataclass
class Claiming:
    """A claim sent with the handler's first read (``Operation.claims_with_read``: a sale, a
    top-up) instead of a round trip of its own before it: ``opening`` is the claim's insert, and
    ``claim`` is set once it took; from then on its lease is renewed as any claim's (a sale held
    up behind a lock keeps its key) until ``stop_renewing``."""

    chain_id: int
    key: str
    print_: str
    now: datetime
    lease: timedelta
    clock: Callable[[], datetime]
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    claim: Claim | None = None
    renewing: "Renewing | None" = None

    def opening(self) -> Opening:
        return Opening(CLAIM, [self.chain_id, self.key, self.print_, self.token, self.now + self.lease, self.now],
                       self._opened)

    def _opened(self, claim_id) -> None:
        if claim_id is None:
            raise KeyTaken(self.key)
        self.claim = Claim(int(claim_id), self.token, self.chain_id)
        self.renewing = Renewing(self.claim, self.clock, self.lease)

    def stop_renewing(self) -> None:
        if self.renewing is not None:
            self.renewing.cancel()


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


# The hot path's statements, written once for both databases (``loyalty_core.sql``): a claim is
# one insert that answers nothing when the key is taken (no error for PostgreSQL to log), and
# finishing or releasing is one statement that acts only while the token is still the claim's.
CLAIM = ("INSERT INTO idempotency_records (chain_id, key, fingerprint, state, token, locked_until, created_at) "
         "VALUES ($1, $2, $3, 'running', $4, $5, $6) ON CONFLICT (chain_id, key) DO NOTHING RETURNING id")
CLAIMED = "SELECT id, fingerprint, state, status, body FROM idempotency_records WHERE chain_id = $1 AND key = $2"
TAKE_OVER = ("UPDATE idempotency_records SET locked_until = $4, token = $5 "
             "WHERE chain_id = $1 AND id = $2 AND state = 'running' AND locked_until < $3 RETURNING id")
FINISH = ("UPDATE idempotency_records SET state = 'done', status = $4, body = $5 "
          "WHERE chain_id = $1 AND id = $2 AND token = $3 AND state = 'running' RETURNING id")
RENEW = ("UPDATE idempotency_records SET locked_until = $4 "
         "WHERE chain_id = $1 AND id = $2 AND token = $3 AND state = 'running' RETURNING id")
RELEASE = ("DELETE FROM idempotency_records "
           "WHERE chain_id = $1 AND id = $2 AND token = $3 AND state = 'running' RETURNING id")


async def claim(chain_id: int, key: str, print_: str, now: datetime, vault: Vault,
                lease: timedelta = LEASE) -> Claim | Replay:
    """The claim to finish, or the stored answer to replay."""
    token = secrets.token_hex(16)
    for _ in range(3):
        if created := await sql.rows(CLAIM, chain_id, key, print_, token, now + lease, now):
            return Claim(int(created[0]["id"]), token, chain_id)
        if found := await sql.rows(CLAIMED, chain_id, key):
            record = found[0]
            break
        # The twin that held the key was just released (an answer not kept): claim it afresh.
    else:
        raise RequestInProgress("Another request with this Idempotency-Key is running")
    if record["fingerprint"] != print_:
        raise IdempotencyKeyReused("This Idempotency-Key was used with another request body")
    if record["state"] == "done":
        return Replay(record["status"] or 200, vault.decrypt(record["body"]) or "")
    if not await sql.rows(TAKE_OVER, chain_id, record["id"], now, now + lease, token):
        raise RequestInProgress("The first request with this Idempotency-Key is still running")
    return Claim(int(record["id"]), token, chain_id)


async def finish(claim: Claim, status: int, body: str, vault: Vault) -> bool:
    """Store the answer; False when the lease was taken over meanwhile (nothing is written)."""
    statement, params = finishing(claim, status, body, vault)
    return bool(await sql.rows(statement, *params))


def finishing(claim: Claim, status: int, body: str, vault: Vault) -> tuple[str, list]:
    """The statement that stores the answer (a row back when it did; none when the lease was
    taken over meanwhile), for a caller that sends it with its own."""
    return FINISH, [claim.chain_id, claim.id, claim.token, status, vault.encrypt(body)]


async def release(claim: Claim) -> None:
    """Forget a claim whose answer is not kept, so that the key can be sent again."""
    await sql.rows(RELEASE, claim.chain_id, claim.id, claim.token)


async def keep_alive(claim: Claim, now, lease: timedelta = LEASE, every: float | None = None,
                     first: float | None = None) -> None:
    """Renew the lease (every third of it; the first time after ``first`` seconds, by default
    the same) while a long handler (an offline batch, a job) runs; cancelled when it ends."""
    every = every if every is not None else lease.total_seconds() / 3
    await asyncio.sleep(first if first is not None else every)
    while await sql.rows(RENEW, claim.chain_id, claim.id, claim.token, now() + lease):
        await asyncio.sleep(every)


class Renewing:
    """``keep_alive`` for a handler that may run long, started only once it has run for a third of
    the lease: a till's request ends in milliseconds, and a timer is cheaper than a task."""

    def __init__(self, claim: Claim, now, lease: timedelta = LEASE) -> None:
        self._task: asyncio.Task | None = None
        self._timer = asyncio.get_running_loop().call_later(lease.total_seconds() / 3, self._start, claim, now, lease)

    def _start(self, claim: Claim, now, lease: timedelta) -> None:
        self._task = asyncio.ensure_future(keep_alive(claim, now, lease, first=0))  # a third has gone: renew now

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


def storable(status: int, code: str | None) -> bool:
    return status < 500 and code not in {"validation_error", "invalid_json", "request_in_progress"}
