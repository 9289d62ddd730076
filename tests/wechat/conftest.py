"""Fixtures of the WeChat tests: a fake WeChat on loopback, the gateway pointed at it, and a
mini-program that logs in, joins and calls the member routes as a real one would."""
from __future__ import annotations

import dataclasses
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from ..fakes.wechat import FakeWeChat
from ..helpers import ChainKit


@pytest.fixture
def settings(settings, fake_wechat):
    """The gateway's settings with every WeChat URL on the fake."""
    return dataclasses.replace(settings, wechat_api_base_url=fake_wechat.base_url)


@dataclass
class MiniProgram:
    """One connected app of one chain, and the calls its users make."""

    kit: ChainKit
    fake: FakeWeChat
    app_id: str
    secret: str

    async def login(self, openid: str | None = None, unionid: str | None = None) -> dict:
        response = await self.call("POST", "/v1/mp/login", None, {
            "app_id": self.app_id, "code": self.fake.login_code(self.app_id, openid, unionid)})
        assert response.status == 200, await response.text()
        return await response.json()

    async def join(self, token: str, phone: str, status: int = 201, **fields) -> dict:
        response = await self.call("POST", "/v1/mp/join", token,
                                   {"phone_code": self.fake.phone_code(self.app_id, phone), **fields})
        assert response.status == status, await response.text()
        return await response.json()

    async def member(self, phone: str, openid: str | None = None, **fields) -> tuple[str, dict]:
        """Log in and join: the token and the member."""
        token = (await self.login(openid))["token"]
        return token, (await self.join(token, phone, **fields))["member"]

    async def call(self, method: str, path: str, token: str | None, json: Any = None,
                   idempotency_key: str | None = None):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = orjson.dumps(json) if json is not None else None
        return await self.kit.client.request(method, path, data=data, headers=headers)

    async def me(self, token: str) -> dict:
        response = await self.call("GET", "/v1/mp/me", token)
        assert response.status == 200, await response.text()
        return await response.json()


def app_id() -> str:
    return "wx" + secrets.token_hex(8)


async def connect(kit: ChainKit, fake: FakeWeChat, **fields) -> MiniProgram:
    app, secret = app_id(), secrets.token_hex(16)
    fake.add_app(app, secret)
    response = await kit.admin("POST", "/v1/channels", {"platform": "wechat", "app_id": app, "app_secret": secret,
                                                        **fields}, idempotency_key=uuid.uuid4().hex)
    assert response.status == 201, await response.text()
    return MiniProgram(kit, fake, app, secret)


@pytest.fixture
async def mini(chain, fake_wechat) -> MiniProgram:
    return await connect(chain, fake_wechat)
