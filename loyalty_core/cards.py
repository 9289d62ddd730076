"""WeChat member cards: which user holds which card, and keeping its points and stored value equal
to the member's.

WeChat pushes ``user_get_card`` when a user takes the chain's member card (its ``CardId`` and the
user's ``UserCardCode``) and ``user_del_card`` when they delete it. A card whose WeChat account
has not joined waits without a member and is the member's from the join on (``claim``). Each
time a card should show new figures (a balance changed, a card was taken or claimed) the outbox
carries a ``member_card.sync`` or ``balance.changed`` event, and the worker writes the member's
**totals** to every active card (``bonus`` and ``balance``), with the change since the last
write as ``add_bonus``/``add_balance`` for WeChat's record. Totals make a resent or late write
harmless: it sets the same figures again (``add_*`` then 0), never adds twice.

WeChat pushes ``update_member_card`` after a card's figures change, with the change
(``ModifyBonus``, ``ModifyBalance``). The change of our last write is ours and nothing is done.
Any other change (someone set the card in WeChat's console, or the push of a write whose record
had not committed yet) has the card written with the member's totals again, so a card never keeps
figures that are not the member's; that write adds 0 and its own push ends it. A card WeChat
reports and we never saw (its ``user_get_card`` lost) is kept as if it had just been taken.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError

from . import sessions
from .members import public_balances
from .models import MemberCard
from .outbox import emit

SYNC = "member_card.sync"


@dataclass(frozen=True)
class CardWrite:
    """What the worker sends to one card (``card/membercard/updateuser``)."""

    card_row: int
    chain_id: int
    channel_id: int
    card_id: str
    code: str
    bonus: int
    add_bonus: int
    balance: int
    add_balance: int


async def received(chain_id: int, channel_id: int, account: sessions.WeChatAccount, card_id: str, code: str,
                   now: datetime) -> None:
    """``user_get_card``: the card is this account's (again, if it was deleted and restored)."""
    member_id = await sessions.member_of(chain_id, account)
    fields = dict(channel_id=channel_id, openid=account.openid, member_id=member_id, active=True, updated_at=now)
    if not await MemberCard.filter(chain_id=chain_id, card_id=card_id, code=code).update(**fields):
        try:
            await MemberCard.create(chain_id=chain_id, card_id=card_id, code=code, created_at=now, **fields)
        except IntegrityError:  # the same push twice at once: the other one stored it
            await MemberCard.filter(chain_id=chain_id, card_id=card_id, code=code).update(**fields)
    if member_id is not None:
        await emit(chain_id, SYNC, {"member_id": member_id}, now)


async def deleted(chain_id: int, card_id: str, code: str, now: datetime) -> None:
    """``user_del_card``: nothing is written to the card any more."""
    await MemberCard.filter(chain_id=chain_id, card_id=card_id, code=code).update(active=False, updated_at=now)


async def changed(chain_id: int, channel_id: int, account: sessions.WeChatAccount, card_id: str, code: str,
                  bonus_change: int, balance_change: int, now: datetime) -> str:
    """``update_member_card``: ``ours``, ``rewritten`` (the member's totals go to the card again),
    ``kept`` (a card not seen before) or ``ignored`` (deleted, not a member's, or no change)."""
    card = await MemberCard.get_or_none(chain_id=chain_id, card_id=card_id, code=code)
    if card is None:
        await received(chain_id, channel_id, account, card_id, code, now)
        return "kept"
    if not card.active or card.member_id is None or (bonus_change, balance_change) == (0, 0):
        return "ignored"
    if (bonus_change, balance_change) == (card.added_bonus, card.added_balance):
        return "ours"
    await emit(chain_id, SYNC, {"member_id": card.member_id}, now)
    return "rewritten"


async def claim(chain_id: int, channel_id: int, openid: str, member_id: int, now: datetime) -> None:
    """The account joined: its cards are the member's, and show the member's figures."""
    if await MemberCard.filter(chain_id=chain_id, channel_id=channel_id, openid=openid, member_id=None).update(
            member_id=member_id, updated_at=now):
        await emit(chain_id, SYNC, {"member_id": member_id}, now)


async def writes_for(chain_id: int, member_id: int) -> list[CardWrite]:
    """What each active card of the member should show now (none: no card)."""
    held = await MemberCard.filter(chain_id=chain_id, member_id=member_id, active=True).order_by("id")
    if not held:
        return []
    balances = await public_balances(chain_id, member_id)
    points, stored = balances["points"], balances["stored_value"]
    return [CardWrite(card.id, chain_id, card.channel_id, card.card_id, card.code, points,
                      points - (card.synced_bonus or 0), stored, stored - (card.synced_balance or 0))
            for card in held]


async def written(write: CardWrite, now: datetime) -> None:
    await MemberCard.filter(chain_id=write.chain_id, id=write.card_row).update(
        synced_bonus=write.bonus, synced_balance=write.balance, added_bonus=write.add_bonus,
        added_balance=write.add_balance, updated_at=now)
