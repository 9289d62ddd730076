"""Joining from the mini-program: a WeChat account becomes (or finds) its member by phone.

The phone is the one WeChat vouches for. A member who already has it (registered at the till, by
an operator, or by another app of the chain) gets this WeChat account linked and finds their
points; anyone else is registered as from the counter (welcome points and coupons once per phone,
ever: ``members.register_member``). Only a new member credits an ``inviter`` (a member id of the
chain), through the ``invite`` behaviour and its monthly cap; an inviter that is unknown, frozen,
the member itself or over its cap changes nothing and the join goes on. An existing member's
details (name, birthday, store) are left as they are. Member cards the account took before
joining become the member's (``cards.claim``).

An account linked to one member cannot join as another (409 ``already_exists``): its identity is
unique per chain. ``bind`` records a marketplace account of the member the same way; when the
account's orders earned before on an unclaimed holder (``holder``: a buyer who was no member
yet), the holder is merged into the member: their points, orders and figures move, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import structlog
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import behaviors, cards, codes, ledger, merge, sessions, sql
from .crypto import Vault
from .errors import AlreadyExists, LoyaltyError, MemberFrozen, ValidationFailed
from .members import NewMember, checked_phone, register_member
from .models import Identity, Member
from .program import Program

log = structlog.get_logger("loyalty")
# an identity of the member unless it is held already (one statement, no savepoint: the join's budget)
CLAIM = ("INSERT INTO identities (chain_id, member_id, channel, external_id, created_at) VALUES ($1, $2, $3, $4, $5) "
         "ON CONFLICT DO NOTHING")


@dataclass(frozen=True)
class Joining:
    phone: str
    account: sessions.WeChatAccount
    channel_id: int
    nickname: str | None = None
    birthday: date | None = None
    store_code: str | None = None
    inviter: int | None = None


@dataclass(frozen=True)
class Joined:
    member: Member
    created: bool


async def join(chain_id: int, joining: Joining, program: Program, vault: Vault, now: datetime) -> Joined:
    phone = checked_phone(joining.phone)
    member = await codes.member_with_phone(chain_id, phone, vault)
    created = False
    if member is None:
        try:
            member = await register_member(chain_id, NewMember(
                phone=phone, name=joining.nickname, birthday=joining.birthday, store_code=joining.store_code,
                channel="wechat"), program, vault, now)
            created = True
        except AlreadyExists:  # the same phone joined meanwhile (another tap, another app): link to it
            member = await codes.member_with_phone(chain_id, phone, vault)
            if member is None:
                raise
    await _link(chain_id, member.id, joining.account)
    await sessions.attach(chain_id, joining.channel_id, joining.account.openid, member.id, now)
    await cards.claim(chain_id, joining.channel_id, joining.account.openid, member.id, now)
    if created and joining.inviter is not None:
        await _credit_inviter(chain_id, joining.inviter, member.id, program, now)
    return Joined(member, created)


async def _link(chain_id: int, member_id: int, account: sessions.WeChatAccount) -> None:
    """The account's openid (and unionid) as identities of the member, once."""
    wanted = [(account.channel, account.openid)] + ([("wechat_union", account.unionid)] if account.unionid else [])
    async with in_transaction():
        for channel, external_id in wanted:
            await _claim(chain_id, member_id, channel, external_id, "This WeChat account belongs to another member")


async def _claim(chain_id: int, member_id: int, channel: str, external_id: str, taken: str,
                 program: Program | None = None, now: datetime | None = None) -> bool:
    """The identity is the member's (True when it was not before); ``taken``: the refusal when it
    is another member's. An unclaimed identity (no member yet) becomes the member's; one whose
    points wait on an unclaimed holder (with ``program`` and ``now``) brings them: the holder is
    merged into the member."""
    held = await Identity.get_or_none(chain_id=chain_id, channel=channel, external_id=external_id)
    if held is None:
        if await sql.execute(CLAIM, chain_id, member_id, channel, external_id, datetime.now(timezone.utc)):
            return True
        # made a moment ago: another member's, or a holder's (the buyer's first order)
        held = await Identity.get(chain_id=chain_id, channel=channel, external_id=external_id)
    if held.member_id == member_id:
        return False
    if held.member_id is None:
        await Identity.filter(id=held.id, chain_id=chain_id).update(member_id=member_id)
        return True
    return await _take_holder(chain_id, member_id, held.member_id, channel, taken, program, now)


async def _take_holder(chain_id: int, member_id: int, holder_id: int, channel: str, taken: str,
                       program: Program | None, now: datetime | None) -> bool:
    """The account is held by another member: an unclaimed holder is merged into the member (one
    frozen by an operator keeps its points: 422 member_frozen); a real member's is refused."""
    holder = await Member.get_or_none(chain_id=chain_id, id=holder_id)
    if holder is not None and holder.merged_into == member_id:
        return False  # merged into this member a moment ago (a second tap)
    if program is None or now is None or holder is None or not holder.unclaimed or holder.merged_into is not None:
        raise AlreadyExists(taken)
    if holder.frozen:
        raise MemberFrozen("The points this account earned are frozen: ask the chain's service desk")
    try:
        await merge.merge(chain_id, member_id, holder_id, program, f"bind:{channel}", now)
    except ValidationFailed:  # merged meanwhile, by a bind of this member or of another
        if (await Member.get(chain_id=chain_id, id=holder_id)).merged_into == member_id:
            return False
        raise AlreadyExists(taken) from None
    log.info("bind.claimed_holder", chain_id=chain_id, member_id=member_id, holder=holder_id, channel=channel)
    return True


async def _credit_inviter(chain_id: int, inviter: int, invited: int, program: Program, now: datetime) -> None:
    if inviter == invited or not await Member.exists(chain_id=chain_id, id=inviter, merged_into=None):
        log.info("join.inviter_ignored", chain_id=chain_id, inviter=inviter, reason="no such member")
        return
    try:
        await behaviors.record(chain_id, inviter, "invite", program, now, ref=str(invited))
    except LoyaltyError as refused:  # frozen, or recorded already: the join stands
        log.info("join.inviter_ignored", chain_id=chain_id, inviter=inviter, reason=refused.code)


async def bind(chain_id: int, member_id: int, platform: str, buyer_id: str, program: Program, now: datetime) -> bool:
    """Record that ``buyer_id`` on ``platform`` is the member; True when it is new. The points of a
    buyer who bought before joining (on an unclaimed holder) move to the member, once; an account
    bound to another member is refused."""
    async with in_transaction():
        return await _claim(chain_id, member_id, platform, buyer_id, f"This {platform} account is bound to another member",
                            program, now)


async def holder(chain_id: int, platform: str, buyer_id: str, program: Program, now: datetime) -> Member:
    """The member that holds the points of a marketplace buyer who is no member yet: made on their
    first order (``unclaimed``; no phone, no welcome, no ``member.created``) with the buyer's
    account as its identity, and merged, points, orders and all, into the member who binds that
    account (``bind``). A buyer's second order finds the same holder."""
    found = await Identity.get_or_none(chain_id=chain_id, channel=platform, external_id=buyer_id)
    if found is not None and found.member_id is not None:
        return await codes.member_by_id(chain_id, found.member_id)
    try:
        async with in_transaction():
            made = await Member.create(chain_id=chain_id, tier_code=program.tiers.levels[0].code, tier_since=now,
                                       created_at=now, unclaimed=True)
            if found is None:
                await Identity.create(chain_id=chain_id, member_id=made.id, channel=platform, external_id=buyer_id)
            elif not await Identity.filter(chain_id=chain_id, id=found.id, member_id=None).update(member_id=made.id):
                raise IntegrityError("the identity was claimed meanwhile")
            await ledger.open_accounts(chain_id, made.id)
    except IntegrityError:  # the buyer's other order made the holder at this very moment
        found = await Identity.get(chain_id=chain_id, channel=platform, external_id=buyer_id)
        return await codes.member_by_id(chain_id, found.member_id)
    log.info("buyer.holder_made", chain_id=chain_id, member_id=made.id, platform=platform)
    return made
