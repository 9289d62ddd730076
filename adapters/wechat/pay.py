"""WeChat Pay v3 payment notifications, verified and decrypted with wechatpayv3 in public-key mode.

A notification (``POST``, JSON) carries ``Wechatpay-Signature`` (base64 RSA-SHA256 of
``timestamp\\nnonce\\nbody\\n`` with WeChat Pay's key), ``Wechatpay-Timestamp``, ``Wechatpay-Nonce``,
``Wechatpay-Serial`` (in public-key mode: the public key's id, the channel's ``pay_public_key_id``)
and ``Wechatpay-Signature-Type`` (``WECHATPAY2-SHA256-RSA2048``). Its ``resource`` is
``AEAD_AES_256_GCM`` with the APIv3 key (``nonce``, ``associated_data``, ``ciphertext``) and holds
the transaction: ``transaction_id``, ``appid``, ``trade_state``, ``payer.openid``,
``amount.total`` (fen), ``attach``, ``success_time``.

Refused, and nothing done: an unknown serial, another signature type, a bad signature or a
resource that does not decrypt (401 ``invalid_signature``); a timestamp more than 5 minutes from
the gateway's clock (401 ``stale_request``). The signature and the decryption are wechatpayv3's
own (``wechatpayv3.utils.rsa_verify``, ``aes_decrypt``, ``load_public_key``): its ``Core`` wants the
merchant's private key, which a notification does not need and the channel does not hold.

Sources: wechatpayv3 2.0.4 (``core.Core._verify_signature`` and ``decrypt_callback``, the same
steps); WeChat Pay's docs "支付通知API" (the notification's fields, the answer: 200 or 204 without
a body on success, WeChat Pay retries otherwise) and "微信支付公钥" (public-key mode, ``PUB_KEY_ID_…``
as ``Wechatpay-Serial``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

import orjson
import structlog
from wechatpayv3.utils import aes_decrypt, load_public_key, rsa_verify

from loyalty_core import chains, codes, orders, sessions
from loyalty_core.channels import Connected
from loyalty_core.errors import BadRequest, InvalidSignature, LoyaltyError, NotFound, StaleRequest, ValidationFailed
from loyalty_core.models import Member
from loyalty_core.orders import OrderInput, Payment
from loyalty_core.program import Program
from loyalty_core.rules.pricing import Line

WINDOW_SECONDS = 300
log = structlog.get_logger("wechat")
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"


@dataclass(frozen=True)
class PaidTransaction:
    transaction_id: str
    app_id: str
    openid: str
    total: int
    attach: str
    success_time: datetime
    trade_state: str


def verified(channel: Connected, headers: Mapping[str, str], body: bytes, now: datetime) -> PaidTransaction:
    """The transaction of a notification WeChat Pay signed for this merchant, decrypted."""
    timestamp = headers.get("Wechatpay-Timestamp", "")
    if headers.get("Wechatpay-Serial", "") != channel.settings.get("pay_public_key_id") or \
            headers.get("Wechatpay-Signature-Type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
        raise InvalidSignature("Wechatpay-Serial is not this merchant's public key id, or not RSA-SHA256")
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(now.timestamp() - int(timestamp)) > WINDOW_SECONDS:
        raise StaleRequest("Wechatpay-Timestamp is more than 5 minutes away from the gateway's clock")
    text = body.decode("utf-8", "replace")
    key = load_public_key(channel.secret("pay_public_key"))
    if not rsa_verify(timestamp, headers.get("Wechatpay-Nonce", ""), text, headers.get("Wechatpay-Signature", ""), key):
        raise InvalidSignature("Wechatpay-Signature does not match")
    try:
        resource = orjson.loads(body)["resource"]
        plain = aes_decrypt(resource["nonce"], resource["ciphertext"], resource.get("associated_data") or "",
                            channel.secret("apiv3_key"))
        paid = orjson.loads(plain) if plain else None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        paid = None
    if not isinstance(paid, dict):
        raise InvalidSignature("The resource does not decrypt with this merchant's APIv3 key")
    try:
        at = paid.get("success_time")
        return PaidTransaction(str(paid["transaction_id"]), str(paid.get("appid", "")), str(paid["payer"]["openid"]),
                               int(paid["amount"]["total"]), str(paid.get("attach") or ""),
                               datetime.fromisoformat(at) if at else now, str(paid.get("trade_state", "")))
    except (KeyError, TypeError, ValueError):
        raise BadRequest("The decrypted resource is not a WeChat Pay transaction") from None


async def earn(channel: Connected, paid: PaidTransaction, program: Program, now: datetime) -> None:
    """A SUCCESS transaction of a member (by the payer's openid in the paying app) earns as a sale of
    the store whose code is ``attach``; anything else (not paid, no member, a frozen member) is
    acknowledged without effect. No such store: a field error, so that WeChat Pay sends it again."""
    chain_id, mch_id = channel.chain_id, channel.external_id
    member_id = await sessions.member_of(chain_id, sessions.WeChatAccount(paid.app_id, paid.openid)) \
        if paid.trade_state == "SUCCESS" else None
    if member_id is None:
        log.info("wechatpay.nothing_to_earn", mch_id=mch_id, transaction_id=paid.transaction_id,
                 trade_state=paid.trade_state)
        return
    try:
        store = await chains.store_by_code(chain_id, paid.attach)
    except NotFound:
        raise ValidationFailed([{"field": "attach", "message": f"no store {paid.attach[:32]!r} in this chain"}]) from None
    member = await codes.member_by_id(chain_id, member_id)
    try:
        await orders.place_order(chain_id, as_sale(paid, mch_id, member, store.id, now), program, now)
    except LoyaltyError as refused:  # frozen, say: the payment stands, there is nothing to retry
        if refused.status >= 500:
            raise
        log.info("wechatpay.not_earned", mch_id=mch_id, transaction_id=paid.transaction_id, code=refused.code)


def as_sale(paid: PaidTransaction, mch_id: str, member: Member, store_id: int, now: datetime) -> OrderInput:
    """A paid transaction as the core's sale: one line of its total, paid by WeChat Pay, keyed by
    (``wechatpay:<mch_id>``, transaction id) so that it earns once however often it is notified."""
    return OrderInput(source=f"wechatpay:{mch_id}", txn_id=paid.transaction_id[:64], occurred_at=paid.success_time,
                      lines=[Line(sku="WECHATPAY", category="wechat_pay", qty=1, unit_price=paid.total,
                                  amount=paid.total)],
                      member=member, payments=[Payment("wechat_pay", paid.total)], store_id=store_id,
                      channel="wechat", received_at=now, priced=True)
