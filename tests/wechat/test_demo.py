"""The demo's ready-to-paste mini-program commands: the codes it prints are ones the fake WeChat
gave, and the login they make works against the gateway."""
from __future__ import annotations

import asyncio
import re

from gateway import demo


async def test_the_printed_login_and_join_work(chain, fake_wechat):
    fake_wechat.any_app = True
    assert (await chain.admin("POST", "/v1/channels", demo.DEMO_APP)).status == 201
    lines = await asyncio.to_thread(demo.mini_program_curls, fake_wechat.base_url, "http://gateway")
    text = "\n".join(lines)
    login_code = re.search(r'"code":"([0-9a-f]+)"', text).group(1)
    phone_code = re.search(r'"phone_code":"([0-9a-f]+)"', text).group(1)
    logged = await chain.client.post("/v1/mp/login", json={"app_id": demo.DEMO_APP["app_id"], "code": login_code})
    token = (await logged.json())["token"]
    joined = await chain.client.post("/v1/mp/join", json={"phone_code": phone_code, "nickname": "小王"},
                                     headers={"Authorization": f"Bearer {token}"})
    assert joined.status == 201 and (await joined.json())["member"]["phone"].endswith("9000")
    assert "小王" in text  # pasted as it reads
    assert await asyncio.to_thread(demo.mini_program_curls, "http://127.0.0.1:9", "http://gateway") == []
