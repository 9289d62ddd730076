"""A chain to put under load, made through the admin API of a running gateway."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..e2e.programs import PROGRAM, line, order
from .client import Client

SKUS = [("LATTE", "coffee", 1800), ("BEANS", "coffee", 6500), ("APPLE", "fresh", 900), ("MUG", "goods", 3200)]
# The POS test program without tier discounts: members climb tiers under a long load, and a sale
# paid at its subtotal must still add up whatever tier its member has reached by then.
LOAD_PROGRAM = {**PROGRAM, "tiers": {**PROGRAM["tiers"], "levels": [
    {key: value for key, value in level.items() if key != "discount_percent"} for level in PROGRAM["tiers"]["levels"]]}}


@dataclass
class Shop:
    chain_id: int
    members: list[int]


async def seed(client: Client, base: str, chain_id: int, members: int) -> Shop:
    """Under the POS test program (no welcome points, no pending days, no tier discounts): store
    S01 with terminal POS1 (its id and secret go into ``client``) and ``members`` members."""
    answer = await client.admin(base, "PUT", "/v1/program", LOAD_PROGRAM)
    assert answer.status == 200, answer.body
    answer = await client.admin(base, "POST", "/v1/stores", {"code": "S01", "name": "Store 1"})
    assert answer.status == 201, answer.body
    answer = await client.admin(base, "POST", "/v1/stores/S01/terminals", {"code": "POS1"})
    assert answer.status == 201, answer.body
    client.terminal_id, client.terminal_secret = answer.body["terminal_id"], answer.body["secret"]
    ids = []
    for i in range(members):
        answer = await client.admin(base, "POST", "/v1/members", {"phone": f"1390000{i:04d}"},
                                    idempotency_key=uuid.uuid4().hex)
        assert answer.status == 201, answer.body
        ids.append(answer.body["id"])
    return Shop(chain_id, ids)


def sale(txn_id: str, member_id: int | None, rng, member_code: str | None = None) -> dict:
    """An order body of one or two lines, paid in full, that happened a moment ago."""
    lines = [line(sku, category, amount) for sku, category, amount in rng.sample(SKUS, rng.randint(1, 2))]
    at = (datetime.now(timezone.utc) - timedelta(seconds=2)).replace(microsecond=0).isoformat()
    fields = {"member_code": member_code} if member_code else {"member_id": member_id}
    return order(txn_id, lines, at=at, **fields)
