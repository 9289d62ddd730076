"""What a test needs to act as an operator or a till: keys, signed requests, small assertions."""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.auth import signature
from loyalty_core.chains import create_chain
from loyalty_core.clock import Clock


@dataclass
class ChainKit:
    client: Any
    clock: Clock
    chain_id: int
    admin_key: str
    terminal_id: str = ""
    terminal_secret: str = ""
    extra: dict = field(default_factory=dict)

    # --- admin API -------------------------------------------------------------------------
    async def admin(self, method: str, path: str, json: Any = None, key: str | None = None,
                    idempotency_key: str | None | bool = True, headers: dict | None = None):
        """An admin call; mutating POSTs get a fresh Idempotency-Key unless one is given (or False)."""
        sent = {"Authorization": f"Bearer {key or self.admin_key}", **(headers or {})}
        if method == "POST" and idempotency_key is not False:
            sent["Idempotency-Key"] = uuid.uuid4().hex if idempotency_key is True else idempotency_key
        data = orjson.dumps(json) if json is not None else None
        return await self.client.request(method, path, data=data, headers=sent)

    # --- POS API ----------------------------------------------------------------------------
    async def pos(self, method: str, path: str, json: Any = None, idempotency_key: str | None | bool = True,
                  raw: bytes | None = None, timestamp: int | None = None, nonce: str | None = None,
                  secret: str | None = None, headers: dict | None = None):
        """A POS call signed as API.md says (terminal HMAC over method, path, timestamp, nonce, body)."""
        body = raw if raw is not None else (orjson.dumps(json) if json is not None else b"")
        ts = str(timestamp if timestamp is not None else int(self.clock.now().timestamp()))
        nonce = nonce or secrets.token_hex(12)
        sent = {"X-Terminal-Id": self.terminal_id, "X-Timestamp": ts, "X-Nonce": nonce,
                "X-Signature": signature(secret or self.terminal_secret, method, path, ts, nonce, body),
                "Content-Type": "application/json", **(headers or {})}
        if method == "POST" and idempotency_key is not False:
            sent["Idempotency-Key"] = uuid.uuid4().hex if idempotency_key is True else idempotency_key
        return await self.client.request(method, path, data=body, headers=sent)

    async def new_member(self, phone: str, **fields: Any) -> dict:
        response = await self.admin("POST", "/v1/members", {"phone": phone, **fields})
        assert response.status == 201, await response.text()
        return await response.json()

    async def member(self, member_id: int) -> dict:
        response = await self.admin("GET", f"/v1/members/{member_id}")
        assert response.status == 200, await response.text()
        return await response.json()

    async def sale(self, body: dict, status: int = 201) -> dict:
        """``POST /v1/pos/orders`` expecting ``status`` (201 created, 200 duplicate); the answer's body."""
        response = await self.pos("POST", "/v1/pos/orders", body)
        assert response.status == status, await response.text()
        return await response.json()

    async def set_program(self, program: dict) -> dict:
        response = await self.admin("PUT", "/v1/program", program)
        assert response.status == 200, await response.text()
        return await response.json()


async def make_chain(client, clock: Clock, name: str, store: str = "S01", terminal: str = "POS1") -> ChainKit:
    chain, key = await create_chain(name)
    kit = ChainKit(client, clock, chain.id, key.key)
    response = await kit.admin("POST", "/v1/stores", {"code": store, "name": f"{name} {store}"})
    assert response.status == 201, await response.text()
    response = await kit.admin("POST", f"/v1/stores/{store}/terminals", {"code": terminal})
    assert response.status == 201, await response.text()
    created = await response.json()
    kit.terminal_id, kit.terminal_secret = created["terminal_id"], created["secret"]
    return kit


async def problem(response, status: int, code: str) -> dict:
    """Assert an RFC 9457 problem answer with this status and code; returns its body."""
    text = await response.text()
    assert response.status == status, f"expected {status} {code}, got {response.status}: {text}"
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = orjson.loads(text)
    assert body["code"] == code, body
    assert body["status"] == status
    return body


# --- foundation test helpers (appended) ---------------------------------------------------------
async def sql_rows(sql: str) -> list[dict]:
    """Rows read straight from the database, past the ORM (what someone with the dump would see)."""
    from tortoise import Tortoise

    return await Tortoise.get_connection("default").execute_query_dict(sql)


async def adjustment(kit: ChainKit, member_id: int, amount: int, account: str = "points", reason: str = "test",
                     idempotency_key: str | bool = True, key: str | None = None):
    """``POST /v1/members/{id}/adjustments``; returns the raw response."""
    return await kit.admin("POST", f"/v1/members/{member_id}/adjustments",
                           {"account": account, "amount": amount, "reason": reason},
                           key=key, idempotency_key=idempotency_key)


async def ledger_items(kit: ChainKit, member_id: int) -> list[dict]:
    """Every ledger entry of a member over the admin API, newest first (follows the cursor)."""
    items, cursor = [], None
    while True:
        path = f"/v1/members/{member_id}/ledger?limit=200" + (f"&cursor={cursor}" if cursor else "")
        response = await kit.admin("GET", path)
        assert response.status == 200, await response.text()
        page = await response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def member_code(kit: ChainKit, member_id: int) -> str:
    """A dynamic member code as the mini-program would show it (issued by the core)."""
    from gateway.services import SERVICES
    from loyalty_core import codes

    services = kit.client.server.app[SERVICES]
    issued = await codes.issue(services.cache, services.vault, kit.chain_id, member_id, kit.clock.now())
    return issued.code


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux), e.g. the children of ``serve --workers N``."""
    from pathlib import Path

    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
