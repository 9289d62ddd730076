"""Personal data at rest: AES-GCM encryption and keyed hashes for look-up, from one secret.

The chain's members are found by ``phone_hash`` (HMAC of the normalised phone); the phone itself is
only ever stored encrypted. Keys are derived from ``LOYALTY_SECRET`` with HKDF, one per purpose.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"loyalty-gateway", info=purpose).derive(
        secret.encode()
    )


class Vault:
    """Encrypts, decrypts and hashes personal data and terminal secrets."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("LOYALTY_SECRET must be at least 16 characters")
        self._aead = AESGCM(_derive(secret, b"encrypt-v1"))
        self._lookup_key = _derive(secret, b"lookup-v1")
        self.code_key = _derive(secret, b"member-code-v1")

    def encrypt(self, plain: str | None) -> str | None:
        if plain is None:
            return None
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode(), None)
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, sealed: str | None) -> str | None:
        if sealed is None:
            return None
        raw = base64.b64decode(sealed.removeprefix("v1:"))
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()

    def lookup_hash(self, chain_id: int, value: str) -> str:
        message = f"{chain_id}:{value}".encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    """Hash of a high-entropy credential (admin key, session token): SHA-256 is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str, nbytes: int = 24) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
