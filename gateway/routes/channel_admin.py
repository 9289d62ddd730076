"""Connecting the chain's channels (admin key, owner): its WeChat mini-program app and marketplace shops."""
from __future__ import annotations

from typing import Annotated, Literal

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, Field, RootModel, ValidationError, model_validator

from loyalty_core import channels, inbox, messages
from loyalty_core.marketplace import Shop
from loyalty_core.errors import NotFound, ValidationFailed, field_errors

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH

PAY_FIELDS = ("mch_id", "apiv3_key", "pay_public_key_id", "pay_public_key")
PLATFORMS = ("wechat", *channels.MARKETPLACES)
KEYWORD = r"^[a-z_]{1,32}[0-9]{1,3}$"  # a template's keyword: thing1, number2, character_string12, time3


class MessageTemplate(s.Body):
    template_id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,128}$", description="the template's id in the mini-program's console")
    page: str | None = Field(None, min_length=1, max_length=256, pattern=s.NO_NUL,
                             description="the mini-program page a tap on the message opens, e.g. pages/points/index")
    data: dict[Annotated[str, Field(pattern=KEYWORD)], Annotated[str, Field(min_length=1, max_length=200,
                                                                            pattern=s.NO_NUL)]] = Field(
        min_length=1, max_length=20,
        description="each keyword of the template and its text, naming the kind's figures as {points}")


class SubscribeTemplates(s.Body):
    """Per kind of message, the template it is sent with; a kind left out is not sent."""

    points_earned: MessageTemplate | None = Field(None, description="figures: " + ", ".join(messages.KINDS["points_earned"]))
    coupon_received: MessageTemplate | None = Field(
        None, description="figures: " + ", ".join(messages.KINDS["coupon_received"]))
    points_expiring: MessageTemplate | None = Field(
        None, description="figures: " + ", ".join(messages.KINDS["points_expiring"]))

    @model_validator(mode="after")
    def _known_figures(self):
        for kind, figures in messages.KINDS.items():
            template = getattr(self, kind)
            for keyword, text in (template.data.items() if template else ()):
                try:
                    named = messages.placeholders(text)
                except ValueError as error:
                    raise ValueError(f"{kind}.data.{keyword}: {error}") from None
                if unknown := sorted(name for name in named if name not in figures):
                    raise ValueError(f"{kind}.data.{keyword} names {', '.join(unknown)}: "
                                     f"a {kind} message has {', '.join(figures)}")
        return self


class WeChatChannel(s.Body):
    platform: Literal["wechat"]
    app_id: str = Field(pattern=r"^wx[0-9a-f]{16}$", description="the mini-program's AppID (wx and 16 hex digits)")
    app_secret: str = Field(pattern=r"^[0-9A-Za-z]{16,64}$", description="its AppSecret (write-only)")
    token: str | None = Field(None, pattern=r"^[0-9A-Za-z]{3,32}$",
                              description="the server push Token (3-32 letters or digits; write-only)")
    aes_key: str | None = Field(None, pattern=r"^[0-9A-Za-z]{43}$",
                                description="the push EncodingAESKey, 43 characters, for safe mode (write-only)")
    mch_id: str | None = Field(None, pattern=r"^[0-9]{1,32}$", description="WeChat Pay merchant id, for pay-to-earn")
    apiv3_key: str | None = Field(None, pattern=r"^[0-9A-Za-z]{32}$", description="the APIv3 key (write-only)")
    pay_public_key_id: str | None = Field(None, pattern=r"^[0-9A-Za-z_]{1,64}$",
                                          description="WeChat Pay's public key id: what it sends as Wechatpay-Serial")
    pay_public_key: str | None = Field(None, max_length=4096, description="WeChat Pay's public key, PEM (write-only)")
    subscribe_templates: SubscribeTemplates | None = Field(
        None, description="subscribe messages: the template of each kind (docs/mini-program.md)")
    miniprogram_state: Literal["formal", "trial", "developer"] = Field(
        "formal", description="which version of the mini-program a message opens")

    @model_validator(mode="after")
    def _pay_fields_together(self):
        given = [name for name in PAY_FIELDS if getattr(self, name) is not None]
        if given and len(given) != len(PAY_FIELDS):
            missing = ", ".join(name for name in PAY_FIELDS if name not in given)
            raise ValueError(f"pay-to-earn needs all of {', '.join(PAY_FIELDS)}: {missing} missing")
        if self.pay_public_key is not None:
            try:
                load_pem_public_key(self.pay_public_key.encode())
            except ValueError:
                raise ValueError("pay_public_key is not a PEM public key") from None
        if self.aes_key is not None and self.token is None:
            raise ValueError("aes_key (safe mode) needs the token too")
        return self


class YouzanChannel(s.Body):
    platform: Literal["youzan"]
    shop_id: str = Field(pattern=r"^[0-9]{1,20}$", description="the shop's kdt_id")
    client_id: str = Field(pattern=r"^[0-9A-Za-z]{8,64}$", description="the Youzan cloud app's client_id")
    client_secret: str = Field(pattern=r"^[0-9A-Za-z]{8,64}$", description="its client_secret (write-only)")


class DouyinChannel(s.Body):
    platform: Literal["douyin"]
    shop_id: str = Field(pattern=r"^[0-9]{1,20}$", description="the Douyin shop's id (shop_id in its messages)")
    app_key: str = Field(pattern=r"^[0-9A-Za-z]{6,64}$", description="the Douyin shop open platform app's app_key")
    app_secret: str = Field(pattern=r"^[0-9A-Za-z-]{8,64}$", description="its app_secret (write-only)")


class ElemeChannel(s.Body):
    platform: Literal["eleme"]
    shop_id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$",
                         description="the Eleme retail partner's source (what its pushes name)")
    secret: str = Field(pattern=r"^[0-9A-Za-z]{8,64}$", description="the source's secret (write-only)")


class TaobaoChannel(s.Body):
    platform: Literal["taobao"]
    shop_id: str = Field(pattern=r"^[0-9]{1,20}$", description="the seller's Taobao user id (user_id in TMC messages)")
    app_key: str = Field(pattern=r"^[0-9]{6,16}$", description="the TOP app's app_key")
    app_secret: str = Field(pattern=r"^[0-9A-Za-z]{8,64}$", description="its app_secret (write-only)")
    session: str = Field(pattern=r"^[0-9A-Za-z_-]{8,128}$", description="the seller's session key (write-only)")


Connection = Annotated[WeChatChannel | YouzanChannel | DouyinChannel | ElemeChannel | TaobaoChannel,
                       Field(discriminator="platform")]


class ChannelIn(RootModel[Connection]):
    """A connection of one platform (``platform`` says which); a field error names the field as it is in the body."""

    @classmethod
    def model_validate_json(cls, json_data, **kwargs):  # noqa: D102 (the union's tag out of the error paths)
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as error:
            problems = error.errors(include_url=False)
            if any(p["type"] == "json_invalid" for p in problems):
                raise
            for problem in problems:
                if problem["type"].startswith("union_tag"):  # no platform, or one not connectable
                    problem["loc"], problem["msg"] = ("platform",), f"one of {', '.join(PLATFORMS)}"
                elif problem["loc"] and problem["loc"][0] in PLATFORMS:
                    problem["loc"] = problem["loc"][1:]
            raise ValidationFailed(field_errors(problems)) from None


class ChannelOut(BaseModel):
    id: int
    platform: str
    app_id: str | None = None
    shop_id: str | None = None
    client_id: str | None = None
    app_key: str | None = None
    mch_id: str | None = None
    pay_public_key_id: str | None = None
    subscribe_templates: SubscribeTemplates | None = None
    miniprogram_state: str | None = None
    secrets_set: list[str] = Field(description="which write-only fields are set (their values are never shown)")
    created_at: str
    updated_at: str


class ChannelPage(BaseModel):
    items: list[ChannelOut]
    next_cursor: str | None


@API.route("POST", "/v1/channels", auth="admin:configure", summary="Connect a WeChat app or a marketplace shop",
           tag="channels", body=ChannelIn, response=ChannelOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("already_exists", "validation_error"),
           description="A mini-program app, or a marketplace shop, belongs to one chain: connecting one that another "
                       "chain holds is 409 already_exists. Connecting it again from this chain replaces the whole "
                       "connection (200): send every field you want kept. Secrets are write-only; the answer lists "
                       "which are set. With the WeChat Pay fields, the merchant (mch_id) is listed as a channel of "
                       "its own (platform wechatpay), which pay notifications name; a merchant of another chain is "
                       "409.")
async def connect(call: Call):
    body, vault, now = call.body.root, call.services.vault, call.services.clock.now()
    if body.platform == "wechat":
        channel, created = await channels.connect_wechat(call.chain_id, body.model_dump(exclude_none=True), vault, now)
        call.services.channels.drop(("wechat", body.app_id))
        if body.mch_id:
            call.services.channels.drop(("wechatpay", body.mch_id))
    else:
        channel, created = await channels.connect_shop(call.chain_id, body.platform, body.model_dump(), vault, now)
        call.services.channels.drop((body.platform, body.shop_id))
    return Reply(channels.view(channel, vault), 201 if created else 200)


@API.route("GET", "/v1/channels", auth="admin:read", summary="The chain's connected channels", tag="channels",
           query=s.PageQuery, response=ChannelPage, errors=ERR_AUTH)
async def list_channels(call: Call):
    vault = call.services.vault
    return await s.id_page(channels.in_chain(call.chain_id), call.query, lambda channel: channels.view(channel, vault))


class InboxEventOut(BaseModel):
    id: int
    event_id: str = Field(description="the platform's own message id")
    kind: Literal["paid", "confirmed", "refunded", "closed", "other"]
    order_id: str
    buyer_id: str | None
    status: Literal["received", "applied", "waiting", "failed"]
    reason: str | None = Field(description="waiting: no_payment or no_member; failed: the refusal; applied: "
                                           "'nothing to do' when it had no effect")
    attempts: int
    next_attempt_at: str | None
    received_at: str
    applied_at: str | None


class InboxPage(BaseModel):
    items: list[InboxEventOut]
    next_cursor: str | None


class InboxQuery(s.PageQuery):
    status: Literal["received", "applied", "waiting", "failed"] | None = None


async def _shop(call: Call) -> Shop:
    channel = await channels.connected_by_id(call.chain_id, call.path_id("channel_id"), call.services.vault)
    if channel is None or channel.platform not in channels.MARKETPLACES:
        raise NotFound("No such marketplace channel")
    return Shop.of(channel)


@API.route("GET", "/v1/channels/{channel_id}/inbox", auth="admin:read", summary="A shop's incoming events",
           tag="channels", query=InboxQuery, response=InboxPage, errors=ERR_AUTH + ("not_found",),
           description="Every event the shop's platform sent, as stored before it was applied, oldest first; "
                       "?status=waiting lists what waits for its payment or for its buyer to become a member.")
async def list_inbox(call: Call):
    shop = await _shop(call)
    return await s.id_page(inbox.of_channel(call.chain_id, shop.channel_id, call.query.status), call.query, inbox.view)


@API.route("POST", "/v1/channels/{channel_id}/inbox/{event_id}/replay", auth="admin:configure",
           summary="Apply a stored event again", tag="channels", response=InboxEventOut, idempotent="optional",
           errors=ERR_AUTH + ("not_found",),
           description="Tries the event now, whatever its status: one applied before has no second effect.")
async def replay_inbox(call: Call):
    shop = await _shop(call)
    event_id = call.path_code("event_id", 128)
    row = await inbox.replay(shop, event_id, await call.program(), call.services.vault,
                             call.services.clock.now(), call.services.marketplaces)
    return inbox.view(row)
