"""Tables. One chain owns every row (``chain_id``): no query crosses chains.

Money is fen, points are points: both integers (BigInt). Personal data is encrypted
(``*_enc``) and found by keyed hash (``phone_hash``). Journal entries and postings are
never updated or deleted.
"""
from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Chain(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=100)
    timezone = fields.CharField(max_length=64, default="Asia/Shanghai")
    program = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "chains"


class Store(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="stores", on_delete=fields.RESTRICT)
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=100)
    timezone = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stores"
        unique_together = (("chain", "code"),)


class Terminal(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="terminals", on_delete=fields.RESTRICT)
    store = fields.ForeignKeyField("loyalty.Store", related_name="terminals", on_delete=fields.RESTRICT)
    code = fields.CharField(max_length=32)
    terminal_id = fields.CharField(max_length=40, unique=True)
    secret_enc = fields.TextField()
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "terminals"
        unique_together = (("store", "code", "chain"),)


class AdminKey(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="admin_keys", on_delete=fields.RESTRICT)
    role = fields.CharField(max_length=16)
    key_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=16)
    label = fields.CharField(max_length=100, null=True)
    created_by = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "admin_keys"


class Member(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="members", on_delete=fields.RESTRICT)
    phone_hash = fields.CharField(max_length=64, null=True)
    phone_enc = fields.TextField(null=True)
    phone_last4 = fields.CharField(max_length=4, null=True)
    name_enc = fields.TextField(null=True)
    birthday_enc = fields.TextField(null=True)
    card_no = fields.CharField(max_length=32, null=True)
    store_code = fields.CharField(max_length=32, null=True)
    tier_code = fields.CharField(max_length=32, default="")
    tier_since = fields.DatetimeField(null=True)
    tags = fields.JSONField(default=list)
    frozen = fields.BooleanField(default=False)
    frozen_reason = fields.CharField(max_length=200, null=True)
    erased_at = fields.DatetimeField(null=True)
    merged_into = fields.BigIntField(null=True)  # closed by a merge: the member who holds everything now
    birth_month = fields.IntField(null=True)  # 1-12, in clear for the birthday job (the date itself is encrypted)
    merged_at = fields.DatetimeField(null=True)
    # holds the points of a marketplace buyer who is no member yet, until a member binds that
    # account and this one is merged into them (loyalty_core.joining.holder)
    unclaimed = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "members"
        unique_together = (("chain", "phone_hash"), ("chain", "card_no"))
        indexes = (("chain_id", "tier_code"), ("chain_id", "birth_month"))


# A member's manual tags, one row each, for the search by tag (the member row keeps the list too,
# for its view); both written in one transaction by ``members.set_tags``.
class MemberTag(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="member_tags", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="tag_rows", on_delete=fields.RESTRICT)
    tag = fields.CharField(max_length=32)

    class Meta:
        table = "member_tags"
        unique_together = (("chain", "member", "tag"),)
        indexes = (("chain_id", "tag", "member_id"),)


# A member as one channel knows it: a card, a WeChat openid, a marketplace buyer id.
#
# ``member`` is null while the identity is unclaimed (a marketplace buyer who is no member yet).
class Identity(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="identities", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField(
        "loyalty.Member", related_name="identities", null=True, on_delete=fields.RESTRICT
    )
    channel = fields.CharField(max_length=32)
    external_id = fields.CharField(max_length=128)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "identities"
        unique_together = (("chain", "channel", "external_id"),)
        indexes = (("member_id",),)


# A WeChat app or a marketplace shop connected to a chain. An app or a shop belongs to one chain
# only (unique across chains): a push or a login names the app, not the chain. ``settings`` holds
# what may be shown; ``secrets_enc`` the write-only fields (app secret, keys), encrypted as JSON.
class Channel(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="channels", on_delete=fields.RESTRICT)
    platform = fields.CharField(max_length=16)
    external_id = fields.CharField(max_length=64)
    settings = fields.JSONField(default=dict)
    secrets_enc = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "channels"
        unique_together = (("platform", "external_id"),)
        indexes = (("chain_id", "platform"),)


# A mini-program login: a member token (kept as its SHA-256 only), the WeChat account it was
# opened for and, once the account has joined, its member. WeChat's session key stays here,
# encrypted, and is never returned. A token of one chain is unknown to every other.
class MemberSession(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="member_sessions", on_delete=fields.RESTRICT)
    channel = fields.ForeignKeyField("loyalty.Channel", related_name="sessions", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="sessions", null=True, on_delete=fields.RESTRICT)
    token_hash = fields.CharField(max_length=64)
    openid = fields.CharField(max_length=128)
    unionid = fields.CharField(max_length=128, null=True)
    session_key_enc = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "member_sessions"
        unique_together = (("chain", "token_hash"),)
        indexes = (("chain_id", "channel_id", "openid"), ("chain_id", "member_id"))


# A WeChat member card a user holds (pushed by WeChat as user_get_card), and what was last written
# to it: the worker sets its points and stored value to the member's totals after each change.
# ``member`` is null while the card's WeChat account has not joined.
class MemberCard(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="member_cards", on_delete=fields.RESTRICT)
    channel = fields.ForeignKeyField("loyalty.Channel", related_name="cards", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="cards", null=True, on_delete=fields.RESTRICT)
    openid = fields.CharField(max_length=128)
    card_id = fields.CharField(max_length=64)
    code = fields.CharField(max_length=64)
    active = fields.BooleanField(default=True)
    synced_bonus = fields.BigIntField(null=True)
    synced_balance = fields.BigIntField(null=True)
    # the add_bonus / add_balance of that last write: WeChat's update_member_card push of the same
    # change is ours; another change has the card written again (loyalty_core.cards.changed)
    added_bonus = fields.BigIntField(null=True)
    added_balance = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "member_cards"
        unique_together = (("chain", "card_id", "code"),)
        indexes = (("chain_id", "member_id"), ("chain_id", "channel_id", "openid"))


# A WeChat account's consent to one subscribe-message template of an app. Each "accept" of a
# one-time subscription lets the app send one message: ``remaining`` counts those not used yet;
# "reject" or "ban" (and WeChat refusing a send) leave none.
class MessageSubscription(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="message_subscriptions", on_delete=fields.RESTRICT)
    channel = fields.ForeignKeyField("loyalty.Channel", related_name="subscriptions", on_delete=fields.RESTRICT)
    openid = fields.CharField(max_length=128)
    template_id = fields.CharField(max_length=128)
    status = fields.CharField(max_length=16)
    remaining = fields.IntField(default=0)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "message_subscriptions"
        unique_together = (("chain", "channel", "openid", "template_id"),)


# One subscribe message for one outbox event to one WeChat account, written before it is sent:
# a resent event finds it and sends nothing again (``sending`` left by a crash stays unsent).
class MessageSend(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="message_sends", on_delete=fields.RESTRICT)
    channel = fields.ForeignKeyField("loyalty.Channel", related_name="message_sends", on_delete=fields.RESTRICT)
    event_id = fields.CharField(max_length=36)
    openid = fields.CharField(max_length=128)
    kind = fields.CharField(max_length=32)
    template_id = fields.CharField(max_length=128)
    status = fields.CharField(max_length=16)  # sending, sent, no_consent, refused, failed, invalid, unknown
    errcode = fields.IntField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "message_sends"
        unique_together = (("chain", "event_id", "channel", "openid"),)
        indexes = (("created_at",),)


# A member's balance of one kind. ``balance`` is the materialised sum of its postings.
class Account(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="accounts", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="accounts", on_delete=fields.RESTRICT)
    kind = fields.CharField(max_length=32)
    balance = fields.BigIntField(default=0)

    class Meta:
        table = "accounts"
        unique_together = (("member", "kind", "chain"),)


class JournalEntry(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="entries", on_delete=fields.RESTRICT)
    key = fields.CharField(max_length=200)
    kind = fields.CharField(max_length=32)
    member = fields.ForeignKeyField(
        "loyalty.Member", related_name="entries", null=True, on_delete=fields.RESTRICT
    )
    channel = fields.CharField(max_length=32, default="admin")
    actor = fields.CharField(max_length=64, null=True)
    reason = fields.CharField(max_length=500, null=True)
    ref = fields.CharField(max_length=200, null=True)
    occurred_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "journal_entries"
        unique_together = (("chain", "key"),)
        indexes = (("member_id", "id"),)


# One leg of an entry. ``account`` is set for member accounts; ``ledger`` names the
# chain-level counterpart (points_issued, cash_received ...) whose balance is summed on read.
class Posting(Model):
    id = fields.BigIntField(primary_key=True)
    entry = fields.ForeignKeyField("loyalty.JournalEntry", related_name="postings", on_delete=fields.RESTRICT)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="postings", on_delete=fields.RESTRICT)
    account = fields.ForeignKeyField(
        "loyalty.Account", related_name="postings", null=True, on_delete=fields.RESTRICT
    )
    ledger = fields.CharField(max_length=32)
    unit = fields.CharField(max_length=16)
    amount = fields.BigIntField()

    class Meta:
        table = "postings"
        indexes = (("entry_id",), ("account_id", "ledger"), ("chain_id", "entry_id"))


# Points that vested together and expire together. Sum of ``remaining`` over a member's
# lots equals their available points whenever those are not negative.
class PointsLot(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="lots", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="lots", on_delete=fields.RESTRICT)
    entry = fields.ForeignKeyField("loyalty.JournalEntry", related_name="lots", on_delete=fields.RESTRICT)
    order = fields.ForeignKeyField("loyalty.Order", related_name="lots", null=True, on_delete=fields.RESTRICT)
    amount = fields.BigIntField()
    remaining = fields.BigIntField()
    vested_at = fields.DatetimeField()
    expires_at = fields.DatetimeField(null=True)
    warned_at = fields.DatetimeField(null=True)  # when its member was told it expires soon (points.expiring)

    class Meta:
        table = "points_lots"
        # and two partial indexes of the lots still open (remaining > 0), by expiry and by member
        # in draw order: migration 0006
        indexes = (("order_id",),)


# Earned points that wait for ``vest_at`` (``pending_days``, or a marketplace confirmation).
class PendingPoints(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="pending", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="pending", on_delete=fields.RESTRICT)
    order = fields.ForeignKeyField("loyalty.Order", related_name="pending", null=True, on_delete=fields.RESTRICT)
    amount = fields.BigIntField()
    remaining = fields.BigIntField()
    vest_at = fields.DatetimeField()
    vested = fields.BooleanField(default=False)

    class Meta:
        table = "pending_points"
        indexes = (("chain_id", "vested", "vest_at"), ("order_id",), ("member_id",))


# A sale from any channel, with the figures it committed and what refunds took back.
#
# ``source`` is where the business key lives: ``store:<id>`` for a till, ``<platform>:<shop>``
# for a marketplace; (chain, source, txn_id) is unique forever.
class Order(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="orders", on_delete=fields.RESTRICT)
    store = fields.ForeignKeyField("loyalty.Store", related_name="orders", null=True, on_delete=fields.RESTRICT)
    channel = fields.CharField(max_length=32, default="pos")
    source = fields.CharField(max_length=96)
    txn_id = fields.CharField(max_length=64)
    member = fields.ForeignKeyField("loyalty.Member", related_name="orders", null=True, on_delete=fields.RESTRICT)
    # the dynamic member code that named the member, with its issue time: it commits one order
    member_code = fields.CharField(max_length=48, null=True)
    occurred_at = fields.DatetimeField()
    received_at = fields.DatetimeField(null=True)
    period = fields.IntField(default=0)  # yyyymm of occurred_at in the chain's timezone: its figures' month
    tier_before = fields.CharField(max_length=32, null=True)
    tier_after = fields.CharField(max_length=32, null=True)  # set when this order lifted the member's tier
    subtotal = fields.BigIntField()
    tier_discount = fields.BigIntField(default=0)
    coupon_discount = fields.BigIntField(default=0)
    points_discount = fields.BigIntField(default=0)
    payable = fields.BigIntField()
    points_redeemed = fields.BigIntField(default=0)
    points_earned = fields.BigIntField(default=0)
    points_pending_until = fields.DatetimeField(null=True)
    stored_value_principal = fields.BigIntField(default=0)
    stored_value_bonus = fields.BigIntField(default=0)
    growth_earned = fields.BigIntField(default=0)
    lines = fields.JSONField(default=list)
    payments = fields.JSONField(default=list)
    coupons = fields.JSONField(default=list)
    result = fields.JSONField(default=dict)
    refunded_amount = fields.BigIntField(default=0)
    refund_state = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "orders"
        unique_together = (("chain", "source", "txn_id"), ("chain", "member_code"))
        indexes = (("member_id", "occurred_at"),)


class Refund(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="refunds", on_delete=fields.RESTRICT)
    order = fields.ForeignKeyField("loyalty.Order", related_name="refunds", on_delete=fields.RESTRICT)
    refund_id = fields.CharField(max_length=64)
    amount = fields.BigIntField()
    lines = fields.JSONField(default=list)
    result = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "refunds"
        unique_together = (("order", "refund_id", "chain"),)


# What a coupon gives, and how many of it may exist: ``issued`` counts the coupons made from it,
# raised by one guarded update per issue, so ``stock`` holds however many tills issue at once.
class CouponTemplate(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="coupon_templates", on_delete=fields.RESTRICT)
    name = fields.CharField(max_length=100)
    kind = fields.CharField(max_length=16)  # cash, percent, gift
    amount_off = fields.BigIntField(default=0)
    percent_off = fields.IntField(default=0)
    max_off = fields.BigIntField(null=True)
    sku = fields.CharField(max_length=64, null=True)
    min_spend = fields.BigIntField(default=0)
    valid_days = fields.IntField(null=True)
    valid_from = fields.DatetimeField(null=True)
    valid_to = fields.DatetimeField(null=True)
    stock = fields.BigIntField(null=True)
    issued = fields.BigIntField(default=0)
    per_member_limit = fields.IntField(null=True)
    stackable = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "coupon_templates"
        unique_together = (("chain", "name"),)


# One coupon a member holds. ``code`` is random (not guessable, not in sequence); ``issue_key``
# names the cause of its issue (a request's claim, a welcome, a segment run) so that a cause
# issues it once. ``status``: issued -> redeemed (by ``order_id``, or at the counter), or voided;
# an issued coupon past ``valid_to`` is shown as expired.
class Coupon(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="coupons", on_delete=fields.RESTRICT)
    template = fields.ForeignKeyField("loyalty.CouponTemplate", related_name="coupons", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="coupons", on_delete=fields.RESTRICT)
    code = fields.CharField(max_length=32)
    issue_key = fields.CharField(max_length=200)
    status = fields.CharField(max_length=16, default="issued")
    valid_from = fields.DatetimeField()
    valid_to = fields.DatetimeField()
    order_id = fields.BigIntField(null=True)
    redeemed_at = fields.DatetimeField(null=True)
    issued_at = fields.DatetimeField()

    class Meta:
        table = "coupons"
        unique_together = (("chain", "code"), ("chain", "issue_key"))
        indexes = (("member_id", "status", "valid_to"), ("order_id",), ("template_id", "member_id"))


# A decision waiting for an operator: a tier upgrade to a ``manual_review`` level (``subject`` the
# level's code) or a risk flag (``subject`` the limit crossed). At most one pending review per
# member, kind and subject (a partial unique index, migration 0010); the decision is a journal
# entry too, with who and why.
class Review(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="reviews", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="reviews", on_delete=fields.RESTRICT)
    kind = fields.CharField(max_length=16)  # tier_upgrade, risk
    subject = fields.CharField(max_length=64)
    status = fields.CharField(max_length=16, default="pending")  # pending, approved, rejected
    detail = fields.JSONField(default=dict)
    opened_at = fields.DatetimeField()
    decided_at = fields.DatetimeField(null=True)
    decided_by = fields.CharField(max_length=64, null=True)
    note = fields.CharField(max_length=500, null=True)

    class Meta:
        table = "reviews"
        indexes = (("chain_id", "status", "id"), ("member_id",))


# One behaviour a member did (a check-in, a review, a share, a completed profile, an invite),
# rewarded or not (``points`` 0 past a cap). ``key`` is its cause, unique in the chain: a check-in
# per local day, a completed profile once, a review per thing reviewed, an invite per invitee.
class BehaviorEvent(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="behavior_events", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="behavior_events", on_delete=fields.RESTRICT)
    behavior = fields.CharField(max_length=16)
    key = fields.CharField(max_length=200)
    day = fields.IntField()  # yyyymmdd on the chain's calendar
    month = fields.IntField()  # yyyymm
    streak = fields.IntField(default=0)
    points = fields.BigIntField(default=0)
    ref = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "behavior_events"
        unique_together = (("chain", "key"),)
        indexes = (("chain_id", "member_id", "behavior", "day"),)


# A points-mall item: a price in points for one coupon of a template (a gift, a voucher). Its
# ``redeemed`` count is raised by a guarded update, so ``stock`` holds across processes.
class Reward(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="rewards", on_delete=fields.RESTRICT)
    name = fields.CharField(max_length=100)
    points = fields.BigIntField()
    template = fields.ForeignKeyField("loyalty.CouponTemplate", related_name="rewards", on_delete=fields.RESTRICT)
    stock = fields.BigIntField(null=True)
    redeemed = fields.BigIntField(default=0)
    per_member_limit = fields.IntField(null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "rewards"
        unique_together = (("chain", "name"),)


# One redemption in the mall, under its cause (``key``: the request's), with the points it took
# and the coupon it gave.
class RewardRedemption(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="reward_redemptions", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="reward_redemptions", on_delete=fields.RESTRICT)
    reward = fields.ForeignKeyField("loyalty.Reward", related_name="redemptions", on_delete=fields.RESTRICT)
    key = fields.CharField(max_length=200)
    points = fields.BigIntField()
    coupon_code = fields.CharField(max_length=32)
    result = fields.JSONField(default=dict)
    created_at = fields.DatetimeField()

    class Meta:
        table = "reward_redemptions"
        unique_together = (("chain", "key"),)
        indexes = (("chain_id", "member_id", "reward_id"),)


# A rule segment: members picked by their figures (recency, frequency, spend), tier, channels and
# tags, evaluated when read (``loyalty_core/segments.py``).
class Segment(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="segments", on_delete=fields.RESTRICT)
    name = fields.CharField(max_length=100)
    rules = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "segments"
        unique_together = (("chain", "name"),)


# A member's day on one channel, as their journal entries post it: orders placed, points issued
# (net of claw-backs), redeemed (net of returns) and expired. The activity report reads these
# roll-ups, never the journal. Written in the ledger's own statement, under the member's accounts'
# locks, so no row is shared by two members (a chain-wide daily row would serialise every till).
class MemberDay(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="member_days", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="days", on_delete=fields.RESTRICT)
    day = fields.IntField()  # yyyymmdd on the chain's calendar
    channel = fields.CharField(max_length=32)
    orders = fields.BigIntField(default=0)
    points_issued = fields.BigIntField(default=0)
    points_redeemed = fields.BigIntField(default=0)
    points_expired = fields.BigIntField(default=0)

    class Meta:
        table = "member_days"
        unique_together = (("chain", "member", "day", "channel"),)
        indexes = (("chain_id", "day"),)


# A stored-value top-up at a store's till, once per (store, topup_id) forever: the row is its
# transaction's first write, so a twin waits on the key and then answers the first result.
class Topup(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="topups", on_delete=fields.RESTRICT)
    store = fields.ForeignKeyField("loyalty.Store", related_name="topups", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="topups", on_delete=fields.RESTRICT)
    topup_id = fields.CharField(max_length=64)
    amount = fields.BigIntField()  # principal, fen
    bonus = fields.BigIntField()
    payment_method = fields.CharField(max_length=32)
    entry_id = fields.BigIntField(null=True)
    result = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "topups"
        unique_together = (("chain", "store", "topup_id"),)
        indexes = (("member_id", "id"),)


# What a member's tier metrics add up to in one month (``period`` yyyymm in the chain's timezone),
# and over the member's whole life (``period`` 0: the orders count of first-purchase upgrades).
# Written in the same transaction as the postings they summarise, so a tier metric reads a
# window's handful of rows instead of summing the journal.
class MemberFigure(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="figures", on_delete=fields.RESTRICT)
    member = fields.ForeignKeyField("loyalty.Member", related_name="figures", on_delete=fields.RESTRICT)
    period = fields.IntField()
    growth = fields.BigIntField(default=0)
    points_earned = fields.BigIntField(default=0)
    spend = fields.BigIntField(default=0)
    stored_value = fields.BigIntField(default=0)
    orders = fields.BigIntField(default=0)
    last_order_at = fields.DatetimeField(null=True)  # the latest order's occurred_at (recency, winback)

    class Meta:
        table = "member_figures"
        unique_together = (("chain", "member", "period"),)
        indexes = (("chain_id", "period", "last_order_at"),)


# A mutating request seen under an ``Idempotency-Key``: in progress, or its stored answer.
class IdempotencyRecord(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="idempotency", on_delete=fields.RESTRICT)
    key = fields.CharField(max_length=128)
    fingerprint = fields.CharField(max_length=64)
    token = fields.CharField(max_length=32, default="")  # whose lease it is: finish and release check it
    state = fields.CharField(max_length=16, default="running")
    status = fields.IntField(null=True)
    body = fields.TextField(null=True)
    locked_until = fields.DatetimeField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "idempotency_records"
        unique_together = (("chain", "key"),)
        indexes = (("created_at",),)


# An event a marketplace sent (a paid order, a confirmation, a refund), stored before it is applied:
# ``event_id`` is the platform's own message id, so a resend is recognised; ``order_key`` the
# platform's order id, so that a refund or confirmation that came first waits for its payment.
# ``body`` is the request body as it came, ``event`` what the adapter read from it (``loyalty_core.inbox``).
class InboxEvent(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="inbox", on_delete=fields.RESTRICT)
    channel = fields.ForeignKeyField("loyalty.Channel", related_name="inbox", on_delete=fields.RESTRICT)
    event_id = fields.CharField(max_length=128)
    kind = fields.CharField(max_length=16)        # paid, confirmed, refunded, closed, other
    order_key = fields.CharField(max_length=128)
    buyer_key = fields.CharField(max_length=128, null=True)  # the platform's buyer id, when it gives one
    status = fields.CharField(max_length=16)      # received, applied, waiting, failed
    reason = fields.CharField(max_length=300, null=True)
    event = fields.JSONField()
    body = fields.TextField()
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    received_at = fields.DatetimeField()
    applied_at = fields.DatetimeField(null=True)

    class Meta:
        table = "inbox_events"
        unique_together = (("chain", "channel", "event_id"),)
        indexes = (("chain_id", "channel_id", "order_key"), ("chain_id", "channel_id", "buyer_key"),
                   ("chain_id", "status", "next_attempt_at"))


# A chain's own system that wants the chain's events (``POST /v1/webhooks``): its URL, the topics
# it wants ("*": every public one) and the secret deliveries are signed with, kept encrypted.
# Each delivery is an outbox row of topic ``webhook.delivery`` (``loyalty_core.webhooks``).
class WebhookSubscription(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="webhooks", on_delete=fields.RESTRICT)
    url = fields.CharField(max_length=2000)
    events = fields.JSONField()
    secret_enc = fields.TextField()
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "webhook_subscriptions"
        indexes = (("chain_id", "active"),)

# A domain event to deliver after commit; written in the same transaction as its cause.
class OutboxEvent(Model):
    id = fields.BigIntField(primary_key=True)
    chain = fields.ForeignKeyField("loyalty.Chain", related_name="outbox", on_delete=fields.RESTRICT)
    event_id = fields.CharField(max_length=36)
    topic = fields.CharField(max_length=64)
    payload = fields.JSONField()
    status = fields.CharField(max_length=16, default="pending")
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    locked_until = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_events"
        unique_together = (("event_id", "chain"),)
        indexes = (("status", "next_attempt_at"), ("status", "delivered_at"))
