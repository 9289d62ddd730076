"""Connecting the chain's channels (admin key, owner): its WeChat mini-program app for now."""
from __future__ import annotations

from typing import Annotated, Literal

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, Field, model_validator

from loyalty_core import channels, messages

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH

PAY_FIELDS = ("mch_id", "apiv3_key", "pay_public_key_id", "pay_public_key")
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


class ChannelOut(BaseModel):
    id: int
    platform: str
    app_id: str
    mch_id: str | None
    pay_public_key_id: str | None
    subscribe_templates: SubscribeTemplates | None
    miniprogram_state: str | None
    secrets_set: list[str] = Field(description="which write-only fields are set (their values are never shown)")
    created_at: str
    updated_at: str


class ChannelPage(BaseModel):
    items: list[ChannelOut]
    next_cursor: str | None


@API.route("POST", "/v1/channels", auth="admin:configure", summary="Connect a WeChat app", tag="channels",
           body=WeChatChannel, response=ChannelOut, status=201, idempotent="optional",
           errors=ERR_AUTH + ("already_exists", "validation_error"),
           description="A mini-program app belongs to one chain: connecting one that another chain holds is 409 "
                       "already_exists. Connecting it again from this chain replaces the whole connection (200): "
                       "send every field you want kept. Secrets are write-only; the answer lists which are set. "
                       "With the WeChat Pay fields, the merchant (mch_id) is listed as a channel of its own "
                       "(platform wechatpay), which pay notifications name; a merchant of another chain is 409. "
                       "Marketplace shops come with their channels (not yet accepted).")
async def connect(call: Call):
    body = call.body
    channel, created = await channels.connect_wechat(call.chain_id, body.model_dump(exclude_none=True), call.services.vault,
                                                     call.services.clock.now())
    call.services.channels.drop(("wechat", body.app_id))
    if body.mch_id:
        call.services.channels.drop(("wechatpay", body.mch_id))
    return Reply(channels.view(channel, call.services.vault), 201 if created else 200)


@API.route("GET", "/v1/channels", auth="admin:read", summary="The chain's connected channels", tag="channels",
           query=s.PageQuery, response=ChannelPage, errors=ERR_AUTH)
async def list_channels(call: Call):
    vault = call.services.vault
    return await s.id_page(channels.in_chain(call.chain_id), call.query, lambda channel: channels.view(channel, vault))
