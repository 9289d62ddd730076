"""Channels a chain connects: its WeChat mini-program app and its marketplace shops (Youzan, Douyin
shop, Eleme retail, Taobao/Tmall).

A channel is found by what a login or a push names, its platform and app (or shop) id, whatever
the chain: one app belongs to one chain, so connecting it from a second chain is refused (409
``already_exists``) and connecting it again from its own chain replaces its settings and secrets
(the body is the whole connection; a secret left out is removed). Secrets are kept encrypted and
are never shown: a channel's view says which of them are set.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from .crypto import Vault
from .errors import AlreadyExists
from .models import Channel

# What each platform's connection holds: shown settings, and write-only secrets (API.md, POST /v1/channels).
FIELDS = {
    "wechat": {"id": "app_id", "settings": ("mch_id", "pay_public_key_id", "subscribe_templates", "miniprogram_state"),
               "secrets": ("app_secret", "token", "aes_key", "apiv3_key", "pay_public_key")},
    # the WeChat Pay merchant of an app, found by the mch_id its notifications name
    "wechatpay": {"id": "mch_id", "settings": ("app_id", "pay_public_key_id"), "secrets": ("apiv3_key", "pay_public_key")},
    # marketplace shops, found by the shop id their pushes name
    "youzan": {"id": "shop_id", "settings": ("client_id",), "secrets": ("client_secret",)},
    "douyin": {"id": "shop_id", "settings": ("app_key",), "secrets": ("app_secret",)},
    "eleme": {"id": "shop_id", "settings": (), "secrets": ("secret",)},  # shop_id: the partner's source
    "taobao": {"id": "shop_id", "settings": ("app_key",), "secrets": ("app_secret", "session")},
}
MARKETPLACES = ("youzan", "douyin", "eleme", "taobao")  # the marketplace platforms whose shops can be connected


@dataclass(frozen=True)
class Connected:
    """A channel as an adapter uses it: with its secrets in clear."""

    id: int
    chain_id: int
    platform: str
    external_id: str
    settings: dict
    secrets: dict

    def secret(self, name: str) -> str | None:
        return self.secrets.get(name)


async def connect(chain_id: int, platform: str, external_id: str, settings: dict, secrets: dict, vault: Vault,
                  now: datetime) -> tuple[Channel, bool]:
    """Connect (or reconnect) an app of this chain; True when it was new."""
    sealed = vault.encrypt(orjson.dumps({k: v for k, v in secrets.items() if v is not None}).decode())
    shown = {k: v for k, v in settings.items() if v is not None}
    existing = await Channel.get_or_none(platform=platform, external_id=external_id)
    if existing is None:
        try:
            return await Channel.create(chain_id=chain_id, platform=platform, external_id=external_id, settings=shown,
                                        secrets_enc=sealed, created_at=now, updated_at=now), True
        except IntegrityError:  # connected meanwhile, by this chain or another
            existing = await Channel.get(platform=platform, external_id=external_id)
    if existing.chain_id != chain_id:
        raise AlreadyExists(f"This {platform} app is connected to another chain")
    existing.settings, existing.secrets_enc, existing.updated_at = shown, sealed, now
    await existing.save(update_fields=["settings", "secrets_enc", "updated_at"])
    return existing, False


async def connect_wechat(chain_id: int, fields: dict, vault: Vault, now: datetime) -> tuple[Channel, bool]:
    """A WeChat app, and its WeChat Pay merchant when the pay fields are there (a channel of its own,
    ``wechatpay``/mch_id, which pay notifications name): both or neither."""
    async with in_transaction():
        if fields.get("mch_id"):
            await connect(chain_id, "wechatpay", fields["mch_id"],
                          {"app_id": fields["app_id"], "pay_public_key_id": fields["pay_public_key_id"]},
                          {name: fields[name] for name in FIELDS["wechatpay"]["secrets"]}, vault, now)
        wechat = FIELDS["wechat"]
        return await connect(chain_id, "wechat", fields["app_id"], {name: fields.get(name) for name in wechat["settings"]},
                             {name: fields.get(name) for name in wechat["secrets"]}, vault, now)


async def connect_shop(chain_id: int, platform: str, fields: dict, vault: Vault, now: datetime) -> tuple[Channel, bool]:
    """A marketplace shop of this chain (``FIELDS[platform]``)."""
    shape = FIELDS[platform]
    return await connect(chain_id, platform, fields[shape["id"]], {name: fields.get(name) for name in shape["settings"]},
                         {name: fields.get(name) for name in shape["secrets"]}, vault, now)


def in_chain(chain_id: int):
    """The chain's channels, as a query to page."""
    return Channel.filter(chain_id=chain_id)


def view(channel: Channel, vault: Vault) -> dict:
    """What an operator reads: never a secret, only which ones are set."""
    fields = FIELDS[channel.platform]
    held = orjson.loads(vault.decrypt(channel.secrets_enc) or "{}")
    return {"id": channel.id, "platform": channel.platform, fields["id"]: channel.external_id,
            **{name: channel.settings.get(name) for name in fields["settings"]},
            "secrets_set": [name for name in fields["secrets"] if held.get(name)],
            "created_at": channel.created_at.isoformat(), "updated_at": channel.updated_at.isoformat()}


async def connected(platform: str, external_id: str, vault: Vault) -> Connected | None:
    """The connected app a login or a push names (any chain's), or None."""
    return _opened(await Channel.get_or_none(platform=platform, external_id=external_id), vault)


async def all_of(platform: str, vault: Vault) -> list[Connected]:
    """Every chain's connected channels of a platform (what the worker pulls Taobao's messages for)."""
    return [_opened(channel, vault) for channel in await Channel.filter(platform=platform).order_by("id")]


async def of_app(platform: str, app_key: str, vault: Vault) -> Connected | None:
    """A connected shop of that platform app (any chain's): what verifies a check of the app's push
    URL, which names no shop. Scans the platform's shops (such a check comes once per URL set)."""
    for channel in await Channel.filter(platform=platform).order_by("id"):
        if channel.settings.get("app_key") == app_key:
            return _opened(channel, vault)
    return None


async def connected_by_id(chain_id: int, channel_id: int, vault: Vault) -> Connected | None:
    return _opened(await Channel.get_or_none(chain_id=chain_id, id=channel_id), vault)


def _opened(channel: Channel | None, vault: Vault) -> Connected | None:
    if channel is None:
        return None
    return Connected(channel.id, channel.chain_id, channel.platform, channel.external_id, dict(channel.settings),
                     orjson.loads(vault.decrypt(channel.secrets_enc) or "{}"))
