"""The demo's ready-to-paste Youzan pushes: signed as the demo shop, they earn and then vest the
points of the demo member's phone through the gateway."""
from __future__ import annotations

import shlex

from gateway import demo


async def test_the_printed_youzan_pushes_earn_and_confirm(chain):
    assert (await chain.admin("POST", "/v1/channels", demo.DEMO_SHOP)).status == 201
    member = await chain.new_member("13800138000")
    lines = [line.strip() for line in demo.youzan_curls("http://gateway", "13800138000") if line.startswith("  curl")]
    assert len(lines) == 2
    for pasted in lines:
        argv = shlex.split(pasted)
        headers = {argv[i + 1].split(": ")[0]: argv[i + 1].split(": ")[1] for i, a in enumerate(argv) if a == "-H"}
        body = argv[argv.index("--data-raw") + 1].encode()
        answer = await chain.client.post(argv[argv.index("-X") + 2].replace("http://gateway", ""), data=body,
                                         headers=headers)
        assert answer.status == 200 and await answer.json() == {"code": 0, "msg": "success"}
    balances = (await chain.member(member["id"]))["balances"]
    assert (balances["points"], balances["pending_points"]) == (66, 0)
