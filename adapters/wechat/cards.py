"""The worker's WeChat member-card sync: on ``balance.changed`` and ``member_card.sync``, every active
card of the member is set to the member's totals with ``card/membercard/updateuser`` (``bonus``
and ``balance`` in full, ``add_bonus``/``add_balance`` the change since the last write). A failed
call raises, and the outbox retries the event later with backoff; a resent event writes the same
totals again (see ``loyalty_core.cards``)."""
from __future__ import annotations

from loyalty_core import cards, channels
from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault

from .client import App, WeChat

RECORD_BONUS = "积分变动"
RECORD_BALANCE = "储值余额变动"


class CardSync:
    topics = ("balance.changed", cards.SYNC)

    def __init__(self, wechat: WeChat, vault: Vault, clock: Clock) -> None:
        self.wechat, self.vault, self.clock = wechat, vault, clock

    async def __call__(self, event) -> None:
        member_id = (event.payload or {}).get("member_id")
        if not isinstance(member_id, int):
            return
        for write in await cards.writes_for(event.chain_id, member_id):
            channel = await channels.connected_by_id(write.chain_id, write.channel_id, self.vault)
            if channel is None:
                continue
            await self.wechat.update_member_card(App.of(channel), {
                "code": write.code, "card_id": write.card_id, "bonus": write.bonus, "add_bonus": write.add_bonus,
                "record_bonus": RECORD_BONUS, "balance": write.balance, "add_balance": write.add_balance,
                "record_balance": RECORD_BALANCE})
            await cards.written(write, self.clock.now())
