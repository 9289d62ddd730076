"""Member tokens: the mini-program's credential, beside admin keys and terminal signatures.

A login opens a session for one WeChat account of one connected app and answers a random token,
``mt.<chain id>.<secret>``; only its SHA-256 is kept. The chain in the token is where the session
is looked up (a token of chain A names chain A, where chain B's sessions are not), so a token is
useless on another chain, and on admin or POS routes (they take other credentials). A session
expires (7 days by default) and is revoked by logging out or by erasing the member (``members.erase``); a new login
of the same account opens a second session (a second phone) and leaves the first alone.

Before the account has joined, the session has no member: only ``/v1/mp/join`` (and logging out)
accept it. Joining names the member on every open session of that account.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import codes, sql
from .crypto import Vault, token_hash
from .models import Identity, Member, MemberSession

TTL = timedelta(days=7)
PREFIX = "mt"


@dataclass(frozen=True)
class WeChatAccount:
    """Who WeChat says logged in: the openid is per app, the unionid (when the app has one) per
    WeChat open-platform account."""

    app_id: str
    openid: str
    unionid: str | None = None

    @property
    def channel(self) -> str:
        return f"wechat:{self.app_id}"


@dataclass(frozen=True)
class Opened:
    token: str
    session: MemberSession


def chain_of(token: str) -> int | None:
    """The chain a token names, or None when it is no member token at all."""
    prefix, _, rest = token.partition(".")
    chain, _, secret = rest.partition(".")
    if prefix != PREFIX or not (chain.isascii() and chain.isdigit()) or len(chain) > 18 or len(secret) < 32:
        return None
    return int(chain)


async def member_of(chain_id: int, account: WeChatAccount) -> int | None:
    """The member this WeChat account belongs to, by its openid, else by its unionid."""
    for channel, external_id in ((account.channel, account.openid), ("wechat_union", account.unionid)):
        if external_id:
            found = await Identity.get_or_none(chain_id=chain_id, channel=channel, external_id=external_id)
            if found is not None and found.member_id is not None:
                return found.member_id
    return None


async def open_session(chain_id: int, channel_id: int, account: WeChatAccount, session_key: str | None,
                       member_id: int | None, vault: Vault, now: datetime, ttl: timedelta = TTL) -> Opened:
    token = f"{PREFIX}.{chain_id}.{secrets.token_urlsafe(32)}"
    session = await MemberSession.create(
        chain_id=chain_id, channel_id=channel_id, member_id=member_id, token_hash=token_hash(token),
        openid=account.openid, unionid=account.unionid, session_key_enc=vault.encrypt(session_key),
        created_at=now, expires_at=now + ttl)
    return Opened(token, session)


async def log_in(chain_id: int, channel_id: int, account: WeChatAccount, session_key: str | None, vault: Vault,
                 now: datetime) -> tuple[Opened, Member | None]:
    """A new session for the account, and the member it belongs to (None: not joined yet)."""
    member_id = await member_of(chain_id, account)
    opened = await open_session(chain_id, channel_id, account, session_key, member_id, vault, now)
    return opened, await codes.member_by_id(chain_id, member_id) if member_id else None


FIND = ("SELECT member_sessions.*, channels.external_id AS app_id FROM member_sessions "
        "JOIN channels ON channels.id = member_sessions.channel_id "
        "WHERE member_sessions.chain_id = $1 AND member_sessions.token_hash = $2 "
        "AND member_sessions.revoked_at IS NULL AND member_sessions.expires_at > $3")


async def find_session(token: str, now: datetime) -> dict | None:
    """The open session of this token (with its app id), or None: unknown, expired or revoked."""
    chain_id = chain_of(token)
    if chain_id is None:
        return None
    rows = await sql.rows(FIND, chain_id, token_hash(token), now)
    return dict(rows[0]) if rows else None


async def attach(chain_id: int, channel_id: int, openid: str, member_id: int, now: datetime) -> None:
    """The account joined: every open session of it now speaks for the member."""
    await MemberSession.filter(chain_id=chain_id, channel_id=channel_id, openid=openid, revoked_at=None,
                               expires_at__gt=now).update(member_id=member_id)


async def revoke(chain_id: int, session_id: int, now: datetime) -> None:
    await MemberSession.filter(chain_id=chain_id, id=session_id, revoked_at=None).update(revoked_at=now)
