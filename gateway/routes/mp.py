"""Mini-program API: what a member does in the chain's WeChat mini-program (member token).

``POST /v1/mp/login`` turns a ``wx.login()`` code into a member token; everything else takes that
token (``Authorization: Bearer mt.…``). A token whose WeChat account has not joined yet is
accepted by ``/v1/mp/join``, ``DELETE /v1/mp/session``, ``GET /v1/mp/rewards`` and
``/v1/mp/me/subscriptions`` only (403 ``join_required`` elsewhere).
"""
from __future__ import annotations

import asyncio
import io
import uuid
from datetime import date
from typing import Annotated, Literal

import qrcode
import qrcode.image.pure
import qrcode.image.svg
from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from adapters.wechat.client import App
from loyalty_core import behaviors, codes, coupons, inbox, joining, mall, members, messages, sessions
from loyalty_core.errors import NotFound
from loyalty_core.models import Reward

from .. import schemas as s
from ..api import Call, Reply
from . import API
from .coupon_admin import CouponPage
from .mall_admin import RedemptionOut, RewardPage

MEMBER = ("unauthorized", "join_required")
WECHAT = ("wechat_code_invalid", "wechat_error")
ASCII_CODE = r"^[\x21-\x7e]{1,128}$"


class Login(s.Body):
    app_id: str = Field(pattern=r"^wx[0-9a-f]{16}$", description="the mini-program's AppID")
    code: str = Field(pattern=ASCII_CODE, description="what wx.login() gave the mini-program (valid 5 minutes, once)")


class LoginOut(BaseModel):
    token: str = Field(description="the member token: Authorization: Bearer <token> on every /v1/mp route")
    expires_at: str
    member: s.MemberOut | None = Field(description="the member this WeChat account belongs to; null: not joined yet")
    needs_join: bool


class Join(s.Body):
    phone_code: str = Field(pattern=ASCII_CODE, description="the code of the getPhoneNumber button (once)")
    nickname: str | None = Field(None, min_length=1, max_length=50, pattern=s.NO_NUL)
    birthday: date | None = None
    store_code: str | None = Field(None, min_length=1, max_length=32, pattern=s.NO_NUL,
                                   description="the store that signed the member up (a QR code at its counter)")
    inviter: int | None = Field(None, ge=1, le=2**53 - 1, description="the member id of who shared the invitation")


class JoinOut(BaseModel):
    member: s.MemberOut
    created: bool = Field(description="false: the phone was a member's already, now linked to this WeChat account")


class CodeOut(BaseModel):
    code: str = Field(description="18 digits; the till scans it once, within expires_in seconds")
    expires_in: int
    refresh_after: int = Field(description="seconds after which the mini-program should fetch a new code")
    qr_svg: str


class CheckinOut(BaseModel):
    points_awarded: int
    streak: int
    balances: s.Balances


class Task(s.Body):
    ref: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                            description="review: what was reviewed (an order id); unused otherwise")


class TaskOut(BaseModel):
    task: str
    points_awarded: int
    capped: bool = Field(description="recorded past the behaviour's cap: no points")
    balances: s.Balances


class Binding(s.Body):
    platform: Literal["youzan", "douyin", "eleme", "taobao"]
    buyer_id: str = Field(pattern=r"^[A-Za-z0-9_.:@-]{1,64}$", description="the buyer's id on that platform")


class BindingOut(BaseModel):
    platform: str
    buyer_id: str
    member_id: int


@API.route("POST", "/v1/mp/login", auth=None, summary="Log in with wx.login()'s code", tag="mini-program",
           body=Login, response=LoginOut, errors=("not_found",) + WECHAT,
           description="WeChat's code2Session for that connected app. The session key stays on the server. The "
                       "token is valid 7 days; log in again for a new one. member is null and needs_join true "
                       "until the account joins (POST /v1/mp/join).")
async def login(call: Call):
    body, now = call.body, call.services.clock.now()
    app, channel_id = await _app(call, body.app_id)
    answer = await call.services.wechat.code_to_session(app, body.code)
    account = sessions.WeChatAccount(body.app_id, answer.openid, answer.unionid)
    opened, member = await sessions.log_in(app.chain_id, channel_id, account, answer.session_key,
                                           call.services.vault, now)
    view = await members.member_view(member, await call.program_of(app.chain_id), call.services.vault, now) \
        if member else None
    return {"token": opened.token, "expires_at": opened.session.expires_at.isoformat(), "member": view,
            "needs_join": member is None}


async def _app(call: Call, app_id: str) -> tuple[App, int]:
    """The connected app (any chain's: the app names its chain) and its channel id."""
    found = await call.connected("wechat", app_id)
    return App.of(found), found.id


@API.route("POST", "/v1/mp/join", auth="member", summary="Join with the phone WeChat vouches for", tag="mini-program",
           body=Join, response=JoinOut, status=201, idempotent="optional",
           errors=("unauthorized", "validation_error", "already_exists") + WECHAT,
           description="Reads the phone with WeChat's getuserphonenumber. A member with that phone (who joined at "
                       "the till, say) gets this WeChat account linked and keeps their points (created false); "
                       "anyone else is registered (welcome points and coupons once per phone, ever). inviter credits "
                       "that member's invite behaviour within its monthly cap, for a new member only. The token "
                       "stays valid and now speaks for the member. Already joined: 200 with the member.")
async def join(call: Call):
    principal, now, program = call.principal, call.services.clock.now(), await call.program()
    if principal.member_id is not None:
        member = await codes.member_by_id(call.chain_id, principal.member_id)
        return Reply({"member": await members.member_view(member, program, call.services.vault, now),
                      "created": False}, 200)
    app, _ = await _app(call, principal.app_id)
    phone = await call.services.wechat.phone_number(app, call.body.phone_code)
    body = call.body
    joined = await joining.join(call.chain_id, joining.Joining(
        phone=phone, account=sessions.WeChatAccount(principal.app_id, principal.openid), channel_id=principal.channel_id,
        nickname=body.nickname, birthday=body.birthday, store_code=body.store_code, inviter=body.inviter),
        program, call.services.vault, now)
    view = await members.member_view(joined.member, program, call.services.vault, now)
    return Reply({"member": view, "created": joined.created}, 201)


@API.route("DELETE", "/v1/mp/session", auth="member", summary="Log out: revoke this member token", tag="mini-program",
           status=204, errors=("unauthorized",))
async def logout(call: Call):
    await sessions.revoke(call.chain_id, call.principal.session_id, call.services.clock.now())
    return Reply(None, 204)


@API.route("GET", "/v1/mp/me", auth="member", summary="The member, balances and tier progress", tag="mini-program",
           response=s.MemberOut, errors=MEMBER)
async def me(call: Call):
    member = await codes.member_by_id(call.chain_id, call.member_id)
    return await members.member_view(member, await call.program(), call.services.vault, call.services.clock.now())


@API.route("GET", "/v1/mp/me/code", auth="member", summary="A dynamic member code to show at the till",
           tag="mini-program", response=CodeOut, errors=MEMBER,
           description="Each call issues a new code, valid expires_in seconds and for one order; fetch a new one "
                       "after refresh_after seconds. qr_svg is the code as an SVG QR code.")
async def member_code(call: Call):
    issued = await _issue_code(call)
    return {"code": issued.code, "expires_in": issued.expires_in, "refresh_after": issued.refresh_after,
            "qr_svg": await asyncio.to_thread(_svg, issued.code)}


@API.route("GET", "/v1/mp/me/code.png", auth="member", summary="A dynamic member code as a PNG QR code",
           tag="mini-program", errors=MEMBER,
           description="A new code, as GET /v1/mp/me/code issues; the code and its lifetime are in the headers "
                       "X-Member-Code, X-Expires-In and X-Refresh-After.")
async def member_code_png(call: Call):
    issued = await _issue_code(call)
    return web.Response(body=await asyncio.to_thread(_png, issued.code), content_type="image/png", headers={
        "X-Member-Code": issued.code, "X-Expires-In": str(issued.expires_in),
        "X-Refresh-After": str(issued.refresh_after), "Cache-Control": "no-store"})


async def _issue_code(call: Call) -> codes.MemberCode:
    member = await codes.member_by_id(call.chain_id, call.member_id)
    return await codes.issue(call.services.cache, call.services.vault, call.chain_id, member.id,
                             call.services.clock.now())


def _svg(code: str) -> str:
    return qrcode.make(code, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2).to_string(
        encoding="unicode")


def _png(code: str) -> bytes:
    out = io.BytesIO()  # PyPNG (a dependency), not Pillow, which qrcode would use only if it happened to be there
    qrcode.make(code, image_factory=qrcode.image.pure.PyPNGImage, box_size=10, border=2).save(out)
    return out.getvalue()


@API.route("POST", "/v1/mp/me/checkins", auth="member", summary="Check in for today", tag="mini-program",
           response=CheckinOut, status=201, idempotent="optional",
           errors=MEMBER + ("already_checked_in", "member_frozen"),
           description="Once a day in the chain's timezone; streak counts consecutive days and streak_bonus adds "
                       "its points on the days the streak reaches it. Twice a day: 409 already_checked_in.")
async def check_in(call: Call):
    done = await behaviors.record(call.chain_id, call.member_id, "checkin", await call.program(),
                                  call.services.clock.now())
    return Reply({"points_awarded": done["points"], "streak": done["streak"] or 1, "balances": done["balances"]}, 201)


TASKS = ("review", "share", "complete_profile")


@API.route("POST", "/v1/mp/me/tasks/{task}", auth="member", summary="Do a task: review, share, complete_profile",
           tag="mini-program", body=Task, response=TaskOut, status=201, idempotent="optional",
           errors=MEMBER + ("not_found", "already_done", "member_frozen", "validation_error"),
           description="Behaviour points within the program's caps: review once per ref, at most daily_cap a day; "
                       "share at most daily_cap a day (each request one share; send an Idempotency-Key to make a "
                       "retry the same share); complete_profile once ever. Past a cap: recorded, 0 points, capped.")
async def do_task(call: Call):
    task = call.request.match_info["task"]
    if task not in TASKS:
        raise NotFound(f"No task {task[:40]!r}: one of {', '.join(TASKS)}")
    cause = f"claim:{call.claim_id}" if call.claim_id else uuid.uuid4().hex
    done = await behaviors.record(call.chain_id, call.member_id, task, await call.program(),
                                  call.services.clock.now(), ref=call.body.ref, cause=cause)
    return Reply({"task": task, "points_awarded": done["points"], "capped": done["capped"],
                  "balances": done["balances"]}, 201)


@API.route("GET", "/v1/mp/me/ledger", auth="member", summary="The member's own history, newest first",
           tag="mini-program", query=s.PageQuery, response=s.LedgerPage, errors=MEMBER)
async def my_ledger(call: Call):
    items = await members.ledger_entries(call.chain_id, call.member_id, s.decode_cursor(call.query.cursor),
                                         call.query.limit + 1)
    items, cursor = s.cut(items, call.query.limit, id_of=lambda entry: entry["id"])
    return {"items": items, "next_cursor": cursor}


@API.route("GET", "/v1/mp/me/coupons", auth="member", summary="The member's own coupons, newest first",
           tag="mini-program", query=s.PageQuery, response=CouponPage, errors=MEMBER)
async def my_coupons(call: Call):
    found = await coupons.of_member(call.chain_id, call.member_id, s.decode_cursor(call.query.cursor),
                                    call.query.limit + 1, call.services.clock.now())
    page, cursor = s.cut(found, call.query.limit, id_of=lambda coupon: coupon["id"])
    return {"items": [{k: v for k, v in coupon.items() if k != "id"} for coupon in page], "next_cursor": cursor}


@API.route("GET", "/v1/mp/rewards", auth="member", summary="The points mall: rewards on offer", tag="mini-program",
           query=s.PageQuery, response=RewardPage, errors=("unauthorized",),
           description="Active rewards, with what is left of their stock. A token that has not joined yet may "
                       "browse them too.")
async def rewards(call: Call):
    return await s.id_page(Reward.filter(chain_id=call.chain_id, active=True), call.query, mall.reward_view)


@API.route("POST", "/v1/mp/rewards/{reward_id}/redeem", auth="member", summary="Redeem points for a reward",
           tag="mini-program", response=RedemptionOut, status=201, idempotent=True,
           errors=MEMBER + ("not_found", "member_frozen", "insufficient_points", "coupon_out_of_stock",
                            "coupon_limit_reached"),
           description="Takes the reward's points and issues its coupon, all or nothing, once per Idempotency-Key.")
async def redeem_reward(call: Call):
    def shape(answer: dict) -> Reply:
        return Reply(answer, 201)

    answer = await mall.redeem(call.chain_id, call.member_id, call.path_id("reward_id"), call.services.clock.now(),
                               f"claim:{call.claim_id}", (await call.program()).timezone, channel="wechat",
                               seal=call.seal(shape))
    return await call.answer(shape, answer)


@API.route("POST", "/v1/mp/me/bindings", auth="member", summary="Link a marketplace account to the member",
           tag="mini-program", body=Binding, response=BindingOut, status=201, idempotent="optional",
           errors=MEMBER + ("already_exists", "member_frozen", "validation_error"),
           description="Records that this buyer id on that platform is the member (again: 200). An account bound "
                       "to another member is 409 already_exists. What the account earned before anyone bound it (on "
                       "its unclaimed holder) moves to the member, once (the holder is merged into them; one an operator froze "
                       "is 422 member_frozen), and its "
                       "orders that waited (in the chain's connected shops of that platform) earn for the member "
                       "now; later ones as they come.")
async def bind(call: Call):
    member_id, body = call.member_id, call.body
    program, now = await call.program(), call.services.clock.now()
    created = await joining.bind(call.chain_id, member_id, body.platform, body.buyer_id, program, now)
    await inbox.release_bound(call.chain_id, body.platform, body.buyer_id, program, call.services.vault, now,
                              call.services.marketplaces)
    return Reply({"platform": body.platform, "buyer_id": body.buyer_id, "member_id": member_id},
                 201 if created else 200)


class SubscriptionOut(BaseModel):
    kind: Literal["points_earned", "coupon_received", "points_expiring"]
    template_id: str = Field(description="what to pass to wx.requestSubscribeMessage({tmplIds})")
    status: Literal["accept", "reject", "ban"] | None = Field(description="the account's last answer; null: never asked")
    remaining: int = Field(description="messages of this kind the account still allows (each accept: one)")


class SubscriptionsOut(BaseModel):
    items: list[SubscriptionOut]


class SubscribeResults(s.Body):
    results: dict[Annotated[str, Field(min_length=1, max_length=128)], str] = Field(
        max_length=30, description="what wx.requestSubscribeMessage answered, as it answered it: "
                                   "{\"<template id>\": \"accept\" | \"reject\" | \"ban\" | \"filter\", \"errMsg\": ...}")

    @field_validator("results")
    @classmethod
    def _answers(cls, results: dict[str, str]) -> dict[str, str]:
        for template_id, answer in results.items():
            if template_id != "errMsg" and answer not in messages.CONSENTS:
                raise ValueError(f"{template_id!r} is {answer[:20]!r}: one of {', '.join(messages.CONSENTS)}")
        return results


async def _app_settings(call: Call) -> dict:
    return (await call.connected("wechat", call.principal.app_id)).settings


@API.route("GET", "/v1/mp/me/subscriptions", auth="member", summary="Subscribe messages: templates and consent",
           tag="mini-program", response=SubscriptionsOut, errors=("unauthorized",),
           description="The kinds of subscribe message this app sends (points earned, coupon received, points "
                       "about to expire), each with the template id to ask for with wx.requestSubscribeMessage, "
                       "and how many messages of it this WeChat account still allows.")
async def my_subscriptions(call: Call):
    principal = call.principal
    return {"items": await messages.standing(call.chain_id, principal.channel_id, principal.openid,
                                             await _app_settings(call))}


@API.route("POST", "/v1/mp/me/subscriptions", auth="member", summary="Report what the member chose in a subscribe popup",
           tag="mini-program", body=SubscribeResults, response=SubscriptionsOut,
           errors=("unauthorized", "validation_error"),
           description="Pass wx.requestSubscribeMessage's answer as it came: each accept allows one more message of "
                       "that template, reject and ban allow none. Templates this app does not send are ignored. "
                       "WeChat's own push of the popup (subscribe_msg_popup_event) is recorded too.")
async def report_subscriptions(call: Call):
    principal = call.principal
    return {"items": await messages.report(call.chain_id, principal.channel_id, principal.openid,
                                           await _app_settings(call), call.body.results, call.services.clock.now())}
