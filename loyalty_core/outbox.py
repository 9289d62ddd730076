"""Domain events, written in the same transaction as the change they announce.

The worker's relay delivers them after commit, at least once, each with a stable ``event_id``
that receivers dedupe on. No request handler talks to another system after committing.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import orjson

from . import sql

_COLUMNS = "(chain_id, event_id, topic, payload, status, attempts, next_attempt_at, created_at)"


def _insert(count: int) -> str:
    """One insert of ``count`` events: ``$1`` the chain, ``$2`` the time, then three per event."""
    rows = ", ".join(f"($1, ${3 + 3 * i}, ${4 + 3 * i}, ${5 + 3 * i}, 'pending', 0, $2, $2)" for i in range(count))
    return f"INSERT INTO outbox_events {_COLUMNS} VALUES {rows}"


_INSERTS = [_insert(count) for count in range(1, 5)]


async def emit(chain_id: int, topic: str, payload: dict, now: datetime) -> str:
    """Write one event; returns its ``event_id``."""
    return (await emit_all(chain_id, [(topic, payload)], now))[0]


async def emit_all(chain_id: int, events: list[tuple[str, dict]], now: datetime) -> list[str]:
    """Several events of one change in one insert; returns their ``event_id``s."""
    if not events:
        return []
    statement, params, ids = inserting(chain_id, events, now)
    await sql.execute(statement, *params)
    return ids


async def emit_once(chain_id: int, events: list[tuple[str, str, dict]], now: datetime) -> None:
    """Events whose ``event_id`` the caller derived (``(event_id, topic, payload)``), in one insert:
    one written before under the same id is not written again."""
    if not events:
        return
    params: list = [chain_id, now]
    for event_id, topic, payload in events:
        params += [event_id, topic, orjson.dumps(payload).decode()]
    await sql.execute(_insert(len(events)) + " ON CONFLICT DO NOTHING", *params)


# Topics whose rows are given up after a time since they were written (or replayed) rather than a
# number of attempts: a chain's webhook deliveries are tried for 24 h (``loyalty_core.webhooks``).
RETRY_WINDOWS: dict[str, timedelta] = {"webhook.delivery": timedelta(hours=24)}


def given_up(topic: str, attempts: int, created_at: datetime, now: datetime, max_attempts: int) -> bool:
    """Whether a row that failed again is dead: past its topic's window, or ``max_attempts`` tries."""
    window = RETRY_WINDOWS.get(topic)
    return now - created_at >= window if window is not None else attempts >= max_attempts


def inserting(chain_id: int, events: list[tuple[str, dict]], now: datetime) -> tuple[str, list, list[str]]:
    """The insert of ``events`` (parameters from $1), its parameters and the events' ids: for a
    caller that sends it with another statement of its transaction (PostgreSQL: in one)."""
    ids = [str(uuid.uuid4()) for _ in events]
    params: list = [chain_id, now]
    for event_id, (topic, payload) in zip(ids, events):
        params += [event_id, topic, orjson.dumps(payload).decode()]
    return _INSERTS[len(events) - 1] if len(events) <= len(_INSERTS) else _insert(len(events)), params, ids


def backoff(attempts: int, base: float = 2.0, cap: float = 3600.0) -> timedelta:
    """Delay before the next try after ``attempts`` failures: 2 s, 4 s, 8 s ... capped at an hour."""
    return timedelta(seconds=min(cap, base ** max(1, attempts)))
