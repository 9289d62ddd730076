"""The worker's push of members' points to Youzan, which keeps its own member points: on
``balance.changed``, the member's points total is set in every Youzan shop of the chain for every
Youzan account (``yz_open_id``) bound to the member, with ``youzan.crm.customer.points.sync``.

Each (shop, account) is an outbox row of its own (``youzan.points``), so one that Youzan refuses
holds up no other. A sync sets the total (``points``: the balance as it is when the row is
delivered, read under a lock per account so that the last sync carries the latest balance), and
carries the row's id and that total as ``biz_value``, which Youzan treats as the same operation
for three months: a resent row cannot count twice, and a late one sets today's total. A failed
call raises; the outbox retries that row with backoff.

Youzan cloud calls: ``POST /auth/token`` ``{client_id, client_secret, authorize_type: "silent",
grant_id: <kdt_id>, refresh}`` → ``data.access_token``, ``data.expires`` (ms since the epoch),
kept in Redis for every process until a minute before it expires (one fetch at a time:
``adapters.tokens``), fetched again once when the
gateway says the token is invalid or expired (``gw_err_resp.err_code`` 4202, 4203); then ``POST
/api/youzan.crm.customer.points.sync/4.0.0?access_token=…`` with JSON ``{user: {account_type: 4
(yz_open_id), account_id}, points, reason, biz_value}`` → ``{success, code, message, data:
{is_success}}``.

Sources: Youzan cloud's API docs for ``youzan.crm.customer.points.sync@4.0.0`` (同步客户积分:
``user.account_type``/``account_id``, ``points`` the total after the sync, ``biz_value`` "相同账号下三个
月内相同值会被视为重复操作", ``reason``; account types 1 fans_id, 2 mobile, 3 open_user_id, 4
yzOpenId), as generated TypeScript models of it and client code calling it (``syncUserPoints``,
``gw_err_resp.err_msg`` for 4.0.0 errors) show, and the open SDK's ``/auth/token`` silent grant.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import aiohttp
import orjson

from adapters import tokens
from loyalty_core import ledger, outbox
from loyalty_core.channels import connected_by_id
from loyalty_core.crypto import Vault
from loyalty_core.errors import PlatformUnavailable
from loyalty_core.models import Channel, Identity

from .base import OpenApi

if TYPE_CHECKING:
    from . import OpenApis

TOPIC = "youzan.points"
NAMESPACE = uuid.UUID("6f1c0a52-7d5e-4f0b-9a36-2f1d7c9e4b10")  # youzan.points row ids, from the event's
SYNC = "/api/youzan.crm.customer.points.sync/4.0.0"
TOKEN = "/auth/token"
TOKEN_REFUSED = {4202, 4203}  # the access token is invalid or has expired
YZ_OPEN_ID = 4
REASON = "会员积分同步"


class YouzanPoints:
    """``balance.changed`` → one ``youzan.points`` row per Youzan shop of the chain and Youzan account
    bound to the member (ids derived from the event's: a resent event adds none), so that one shop
    or account Youzan refuses holds up no other."""

    topics = ("balance.changed",)

    def __init__(self, clock) -> None:
        self.clock = clock

    async def __call__(self, event) -> None:
        member_id = (event.payload or {}).get("member_id")
        if not isinstance(member_id, int):
            return
        chain_id = event.chain_id
        accounts = await Identity.filter(chain_id=chain_id, member_id=member_id, channel="youzan").values_list(
            "external_id", flat=True)
        shops = await Channel.filter(chain_id=chain_id, platform="youzan").values_list("id", flat=True) if accounts else []
        await outbox.emit_once(chain_id, [
            (str(uuid.uuid5(NAMESPACE, f"{event.event_id}:{shop}:{account}")), TOPIC,
             {"member_id": member_id, "channel_id": shop, "account": account})
            for shop in sorted(shops) for account in sorted(accounts)], self.clock.now())


class YouzanPointsSync:
    """One ``youzan.points`` row: the account's total set in the shop to the member's points as they
    are now, one sync of an account at a time (a Redis lock across processes), so that the last
    sync sent carries the latest balance read. ``biz_value`` is the row's id and the total: a resent
    row with the same total is dropped by Youzan, one with a newer total is not."""

    topics = (TOPIC,)

    def __init__(self, apis: "OpenApis", vault: Vault) -> None:
        self.apis, self.vault = apis, vault

    async def __call__(self, event) -> None:
        payload, chain_id = event.payload or {}, event.chain_id
        member_id, account = payload.get("member_id"), str(payload.get("account") or "")
        shop = await connected_by_id(chain_id, int(payload.get("channel_id") or 0), self.vault)
        if shop is None or not await Identity.exists(chain_id=chain_id, channel="youzan", external_id=account,
                                                      member_id=member_id):
            return  # the shop was removed, or the account is another member's now (its own events sync it)
        api = self.apis.api("youzan")
        lock = api.cache.key(f"{{chain:{chain_id}}}", "youzan", "sync", shop.external_id, account)
        async with tokens.one_at_a_time(api.cache.redis, lock, lambda why: PlatformUnavailable(f"youzan: {why}")):
            points = max((await ledger.balances(chain_id, member_id)).get("points", 0), 0)
            await sync(api, shop, account, points, f"{event.event_id}:{points}"[:64])


async def sync(api: OpenApi, shop, account: str, points: int, biz_value: str) -> None:
    """Set ``account``'s points in ``shop`` to ``points`` (PlatformUnavailable when Youzan refuses)."""
    body = {"user": {"account_type": YZ_OPEN_ID, "account_id": account}, "points": points, "reason": REASON,
            "biz_value": biz_value}
    for last in (False, True):
        token = await access_token(api, shop)
        answer = await _post(api, f"{SYNC}?access_token={token}", body)
        if (answer.get("gw_err_resp") or {}).get("err_code") in TOKEN_REFUSED and not last:
            await tokens.forget(api.cache.redis, _token_key(shop, api), token)
            continue  # the token was revoked or expired early: once more with a new one
        if answer.get("success") and (answer.get("data") or {}).get("is_success"):
            return
        raise PlatformUnavailable(f"youzan points sync: {_refusal(answer)}")


async def access_token(api: OpenApi, shop) -> str:
    """The shop's access token, shared by every process (``adapters.tokens``)."""
    return await tokens.shared(api.cache.redis, _token_key(shop, api), lambda: _new_token(api, shop),
                               lambda why: PlatformUnavailable(f"youzan: {why}"), margin=60)


def _token_key(shop, api: OpenApi) -> str:
    return api.cache.key(f"{{chain:{shop.chain_id}}}", "youzan", "token", shop.external_id)


async def _new_token(api: OpenApi, shop) -> tuple[str, int]:
    answer = await _post(api, TOKEN, {"client_id": shop.settings.get("client_id"),
                                      "client_secret": shop.secret("client_secret"),
                                      "authorize_type": "silent", "grant_id": shop.external_id, "refresh": False})
    data = answer.get("data") or {}
    if not answer.get("success") or not data.get("access_token"):
        raise PlatformUnavailable(f"youzan token: {_refusal(answer)}")
    return data["access_token"], int(int(data.get("expires") or 0) / 1000 - api.clock.now().timestamp())


async def _post(api: OpenApi, path: str, body: dict) -> dict:
    try:
        async with api.http.post(api.base_url + path, data=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"}) as response:
            answer = await response.json(content_type=None, loads=orjson.loads)
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as error:
        raise PlatformUnavailable(f"youzan {path.split('?')[0]}: {type(error).__name__}") from None
    return answer if isinstance(answer, dict) else {}


def _refusal(answer: dict) -> str:
    gateway = answer.get("gw_err_resp") or {}
    return f"{gateway.get('err_code') or answer.get('code')} {gateway.get('err_msg') or answer.get('message')}"[:300]
