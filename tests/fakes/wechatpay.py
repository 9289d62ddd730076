"""WeChat Pay as a sender: payment notifications signed and encrypted as WeChat Pay v3 does in
public-key mode (its docs, "支付通知API"; the same steps wechatpayv3 verifies): the resource
AEAD_AES_256_GCM with the APIv3 key, the headers' Wechatpay-Signature RSA-SHA256 (PKCS#1 v1.5,
base64) of ``timestamp\\nnonce\\nbody\\n`` with WeChat Pay's private key."""
from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class FakeWeChatPay:
    mch_id: str = "1900000109"
    public_key_id: str = "PUB_KEY_ID_0119000001092026120400000000001"
    apiv3_key: str = field(default_factory=lambda: secrets.token_hex(16))
    _key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                       key_size=2048))

    @property
    def public_pem(self) -> str:
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def channel_fields(self) -> dict:
        return {"mch_id": self.mch_id, "apiv3_key": self.apiv3_key, "pay_public_key_id": self.public_key_id,
                "pay_public_key": self.public_pem}

    def notification(self, app_id: str, openid: str, total: int, attach: str, transaction_id: str | None = None,
                     trade_state: str = "SUCCESS", timestamp: int | None = None, apiv3_key: str | None = None,
                     sign_with: rsa.RSAPrivateKey | None = None) -> tuple[dict, bytes]:
        """The headers and body WeChat Pay POSTs for one transaction."""
        paid = {"mchid": self.mch_id, "appid": app_id, "out_trade_no": secrets.token_hex(8),
                "transaction_id": transaction_id or "4200" + secrets.token_hex(12), "trade_type": "JSAPI",
                "trade_state": trade_state, "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": attach,
                "success_time": datetime.now(SHANGHAI).isoformat(timespec="seconds"),
                "payer": {"openid": openid}, "amount": {"total": total, "payer_total": total, "currency": "CNY",
                                                        "payer_currency": "CNY"}}
        nonce = secrets.token_hex(6)
        cipher = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(nonce.encode(), orjson.dumps(paid),
                                                                        b"transaction")
        body = orjson.dumps({"id": secrets.token_hex(8), "create_time": paid["success_time"],
                             "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
                             "summary": "支付成功", "resource": {
                                 "original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                 "ciphertext": base64.b64encode(cipher).decode(), "associated_data": "transaction",
                                 "nonce": nonce}})
        ts, header_nonce = str(timestamp if timestamp is not None else int(time.time())), secrets.token_hex(16)
        message = f"{ts}\n{header_nonce}\n{body.decode()}\n".encode()
        signature = (sign_with or self._key).sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {"Wechatpay-Signature": base64.b64encode(signature).decode(), "Wechatpay-Timestamp": ts,
                "Wechatpay-Nonce": header_nonce, "Wechatpay-Serial": self.public_key_id,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048", "Content-Type": "application/json"}, body

