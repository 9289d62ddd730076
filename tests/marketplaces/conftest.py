"""Marketplace tests talk to the gateway's hooks as the platforms do; a test that binds a buyer in the
mini-program needs the fake WeChat too, so the gateway is pointed at it here. After every test the
ledger must still balance (``loyalty verify``), whatever the platforms sent."""
from __future__ import annotations

import dataclasses

import pytest

from loyalty_core.verify import verify


@pytest.fixture
def settings(settings, fake_wechat):
    return dataclasses.replace(settings, wechat_api_base_url=fake_wechat.base_url)


@pytest.fixture(autouse=True)
async def ledger_still_balances(client):
    yield
    assert await verify() == [], "loyalty verify found differences"
