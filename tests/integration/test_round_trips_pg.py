"""What one till request costs in round trips to PostgreSQL and Redis (counts, never times)."""
from datetime import datetime

import pytest

from tests.e2e.programs import PROGRAM, line, order

from ..roundtrips import counting

pytestmark = pytest.mark.postgres

NOW = "2026-11-20T10:05:00+08:00"


@pytest.fixture
async def till(chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    await chain.set_program(PROGRAM)
    return chain


async def test_print_round_trips(till):
    member = await till.new_member("13300000001")
    await till.sale(order("WARM", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW))
    with counting() as count:
        assert (await till.pos("POST", "/v1/pos/scan", {"code": "13300000001"})).status == 200
    print("SCAN", count.report())
    with counting() as count:
        await till.sale(order("O1", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW))
    print("ORDER", count.report())
    with counting() as count:
        await till.sale(order("O2", [line("LATTE", "coffee", 1000)], 900, member_id=member["id"], at=NOW,
                              redeem_points=100) if False else
                        order("O2", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW))
    print("ORDER2", count.report())
