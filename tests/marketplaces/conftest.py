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


@pytest.fixture
async def youzan(chain):
    """A Youzan shop connected to the test chain, under the plain program (1 point per yuan)."""
    from ..fakes.youzan import YouzanShop
    from .shops import PLAIN, connected

    await chain.set_program(PLAIN)
    return await connected(chain, YouzanShop.any())


@pytest.fixture(autouse=True)
async def ledger_still_balances(client):
    yield
    assert await verify() == [], "loyalty verify found differences"
