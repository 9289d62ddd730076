"""Members: joining, finding, viewing, correcting, freezing and erasing."""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime

import structlog
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import codes, coupons, ledger, points, sql, tiers
from .bounds import is_phone
from .crypto import Vault
from .errors import (AlreadyExists, BadRequest, CodeNotFound, CouponOutOfStock, MemberErased, NotFound,
                     ValidationFailed)
from .models import Identity, JournalEntry, Member, MemberSession, MemberTag, Posting, Store
from .outbox import emit, emit_all
from .program import Program
from .unit import Seal, seal_with

log = structlog.get_logger("members")

def checked_phone(raw: str, field: str = "phone") -> str:
    """API.md's phone: 11 ASCII digits, nothing stripped or converted (a full-width digit, a space
    or +86 would otherwise hash differently and earn a second welcome)."""
    if not is_phone(raw):
        raise ValidationFailed([{"field": field, "message": "must be an 11-digit mainland mobile number in ASCII digits"}])
    return raw


def mask_phone(phone: str | None, last4: str | None = None) -> str | None:
    if phone:
        return phone[:3] + "****" + phone[-4:]
    return f"*******{last4}" if last4 else None


def mask_name(name: str | None) -> str | None:
    if not name:
        return None
    return name[0] + "*" * max(1, len(name) - 1)


@dataclass(frozen=True)
class NewMember:
    phone: str
    name: str | None = None
    birthday: date | None = None
    card_no: str | None = None
    store_code: str | None = None
    channel: str = "admin"


async def register_member(chain_id: int, new: NewMember, program: Program, vault: Vault, now: datetime,
                          seal: Seal | None = None) -> Member:
    """Create a member and credit the program's welcome points, once per phone ever."""
    phone = checked_phone(new.phone)
    if new.store_code and not await Store.exists(chain_id=chain_id, code=new.store_code):
        raise ValidationFailed([{"field": "store_code", "message": f"no store {new.store_code!r} in this chain"}])
    if new.card_no and coupons.looks_like_coupon(new.card_no):
        raise ValidationFailed([{"field": "card_no", "message": "CPN and 16 letters or digits is a coupon code"}])
    phone_hash = vault.lookup_hash(chain_id, phone)
    card_no = new.card_no or _new_card_no()
    try:
        async with in_transaction():
            member = await Member.create(
                chain_id=chain_id, phone_hash=phone_hash, phone_enc=vault.encrypt(phone), phone_last4=phone[-4:],
                name_enc=vault.encrypt(new.name), birthday_enc=vault.encrypt(new.birthday.isoformat() if new.birthday else None),
                card_no=card_no, store_code=new.store_code, tier_code=program.tiers.levels[0].code, tier_since=now,
                birth_month=new.birthday.month if new.birthday else None, created_at=now,
            )
            await Identity.create(chain_id=chain_id, member_id=member.id, channel="card", external_id=card_no)
            await ledger.open_accounts(chain_id, member.id)
            await _welcome(chain_id, member, phone_hash, program, now, new.channel)
            await _welcome_coupons(chain_id, member, phone_hash, program, now)
            await emit(chain_id, "member.created", {"member_id": member.id, "channel": new.channel}, now)
            await seal_with(seal, member)
    except IntegrityError as error:
        raise AlreadyExists("A member with this phone or card number exists already") from error
    return member


def _new_card_no() -> str:
    return "9" + "".join(secrets.choice("0123456789") for _ in range(11))


async def _welcome(chain_id: int, member: Member, phone_hash: str, program: Program, now: datetime, channel: str) -> None:
    amount = program.behaviors.register_.points
    key = f"welcome:{phone_hash}"
    if amount <= 0 or await JournalEntry.exists(chain_id=chain_id, key=key):
        return
    entry = await ledger.post(chain_id, ledger.Entry(
        key=key, kind="behavior", member_id=member.id, channel=channel, reason="register", occurred_at=now,
        zone=program.timezone,
        legs=[ledger.Leg("points_issued", -amount), ledger.Leg("points", amount, member.id),
              ledger.Leg("growth_issued", -amount), ledger.Leg("growth", amount, member.id)],
    ))
    await points.add_lot(chain_id, member.id, entry, amount, now, program)
    await tiers.add_figures(chain_id, member.id, tiers.period_of(now, program),
                            tiers.Figures(growth=amount, points_earned=amount))
    await tiers.raise_tier(member, program, now)
    await announce_balance(chain_id, member.id, entry.id, now)


async def _welcome_coupons(chain_id: int, member: Member, phone_hash: str, program: Program, now: datetime) -> None:
    """One of each ``welcome_coupons`` template, once per phone ever (like the welcome points). A
    template that is gone or out of stock is skipped (and logged): the member still joins."""
    for template in program.welcome_coupons:
        if not template.isdigit():
            log.warning("welcome_coupon.skipped", chain_id=chain_id, template=template, reason="not a template id")
            continue
        try:  # once per phone: a phone that had it once gets it never again
            await coupons.issue_once_within(chain_id, member.id, int(template), now, f"welcome:{phone_hash}:{template}")
        except (NotFound, CouponOutOfStock) as error:
            log.warning("welcome_coupon.skipped", chain_id=chain_id, template=template, reason=error.code)


async def announce_balance(chain_id: int, member_id: int, entry_id: int, now: datetime,
                           also: tuple[tuple[str, dict], ...] = (), balances: dict[str, int] | None = None
                           ) -> dict[str, int]:
    """Tell the outbox a member's balances changed (with the cause's ``also`` events, in the same
    insert); returns those balances for the caller's answer. ``balances``: the member's accounts as
    the cause's entry left them (``Posted.accounts``), else read here."""
    balances = shown_balances(balances) if balances else await public_balances(chain_id, member_id)
    await emit_all(chain_id, [balance_changed(member_id, entry_id, balances), *also], now)
    return balances


def balance_changed(member_id: int, entry_id: int, balances: dict[str, int]) -> tuple[str, dict]:
    """The outbox event of a member's new balances (as ``shown_balances``)."""
    return "balance.changed", {"member_id": member_id, "entry_id": entry_id, "balances": balances}


async def get_member(chain_id: int, member_id: int) -> Member:
    member = await Member.get_or_none(chain_id=chain_id, id=member_id)
    if member is None:
        raise NotFound(f"No member {member_id}")
    return member


async def public_balances(chain_id: int, member_id: int) -> dict[str, int]:
    return shown_balances(await ledger.balances(chain_id, member_id))


def shown_balances(raw: dict[str, int]) -> dict[str, int]:
    """A member's accounts as API.md shows them (``balances``)."""
    principal, bonus = raw.get("sv_principal", 0), raw.get("sv_bonus", 0)
    return {
        "points": raw.get("points", 0), "pending_points": raw.get("points_pending", 0),
        "growth": raw.get("growth", 0), "stored_value": principal + bonus,
        "stored_value_principal": principal, "stored_value_bonus": bonus,
    }


async def balances_and_tier(member: Member, program: Program, now: datetime) -> tuple[dict, dict]:
    """The member's ``balances`` and ``tier`` (with its progress) in one statement, the same
    columns a scan reads with the member's row."""
    metric = tiers.metric_column(program)
    found = await sql.rows(f"SELECT members.id{_STANDING[metric]} FROM members WHERE id = $1 AND chain_id = $2",
                           member.id, member.chain_id, *tiers.window(program, now))
    return _standing(program, member.tier_code, metric, found[0])


def tier_view(program: Program, tier_code: str, metric: str, current: int) -> dict:
    level = program.level(tier_code)
    return {"code": level.code, "name": level.name,
            "progress": {"metric": metric, "current": current, "next_threshold": tiers.next_threshold(program, level)}}


TIER_METRIC = "~tier_metric"  # not an account kind: the window's metric, read beside the balances


def _standing_columns(metric: str) -> str:
    """A member's balances and tier window as columns of their row (parameters $3 and $4: the
    window's first and last period): a bounded number of rows, however long the history."""
    accounts = "".join(
        f", (SELECT balance FROM accounts WHERE accounts.chain_id = members.chain_id "
        f"AND accounts.member_id = members.id AND accounts.kind = '{kind}') AS \"account:{kind}\""
        for kind in ledger.MEMBER_ACCOUNTS)
    return accounts + (f", (SELECT COALESCE(SUM({metric}), 0) FROM member_figures "
                       "WHERE member_figures.chain_id = members.chain_id AND member_figures.member_id = members.id "
                       f"AND period BETWEEN $3 AND $4) AS \"{TIER_METRIC}\"")


_STANDING = {metric: _standing_columns(metric) for metric in tiers.METRICS}


def _standing(program: Program, tier_code: str, metric: str, row: dict) -> tuple[dict, dict]:
    """``balances`` and ``tier`` from a row read with ``_STANDING``'s columns."""
    raw = {kind: int(row[f"account:{kind}"] or 0) for kind in ledger.MEMBER_ACCOUNTS}
    return shown_balances(raw), tier_view(program, tier_code, metric, int(row[TIER_METRIC] or 0))


async def counter_view_of(cache: codes.Cache, vault: Vault, chain_id: int, code: str, program: Program,
                          now: datetime, member_id: int | None = None) -> tuple[dict, list[dict]]:
    """What a scan shows: the member the code names (or ``member_id``, a scanned coupon's owner),
    with balances and tier, and their coupons usable now, in one statement."""
    metric = tiers.metric_column(program)
    columns, params = _STANDING[metric] + coupons.usable_column(now_param=5), (*tiers.window(program, now), now)
    if member_id is not None:
        found = await sql.rows(codes.MEMBER_BY_ID.format(columns=columns), member_id, chain_id, *params)
        if not found or found[0]["erased_at"] is not None:
            raise CodeNotFound("No member holds this coupon")
        row = found[0]
    else:
        row, _ = await codes.find_member_row(cache, vault, chain_id, code, now, columns, params)
    member = Member._init_from_db(**{k: v for k, v in row.items() if k != coupons.USABLE_COLUMN})
    return _counter(member, vault, *_standing(program, member.tier_code, metric, row)), coupons.usable_in(row, now)


async def scan(cache: codes.Cache, vault: Vault, chain_id: int, code: str, program: Program, now: datetime) -> dict:
    """What a till's scan answers: a coupon code names its coupon and its owner (``kind: coupon``),
    anything else a member; both with the member's coupons usable now."""
    coupon = await coupons.find(chain_id, code, now) if coupons.looks_like_coupon(code) else None
    view, usable = await counter_view_of(cache, vault, chain_id, code, program, now,
                                         member_id=coupon["member_id"] if coupon else None)
    if coupon is not None:
        return {"kind": "coupon", "coupon": coupon, "member": view, "coupons": usable}
    return {"kind": "member", "member": view, "coupons": usable}


async def member_view(member: Member, program: Program, vault: Vault, now: datetime) -> dict:
    """A member as the admin API shows it: personal data decrypted but the phone masked."""
    identities = await Identity.filter(chain_id=member.chain_id, member_id=member.id).order_by("id")
    balances, tier = await balances_and_tier(member, program, now)
    name = vault.decrypt(member.name_enc)
    birthday = vault.decrypt(member.birthday_enc)
    return {
        "id": member.id,
        "display_name": display_name(member, vault),
        "phone": mask_phone(vault.decrypt(member.phone_enc), member.phone_last4),
        "name": name,
        "birthday": birthday,
        "card_no": member.card_no,
        "store_code": member.store_code,
        "tier": tier,
        "balances": balances,
        "identities": [{"channel": i.channel, "external_id": i.external_id} for i in identities],
        "tags": member.tags,
        "frozen": member.frozen,
        "frozen_reason": member.frozen_reason,
        "erased": member.erased_at is not None,
        "merged_into": member.merged_into,
        "unclaimed": member.unclaimed,
        "created_at": member.created_at.isoformat(),
    }


def _counter(member: Member, vault: Vault, balances: dict, tier: dict) -> dict:
    """A member as the till shows it to the cashier: a masked name, tier, balances, frozen."""
    return {"id": member.id, "display_name": display_name(member, vault), "tier": tier, "balances": balances,
            "frozen": member.frozen}


def display_name(member: Member, vault: Vault) -> str:
    if member.erased_at is not None:
        return "已注销"
    return mask_name(vault.decrypt(member.name_enc)) or mask_phone(None, member.phone_last4) or f"#{member.id}"


MAX_TAGS = 50


async def set_tags(chain_id: int, member_id: int, tags: list[str]) -> Member:
    """Replace the member's manual tags (kept in order, each once); one transaction."""
    wanted = list(dict.fromkeys(tag.strip() for tag in tags))
    if len(wanted) > MAX_TAGS or any(not tag for tag in wanted):
        raise ValidationFailed([{"field": "tags", "message": f"at most {MAX_TAGS} tags, none blank"}])
    async with in_transaction():
        member = await Member.select_for_update().get_or_none(chain_id=chain_id, id=member_id)
        if member is None:
            raise NotFound(f"No member {member_id}")
        if member.erased_at is not None:
            raise MemberErased("An erased member keeps no tags")
        await MemberTag.filter(chain_id=chain_id, member_id=member_id).exclude(tag__in=wanted).delete()
        have = set(await MemberTag.filter(chain_id=chain_id, member_id=member_id).values_list("tag", flat=True))
        await MemberTag.bulk_create([MemberTag(chain_id=chain_id, member_id=member_id, tag=tag)
                                     for tag in wanted if tag not in have])
        member.tags = wanted
        await member.save(update_fields=["tags"])
    return member


async def search_members(chain_id: int, vault: Vault, *, phone: str | None, identity: str | None,
                         tier: str | None, after_id: int | None, limit: int, tag: str | None = None,
                         unclaimed: bool | None = None) -> list[Member]:
    query = Member.filter(chain_id=chain_id)
    if unclaimed is not None:
        query = query.filter(unclaimed=unclaimed)
    if tag:
        query = query.filter(tag_rows__chain_id=chain_id, tag_rows__tag=tag.strip())
    if phone:
        query = query.filter(phone_hash=vault.lookup_hash(chain_id, checked_phone(phone)))
    if identity:
        channel, _, external_id = identity.partition(":")
        if not channel or not external_id:
            raise BadRequest("identity must be CHANNEL:ID")
        query = query.filter(identities__chain_id=chain_id, identities__channel=channel,
                             identities__external_id=external_id)
    if tier:
        query = query.filter(tier_code=tier)
    if after_id:
        query = query.filter(id__lt=after_id)
    return await query.order_by("-id").limit(limit).distinct()


async def ledger_entries(chain_id: int, member_id: int, after_id: int | None, limit: int) -> list[dict]:
    query = JournalEntry.filter(chain_id=chain_id, member_id=member_id)
    if after_id:
        query = query.filter(id__lt=after_id)
    entries = await query.order_by("-id").limit(limit)
    postings = await Posting.filter(chain_id=chain_id, entry_id__in=[e.id for e in entries], account_id__not_isnull=True)
    changes: dict[int, dict[str, int]] = {}
    for posting in postings:
        changes.setdefault(posting.entry_id, {})
        changes[posting.entry_id][posting.ledger] = changes[posting.entry_id].get(posting.ledger, 0) + int(posting.amount)
    return [{
        "id": e.id, "kind": e.kind, "key": e.key, "channel": e.channel, "actor": e.actor, "reason": e.reason,
        "ref": e.ref, "occurred_at": e.occurred_at.isoformat(), "created_at": e.created_at.isoformat(),
        "changes": changes.get(e.id, {}),
    } for e in entries]


ADJUSTABLE = {"points": ("points", "points_adjusted"), "stored_value": ("sv_principal", "sv_adjusted")}


async def adjust(chain_id: int, member_id: int, account: str, amount: int, reason: str, actor: str,
                 program: Program, now: datetime, cause: str | None = None, seal: Seal | None = None) -> dict:
    """A manual correction by an operator: audited with who and why; a debit never overdraws.

    ``cause`` names the request (its Idempotency-Key claim), so the same request can never post
    twice even if it were run twice."""
    if account not in ADJUSTABLE:
        raise ValidationFailed([{"field": "account", "message": "must be points or stored_value"}])
    if amount == 0:
        raise ValidationFailed([{"field": "amount", "message": "must not be zero"}])
    member_account, counterpart = ADJUSTABLE[account]
    async with in_transaction():
        member = await Member.select_for_update().get_or_none(chain_id=chain_id, id=member_id)
        if member is None:
            raise NotFound(f"No member {member_id}")
        if member.erased_at is not None:
            raise MemberErased("An erased member's balances can no longer be adjusted")
        entry = await ledger.post(chain_id, ledger.Entry(
            key=f"adjustment:{cause or uuid.uuid4()}", kind="adjustment", member_id=member_id, actor=actor,
            reason=reason, occurred_at=now,
            legs=[ledger.Leg(member_account, amount, member_id, guard=True), ledger.Leg(counterpart, -amount)],
        ))
        if account == "points":
            if amount > 0:
                await points.add_lot(chain_id, member.id, entry, amount, now, program)
            else:
                await points.take_from_lots(chain_id, member_id, -amount)
        balances = await announce_balance(chain_id, member_id, entry.id, now)
        result = {"entry_id": entry.id, "account": account, "amount": amount, "reason": reason, "balances": balances}
        await seal_with(seal, result)
    return result


async def set_frozen(chain_id: int, member_id: int, frozen: bool, reason: str | None) -> Member:
    member = await get_member(chain_id, member_id)
    if member.erased_at is not None:
        raise MemberErased("An erased member stays frozen")
    member.frozen, member.frozen_reason = frozen, (reason if frozen else None)
    await Member.filter(chain_id=chain_id, id=member.id).update(frozen=member.frozen, frozen_reason=member.frozen_reason)
    return member


async def erase(chain_id: int, member_id: int, now: datetime) -> None:
    """PIPL erasure: personal data and identities go; the ledger stays, tied to an anonymous id."""
    async with in_transaction():
        member = await get_member(chain_id, member_id)
        await Identity.filter(chain_id=chain_id, member_id=member.id).delete()
        await MemberSession.filter(chain_id=chain_id, member_id=member.id, revoked_at=None).update(revoked_at=now)
        await Member.filter(chain_id=chain_id, id=member.id).update(
            phone_hash=None, phone_enc=None, phone_last4=None, name_enc=None, birthday_enc=None,
            card_no=None, tags=[], erased_at=now, frozen=True, frozen_reason="erased",
        )
        await emit(chain_id, "member.erased", {"member_id": member.id}, now)


UNKNOWN_BIRTH_MONTH = ("SELECT id, birthday_enc FROM members WHERE birth_month IS NULL AND birthday_enc IS NOT NULL "
                       "AND id > $1 ORDER BY id LIMIT $2")


async def fill_birth_months(vault: Vault, batch: int = 500) -> int:
    """The birth month of members whose encrypted birthday predates the ``birth_month`` column
    (migration 0014), read with the vault; batched by id; safe to run again. How many were filled."""
    filled, after = 0, 0
    while True:
        rows = await sql.rows(UNKNOWN_BIRTH_MONTH, after, batch)
        for row in rows:
            birthday = vault.decrypt(row["birthday_enc"])
            if birthday:
                filled += await sql.execute("UPDATE members SET birth_month = $2 WHERE id = $1 AND birth_month IS NULL",
                                            int(row["id"]), date.fromisoformat(birthday).month)
        if len(rows) < batch:
            return filled
        after = int(rows[-1]["id"])
