"""Chains, their stores and terminals, and the admin keys that act for them."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from .crypto import Vault, new_token, token_hash
from .errors import AlreadyExists, BadRequest, LastOwnerKey, NotFound
from .models import AdminKey, Chain, Store, Terminal
from .program import Program, load_program
from .unit import Seal, seal_with

ROLES = ("owner", "operator", "auditor")


@dataclass(frozen=True)
class IssuedKey:
    id: int
    role: str
    key: str
    prefix: str
    created_at: datetime


async def create_chain(name: str, timezone: str = "Asia/Shanghai") -> tuple[Chain, IssuedKey]:
    """A new chain with the default program and its first owner key (printed once)."""
    program = Program(timezone=timezone)
    async with in_transaction():
        chain = await Chain.create(name=name, timezone=timezone, program=program.model_dump(mode="json"))
        key = await issue_admin_key(chain.id, "owner", created_by=None)
    return chain, key


async def issue_admin_key(chain_id: int, role: str, created_by: int | None, label: str | None = None,
                          seal: Seal | None = None) -> IssuedKey:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}")
    key = new_token("lk")
    async with in_transaction():
        row = await AdminKey.create(
            chain_id=chain_id, role=role, key_hash=token_hash(key), prefix=key[:8],
            label=label, created_by=created_by,
        )
        issued = IssuedKey(row.id, role, key, row.prefix, row.created_at)
        await seal_with(seal, issued)
    return issued


async def revoke_admin_key(chain_id: int, key_id: int, now: datetime) -> None:
    """Revoke a key; the chain's last owner key stays, or nobody could manage the chain again."""
    async with in_transaction():
        owners = await AdminKey.select_for_update().filter(chain_id=chain_id, role="owner", revoked_at=None)
        key = await AdminKey.get_or_none(chain_id=chain_id, id=key_id, revoked_at=None)
        if key is None:
            raise NotFound("No such admin key")
        if key.role == "owner" and [k.id for k in owners] == [key.id]:
            raise LastOwnerKey("This is the chain's last owner key: create another owner key first")
        await AdminKey.filter(id=key.id).update(revoked_at=now)


async def find_admin_key(key: str) -> AdminKey | None:
    return await AdminKey.get_or_none(key_hash=token_hash(key), revoked_at=None)


async def get_program(chain_id: int) -> Program:
    chain = await Chain.get(id=chain_id)
    return load_program(chain.program, chain.timezone)


async def put_program(chain_id: int, program: Program) -> Program:
    await Chain.filter(id=chain_id).update(program=program.model_dump(mode="json"), timezone=program.timezone)
    return program


async def create_store(chain_id: int, code: str, name: str, timezone: str | None,
                       seal: Seal | None = None) -> Store:
    try:
        async with in_transaction():
            store = await Store.create(chain_id=chain_id, code=code, name=name, timezone=timezone)
            await seal_with(seal, store)
    except IntegrityError as error:
        raise AlreadyExists(f"Store {code!r} exists already") from error
    return store


async def store_by_code(chain_id: int, code: str) -> Store:
    store = await Store.get_or_none(chain_id=chain_id, code=code)
    if store is None:
        raise NotFound(f"No store {code!r}")
    return store


@dataclass(frozen=True)
class IssuedTerminal:
    terminal: Terminal
    secret: str


async def create_terminal(chain_id: int, store_code: str, code: str, vault: Vault,
                          seal: Seal | None = None) -> IssuedTerminal:
    store = await store_by_code(chain_id, store_code)
    secret = secrets.token_hex(32)
    try:
        async with in_transaction():
            terminal = await Terminal.create(
                chain_id=chain_id, store_id=store.id, code=code,
                terminal_id="T" + secrets.token_hex(8).upper(), secret_enc=vault.encrypt(secret),
            )
            issued = IssuedTerminal(terminal, secret)
            await seal_with(seal, issued)
    except IntegrityError as error:
        raise AlreadyExists(f"Terminal {code!r} exists already in store {store_code!r}") from error
    return issued


async def revoke_terminal(chain_id: int, store_code: str, terminal_id: str, now: datetime) -> None:
    """A lost or retired till: its requests answer 401 from now on (its orders stay)."""
    store = await store_by_code(chain_id, store_code)
    revoked = await Terminal.filter(chain_id=chain_id, store_id=store.id, terminal_id=terminal_id,
                                    active=True).update(active=False, revoked_at=now)
    if not revoked:
        raise NotFound(f"No active terminal {terminal_id!r} in store {store_code!r}")
