"""The mini-program's budgets (docs/architecture.md, "Round-trip budgets"): what login, join and
``me`` send to PostgreSQL and Redis, counted, never timed (the calls to the fake WeChat are not
counted: they are the platform's). Join registers a member: most of its statements are the
registration's, as from the till."""
from __future__ import annotations

import pytest

from gateway.services import SERVICES

from ..integration.test_round_trips_pg import within
from ..roundtrips import counting
from .test_mp_login import WELCOME

pytestmark = pytest.mark.postgres

# Counted with the app's connection not in the process's 1-second memo (the first call of a second).
LOGIN = (3, 0)         # the app, the member of the openid, the new session
LOGIN_MEMBER = (6, 0)  # ... and the member's view: its row, its identities, its balances and tier
JOIN = (24, 1)         # the session, the app, the phone's member, the registration with its welcome points (17,
                       # BEGIN and COMMIT included), the WeChat identity, the sessions told, the account's member
                       # cards claimed, the view; the cached access token (one Redis GET)
ME = (4, 0)            # the session, the member, its identities, its balances and tier


@pytest.fixture
async def shop(mini):
    await mini.kit.set_program(WELCOME)
    await mini.member("13600000000")  # the app's access token is fetched and cached
    return mini


def cold(shop) -> None:
    shop.kit.client.server.app[SERVICES].channels.drop(("wechat", shop.app_id))


async def test_login_join_and_me(shop):
    code = shop.fake.login_code(shop.app_id, "o_budget")
    cold(shop)
    with counting() as count:
        logged = await shop.call("POST", "/v1/mp/login", None, {"app_id": shop.app_id, "code": code})
        assert logged.status == 200
    within(count, LOGIN)
    token = (await logged.json())["token"]
    cold(shop)
    with counting() as count:
        await shop.join(token, "13600000001")
    within(count, JOIN)
    with counting() as count:
        await shop.me(token)
    within(count, ME)
    code = shop.fake.login_code(shop.app_id, "o_budget")
    cold(shop)
    with counting() as count:
        again = await shop.call("POST", "/v1/mp/login", None, {"app_id": shop.app_id, "code": code})
        assert again.status == 200 and (await again.json())["member"] is not None
    within(count, LOGIN_MEMBER)
