"""Messages to members: what an event tells them, and whether they agreed to be told.

**What is worth a message** (``KINDS``), read off the outbox:

- ``points_earned``: a ``balance.changed`` whose journal entry added points (available or
  pending, net): an order, a check-in or another behaviour, the welcome, an adjustment. A vest
  (pending points becoming available) adds nothing net, and a merge moves points the member was
  told of already: neither is a message.
- ``coupon_received``: ``coupon.issued`` (the welcome, the mall, a campaign, an operator).
- ``points_expiring``: ``points.expiring``, which the ``warn_expiring_points`` job writes
  ``points.expiry.warn_days`` days before a member's points expire (``loyalty_core.jobs``).

``notice_of`` turns such an event into a ``Notice``: the kind and the figures a template may name
(``KINDS``), written as a member reads them, in the program's time zone.

**Consent** is per WeChat account and template (``MessageSubscription``): each "accept" of a
one-time subscription lets one message be sent; "reject" and "ban" leave none. It comes from
WeChat's push (``subscribe_msg_popup_event``, ``subscribe_msg_change_event``) and from the
mini-program reporting what ``wx.requestSubscribeMessage`` answered; should both report one tap,
the count is one too high, which costs one send that WeChat refuses (errcode 43101), after which
nothing is left (``refused``). WeChat is the judge; the count only spares it sends it would refuse.

**Once per event and account.** ``take`` writes the ``MessageSend`` row and uses the consent in one
transaction, before anything is sent: a resent outbox event finds the row and sends nothing. A
send that failed for sure (``failed``: WeChat answered an error, or no connection was made)
gives the consent back and may be tried again; one that may have reached WeChat without an
answer (``unknown``), and a worker that dies between taking and sending (``sending``), are never
tried again: a notice lost rather than one sent twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import sql
from .chains import get_program
from .members import public_balances
from .models import CouponTemplate, Identity, MessageSend, MessageSubscription

# the figures each kind of message may name in a template's text, as {name}
KINDS: dict[str, tuple[str, ...]] = {
    "points_earned": ("points", "balance", "reason", "time"),
    "coupon_received": ("coupon", "code", "valid_to", "balance", "time"),
    "points_expiring": ("points", "expires_on", "balance", "time"),
}
TOPICS = {"balance.changed": "points_earned", "coupon.issued": "coupon_received", "points.expiring": "points_expiring"}
CONSENTS = ("accept", "reject", "ban", "filter")  # what wx.requestSubscribeMessage answers per template
SENDING, SENT, NO_CONSENT, REFUSED, FAILED, INVALID, UNKNOWN = (
    "sending", "sent", "no_consent", "refused", "failed", "invalid", "unknown")

REASONS = {"order": "消费积分", "adjustment": "积分调整", "review": "积分补发", "topup": "充值赠送"}
BEHAVIOR_REASONS = {"register": "注册有礼", "checkin": "每日签到", "invite": "邀请好友", "review": "评价有礼",
                    "share": "分享有礼", "complete_profile": "完善资料"}
NOT_EARNED = ("merge", "refund")  # points moved, or given back by a refund: not earned
EARNED = ("SELECT e.kind, e.reason, e.occurred_at, SUM(p.amount) AS points FROM journal_entries e "
          "JOIN postings p ON p.chain_id = e.chain_id AND p.entry_id = e.id "
          "JOIN accounts a ON a.chain_id = p.chain_id AND a.id = p.account_id "
          "WHERE e.chain_id = $1 AND e.id = $2 AND a.kind IN ('points', 'points_pending') "
          "GROUP BY e.kind, e.reason, e.occurred_at")
USE_CONSENT = ("UPDATE message_subscriptions SET remaining = remaining - 1, updated_at = $5 WHERE chain_id = $1 "
               "AND channel_id = $2 AND openid = $3 AND template_id = $4 AND status = 'accept' AND remaining > 0")
GIVE_BACK = ("UPDATE message_subscriptions SET remaining = remaining + 1, updated_at = $5 WHERE chain_id = $1 "
             "AND channel_id = $2 AND openid = $3 AND template_id = $4 AND status = 'accept'")
# one answer of the account: accept adds one to what an earlier accept left, reject and ban leave none
ANSWERED = ("UPDATE message_subscriptions SET remaining = CASE WHEN $5 = 'accept' THEN "
            "(CASE WHEN status = 'accept' THEN remaining ELSE 0 END) + 1 ELSE 0 END, status = $5, updated_at = $6 "
            "WHERE chain_id = $1 AND channel_id = $2 AND openid = $3 AND template_id = $4")
FIGURE = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}|[{}]")


@dataclass(frozen=True)
class Notice:
    kind: str
    member_id: int
    figures: dict[str, str]


def placeholders(text: str) -> set[str]:
    """The figures a template's text names, each written ``{name}`` and nothing more (no format
    spec, conversion or attribute); ``{{`` and ``}}`` are braces. ValueError otherwise."""
    names = set()
    for found in FIGURE.finditer(text):
        if found.group(0) in ("{", "}"):
            raise ValueError("a figure is written {name}, nothing more; a brace itself is {{ or }}")
        if found.group(1):
            names.add(found.group(1))
    return names


def render(text: str, figures: dict[str, str]) -> str:
    """The text with its figures in (KeyError: a figure the notice does not have)."""
    def value(found: re.Match) -> str:
        token = found.group(0)
        if token in ("{{", "}}"):
            return token[0]
        if found.group(1):
            return figures[found.group(1)]
        raise ValueError(f"a lone {token!r} in a template's text")
    return FIGURE.sub(value, text)


# --- what an event tells the member -------------------------------------------------------
async def notice_of(chain_id: int, topic: str, payload: dict, at: datetime) -> Notice | None:
    member_id = payload.get("member_id")
    kind = TOPICS.get(topic)
    if kind is None or not isinstance(member_id, int):
        return None
    zone = ZoneInfo((await get_program(chain_id)).timezone)
    common = {"time": _time(at, zone)}
    if kind == "points_earned":
        figures = await _earned(chain_id, payload, zone)
        if figures is None:
            return None
    elif kind == "coupon_received":
        template = await CouponTemplate.get_or_none(chain_id=chain_id, id=payload.get("template_id"))
        valid_to = sql.aware(datetime.fromisoformat(payload["valid_to"])) if payload.get("valid_to") else None
        figures = {"coupon": template.name if template else "优惠券", "code": str(payload.get("code", "")),
                   "valid_to": _time(valid_to, zone) if valid_to else "", "balance": await _points(chain_id, member_id)}
    else:
        expires_at = sql.aware(datetime.fromisoformat(payload["expires_at"]))
        figures = {"points": str(payload.get("points", 0)), "expires_on": _last_day(expires_at, zone),
                   "balance": await _points(chain_id, member_id)}
    return Notice(kind, member_id, {**common, **figures})


async def _earned(chain_id: int, payload: dict, zone: ZoneInfo) -> dict[str, str] | None:
    found = await sql.rows(EARNED, chain_id, payload.get("entry_id"))
    if not found or found[0]["kind"] in NOT_EARNED or int(found[0]["points"] or 0) <= 0:
        return None
    entry = found[0]
    if entry["kind"] == "behavior":
        reason = BEHAVIOR_REASONS.get(entry["reason"] or "", "积分奖励")
    else:
        reason = REASONS.get(entry["kind"], "积分奖励")
    balances = payload.get("balances") or {}
    return {"points": str(int(entry["points"])), "reason": reason,
            "balance": str(balances.get("points", 0)),  # available: pending points are not spendable yet
            "time": _time(sql.aware(entry["occurred_at"]), zone)}


async def _points(chain_id: int, member_id: int) -> str:
    balances = await public_balances(chain_id, member_id)
    return str(balances["points"])


def _time(moment: datetime, zone: ZoneInfo) -> str:
    """WeChat's ``time`` keyword: ``2026年12月07日 14:05``."""
    return moment.astimezone(zone).strftime("%Y年%m月%d日 %H:%M")


def _last_day(expires_at: datetime, zone: ZoneInfo) -> str:
    """The last local day points live through (they expire at the next local midnight)."""
    return (expires_at.astimezone(zone) - timedelta(microseconds=1)).strftime("%Y年%m月%d日")


# --- who may be told ----------------------------------------------------------------------
async def wechat_accounts(chain_id: int, member_id: int) -> list[tuple[str, str]]:
    """The member's WeChat accounts: (app id, openid) for each app they logged in to and joined."""
    found = await Identity.filter(chain_id=chain_id, member_id=member_id, channel__startswith="wechat:").order_by(
        "id").values_list("channel", "external_id")
    return [(channel.partition(":")[2], openid) for channel, openid in found]


async def consent(chain_id: int, channel_id: int, openid: str, results: dict[str, str], now: datetime) -> None:
    """What the account answered per template: "accept" allows one more message, "reject" and
    "ban" none (what WeChat calls "filter", a template it hid, changes nothing). One statement per
    answer, so that an answer and a send at the same moment never lose either."""
    for template_id, status in results.items():
        if status not in ("accept", "reject", "ban"):
            continue
        key = (chain_id, channel_id, openid, template_id)
        if await sql.execute(ANSWERED, *key, status, now):
            continue
        try:
            await MessageSubscription.create(chain_id=chain_id, channel_id=channel_id, openid=openid,
                                             template_id=template_id, status=status,
                                             remaining=1 if status == "accept" else 0, updated_at=now)
        except IntegrityError:  # the push and the mini-program at once: count this answer on the row
            await sql.execute(ANSWERED, *key, status, now)


async def consents(chain_id: int, channel_id: int, openid: str) -> dict[str, MessageSubscription]:
    found = await MessageSubscription.filter(chain_id=chain_id, channel_id=channel_id, openid=openid)
    return {row.template_id: row for row in found}


def templates_of(settings: dict) -> dict[str, str]:
    """The kinds of message an app sends (its channel's ``subscribe_templates``), and the template of each."""
    return {kind: template["template_id"] for kind, template in (settings.get("subscribe_templates") or {}).items()
            if template and kind in KINDS}


async def standing(chain_id: int, channel_id: int, openid: str, settings: dict) -> list[dict]:
    """Per kind the app sends: its template, the account's last answer and the messages it still allows."""
    held = await consents(chain_id, channel_id, openid)
    return [{"kind": kind, "template_id": template_id,
             "status": held[template_id].status if template_id in held else None,
             "remaining": held[template_id].remaining if template_id in held else 0}
            for kind, template_id in templates_of(settings).items()]


async def report(chain_id: int, channel_id: int, openid: str, settings: dict, results: dict[str, str],
                 now: datetime) -> list[dict]:
    """What a subscribe popup answered, for the templates this app sends (others are ignored)."""
    sent = set(templates_of(settings).values())
    await consent(chain_id, channel_id, openid, {t: answer for t, answer in results.items() if t in sent}, now)
    return await standing(chain_id, channel_id, openid, settings)


async def take(chain_id: int, channel_id: int, openid: str, event_id: str, kind: str, template_id: str,
               now: datetime) -> int | None:
    """The right to send this event's message to this account, once: the send's id, or None
    (handled before, or no consent left: recorded as ``no_consent``)."""
    try:
        async with in_transaction():
            held = await MessageSend.select_for_update().get_or_none(
                chain_id=chain_id, event_id=event_id, channel_id=channel_id, openid=openid)
            if held is not None and held.status != FAILED:
                return None
            allowed = await sql.execute(USE_CONSENT, chain_id, channel_id, openid, template_id, now) > 0
            status = SENDING if allowed else NO_CONSENT
            if held is None:
                held = await MessageSend.create(chain_id=chain_id, channel_id=channel_id, event_id=event_id,
                                                openid=openid, kind=kind, template_id=template_id, status=status,
                                                created_at=now, updated_at=now)
            else:
                await MessageSend.filter(chain_id=chain_id, id=held.id).update(status=status, errcode=None,
                                                                               updated_at=now)
    except IntegrityError:  # a second delivery of the event at the same moment took it
        return None
    return held.id if allowed else None


async def sent(chain_id: int, send_id: int, now: datetime) -> None:
    await MessageSend.filter(chain_id=chain_id, id=send_id).update(status=SENT, updated_at=now)


async def not_sent(chain_id: int, send_id: int, status: str, errcode: int | None, now: datetime) -> None:
    """The send did not happen, or may not have. ``refused``: WeChat says the account allows no
    message: none left (but an accept recorded since the send was taken stays). ``failed`` (to be
    tried again) and ``invalid`` (the app's template settings are wrong): the consent was not
    used, and is given back. ``unknown`` (no answer after the request may have reached WeChat):
    never tried again, the consent counted as used."""
    async with in_transaction():
        send = await MessageSend.get(chain_id=chain_id, id=send_id)
        await MessageSend.filter(chain_id=chain_id, id=send_id).update(status=status, errcode=errcode, updated_at=now)
        if status == REFUSED:
            await MessageSubscription.filter(chain_id=chain_id, channel_id=send.channel_id, openid=send.openid,
                                             template_id=send.template_id, updated_at__lte=send.updated_at
                                             ).update(remaining=0, updated_at=now)
        elif status != UNKNOWN:
            await sql.execute(GIVE_BACK, chain_id, send.channel_id, send.openid, send.template_id, now)
