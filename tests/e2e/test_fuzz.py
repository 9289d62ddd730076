"""Schemathesis throws generated requests at every documented operation, each with a valid
credential for its scheme (owner key on admin routes, terminal signature on /v1/pos/*, a joined
member's token on /v1/mp/*, through tests/fuzz/hooks.py; WeChat is the fake): no answer may be a 5xx, and every answer must match the OpenAPI document
(status code, content type, body schema), and the ledger must still add up afterwards. This is
the short profile; `make fuzz` runs the long one."""
import asyncio
import dataclasses

import pytest

from loyalty_core.verify import verify
from tests.fuzz.run import UNFUZZED, parse_answers, seed_sales, st_command, st_env

from ..helpers import ChainKit, problem
from ..wechat.conftest import connect

SHORT = {"max_examples": 8, "seed": 20261122}


async def _seed(chain: ChainKit) -> dict[str, list]:
    """Members and sales that exist, so that routes behind an id get past their 404."""
    members = [(await chain.new_member(f"1390013900{i}", name="Fuzz"))["id"] for i in range(4)]
    sales = seed_sales(members)
    for sale in sales:
        await chain.sale(sale)
    return {"member_id": members, "txn_id": [sale["txn_id"] for sale in sales], "sku": ["LATTE"]}


async def _answers(chain: ChainKit):
    return parse_answers(await (await chain.client.get("/metrics")).text())


@pytest.fixture
def settings(settings, fake_wechat):
    """WeChat is the fake here: a generated login reaches it (and is refused as WeChat would)."""
    fake_wechat.any_app = True  # an app the run connects logs in as well (a wrong secret would be a 502)
    return dataclasses.replace(settings, wechat_api_base_url=fake_wechat.base_url)


async def test_generated_requests_on_every_auth_scheme_match_the_openapi_document(chain, fake_wechat):
    seeded = await _seed(chain)
    mini = await connect(chain, fake_wechat)
    token, _ = await mini.member("13900139099")
    own_key = (await (await chain.admin("GET", "/v1/admin-keys")).json())["items"][0]["id"]
    base = str(chain.client.make_url("/")).rstrip("/")
    before = await _answers(chain)
    process = await asyncio.create_subprocess_exec(
        *st_command(base + "/openapi.json", **SHORT),
        env=st_env(chain.admin_key, chain.terminal_id, chain.terminal_secret, own_key, seeded, token),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]

    made = await _answers(chain) - before
    assert not [key for key in made if key[2].startswith("5")], made
    # Both schemes got through: every operation had at least one answer other than 401.
    spec = await (await chain.client.get("/openapi.json")).json()
    authenticated = {(method.upper(), path) for path, methods in spec["paths"].items()
                     for method, op in methods.items() if op.get("security")}
    let_in = {(method, route) for (method, route, status), n in made.items() if status != "401" and n}
    assert authenticated - let_in - set(UNFUZZED.values()) == set(), report[-3000:]
    assert await verify() == []  # and the ledger still adds up


NUL_BODIES = [
    ("admin", "POST", "/v1/stores", {"code": "S02", "name": "a\u0000b"}, "name"),
    ("admin", "POST", "/v1/members", {"phone": "13700137000", "store_code": "S\u0000"}, "store_code"),
    ("admin", "GET", "/v1/members?tier=a%00b", None, "tier"),
    ("pos", "POST", "/v1/pos/scan", {"code": "a\u0000b"}, "code"),
    ("pos", "POST", "/v1/pos/orders", {"txn_id": "T-NUL", "payments": [{"method": "cash", "amount": 1}],
                                       "lines": [{"sku": "\u0000", "qty": 1, "unit_price": 1, "amount": 1}]},
     "lines[0].sku"),
]


async def test_nul_in_free_text_is_a_field_error_not_a_server_error(chain):
    """PostgreSQL text cannot hold U+0000: the request models refuse it (422) before it gets there."""
    for scheme, method, path, body, field in NUL_BODIES:
        response = await (chain.admin if scheme == "admin" else chain.pos)(method, path, body)
        answer = await problem(response, 422, "validation_error")
        assert [e["field"] for e in answer["errors"]] == [field], answer
