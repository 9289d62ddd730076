"""The chain's own webhooks (admin key): subscriptions, and their deliveries by status, replayed."""
from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from yarl import URL

from loyalty_core import webhooks

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .admin import ERR_AUTH

Topic = Literal[webhooks.TOPICS + (webhooks.ALL,)]  # type: ignore[valid-type]


class NewWebhook(s.Body):
    url: str = Field(min_length=8, max_length=2000, description="http(s) URL the chain's system listens on")
    events: list[Topic] = Field(min_length=1, max_length=len(webhooks.TOPICS) + 1,
                                description='the topics it wants; "*" for all of them')

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018  (raises on a port that is no number or out of range)
            host = URL(url).host
        except ValueError:
            raise ValueError("not a URL: its host or port is malformed") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not host:
            raise ValueError("an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL: deliveries are signed (X-Loyalty-Signature)")
        if any(ord(c) < 33 or ord(c) > 126 for c in url):
            raise ValueError("the URL must be ASCII without spaces (percent-encode the rest)")
        return url


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="signs every delivery (X-Loyalty-Signature); shown only in this answer")


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int | None
    event_id: str | None = Field(description="the event's id: the same in every delivery of it, to dedupe on")
    type: str | None
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    delivered_at: str | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveryQuery(s.PageQuery):
    status: Literal["pending", "delivered", "dead"] | None = None


@API.route("POST", "/v1/webhooks", auth="admin:configure", summary="Subscribe the chain's system to events",
           tag="webhooks", body=NewWebhook, response=WebhookCreated, status=201, idempotent="optional",
           errors=ERR_AUTH + ("validation_error",),
           description="Each event of the topics is POSTed to the URL as JSON {id, type, created_at, data} with "
                       "X-Loyalty-Event-Id, X-Loyalty-Event and X-Loyalty-Signature: t=<unix>,v1=<hex "
                       "HMAC-SHA256(secret, t + \".\" + body)>. A 2xx answer is delivered; anything else is tried "
                       "again with backoff for 24 h, then the delivery is dead (list and replay below). The "
                       "secret is shown once, here.")
async def subscribe(call: Call):
    def shape(made: webhooks.Subscribed) -> Reply:
        return Reply({**made.view, "secret": made.secret}, 201)

    made = await webhooks.subscribe(call.chain_id, call.body.url, list(call.body.events), call.services.vault,
                                    call.services.clock.now(), seal=call.seal(shape))
    return await call.answer(shape, made)


@API.route("GET", "/v1/webhooks", auth="admin:read", summary="The chain's webhooks (never their secrets)",
           tag="webhooks", query=s.PageQuery, response=WebhookPage, errors=ERR_AUTH)
async def list_webhooks(call: Call):
    return await s.id_page(webhooks.in_chain(call.chain_id), call.query, webhooks.view)


@API.route("DELETE", "/v1/webhooks/{webhook_id}", auth="admin:configure", summary="Unsubscribe a webhook",
           tag="webhooks", status=204, errors=ERR_AUTH + ("not_found",),
           description="No more deliveries to it; those still waiting are dropped.")
async def unsubscribe(call: Call):
    await webhooks.unsubscribe(call.chain_id, call.path_id("webhook_id"))
    return Reply(None, 204)


@API.route("GET", "/v1/webhooks/deliveries", auth="admin:read", summary="Webhook deliveries, by status",
           tag="webhooks", query=DeliveryQuery, response=DeliveryPage, errors=ERR_AUTH,
           description="?status=dead lists what failed for 24 h; pending what is still being tried.")
async def list_deliveries(call: Call):
    return await s.id_page(webhooks.deliveries(call.chain_id, call.query.status), call.query, webhooks.delivery_view)


@API.route("POST", "/v1/webhooks/deliveries/{delivery_id}/replay", auth="admin:configure",
           summary="Send a delivery again now", tag="webhooks", response=DeliveryOut, idempotent="optional",
           errors=ERR_AUTH + ("not_found", "delivery_pending"),
           description="Due now, with a new 24 h window: a dead delivery once its receiver is fixed, or a delivered "
                       "one its receiver lost. The receiver gets the same event id again. One still being tried is "
                       "409 delivery_pending; one whose webhook was removed is 404.")
async def replay(call: Call):
    return await webhooks.replay(call.chain_id, call.path_id("delivery_id"), call.services.clock.now())
