"""Every Redis key the gateway writes or reads during a till's work carries its chain as a Redis
Cluster hash tag (``{chain:<id>}``), so that one chain's keys share a slot (docs/scaling.md)."""
from __future__ import annotations

import re
from datetime import datetime

from redis.crc import key_slot

from tests.e2e.programs import PROGRAM, line, order

from ..helpers import member_code
from ..roundtrips import counting

NOW = "2026-11-20T10:05:00+08:00"
TAG = re.compile(r"\{([^}]*)\}")


def keys_of(commands: list[str]) -> list[tuple[str, str]]:
    """(command, key) of every keyed command sent (PING and the like have no key)."""
    sent = [command.split(" ", 1) for command in commands]
    return [(parts[0].upper(), parts[1]) for parts in sent if len(parts) == 2]


async def _a_till_day(kit, phone: str) -> list[tuple[str, str]]:
    await kit.set_program(PROGRAM)
    member = await kit.new_member(phone)
    with counting() as count:
        code = await member_code(kit, member["id"])
        assert (await kit.pos("POST", "/v1/pos/scan", {"code": code})).status == 200
        assert (await kit.pos("POST", "/v1/pos/scan", {"code": phone})).status == 200
        await kit.sale(order("K1", [line("LATTE", "coffee", 1000)], member_code=code, at=NOW))
        refund = await kit.pos("POST", "/v1/pos/orders/K1/refunds", {"refund_id": "R1", "amount": 500})
        assert refund.status == 201, await refund.text()
    return keys_of(count.commands)


async def test_every_key_of_a_till_carries_its_chain_as_a_hash_tag(chain, other_chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    for kit, phone in ((chain, "13300000001"), (other_chain, "13300000002")):
        sent = await _a_till_day(kit, phone)
        assert {"SET", "GET"} <= {command for command, _ in sent}, sent
        kinds = set()
        for command, key in sent:
            tags = TAG.findall(key)
            assert tags and tags[0] == f"chain:{kit.chain_id}", f"{command} {key}: no hash tag of its chain first"
            kinds.add(key.split("}:", 1)[1].split(":", 1)[0])
        assert kinds == {"mcode", "nonce"}, kinds  # a new kind of key: add it to docs/scaling.md's list
        # one chain's keys share one slot, the slot of its tag alone
        assert {key_slot(key.encode()) for _, key in sent} == {key_slot(f"chain:{kit.chain_id}".encode())}
