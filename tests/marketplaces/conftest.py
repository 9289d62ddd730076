"""Marketplace tests talk to the gateway's hooks as the platforms do; a test that binds a buyer in the
mini-program needs the fake WeChat too, so the gateway is pointed at it here."""
from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture
def settings(settings, fake_wechat):
    return dataclasses.replace(settings, wechat_api_base_url=fake_wechat.base_url)
