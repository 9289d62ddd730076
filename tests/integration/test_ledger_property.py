"""Random sequences of ledger operations keep the books straight.

After every sequence: each stored balance equals the sum of its postings (``verify() == []``,
which also checks that points lots follow the available points), the balances equal a simple
model of what should have happened, every entry balances per unit, a guarded debit never took
an account below zero, and a refused operation left no trace at all.
"""
from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from loyalty_core import ledger, members, points, tiers
from loyalty_core.chains import create_chain
from loyalty_core.crypto import Vault
from loyalty_core.errors import DuplicateEntry, InsufficientPoints, InsufficientStoredValue, InvariantViolation
from loyalty_core.ledger import Entry, Leg
from loyalty_core.models import JournalEntry, Posting
from loyalty_core.program import Program
from loyalty_core.verify import verify
from tests.conftest import SECRET, empty_database

MEMBERS = 3
who = st.integers(0, MEMBERS - 1)
amount = st.integers(1, 400)
operation = st.one_of(
    st.tuples(st.just("adjust"), who, st.sampled_from(["points", "stored_value"]),
              st.one_of(st.integers(-400, -1), st.integers(1, 400))),
    st.tuples(st.just("credit"), who, st.sampled_from(["sv_principal", "sv_bonus", "growth"]), amount),
    st.tuples(st.just("spend"), who, st.sampled_from(["points", "sv_principal", "sv_bonus"]), amount),
    st.tuples(st.just("clawback"), who, st.sampled_from(["points", "growth"]), amount),
    st.tuples(st.just("transfer"), who, who, amount),
    st.tuples(st.just("pay"), who, amount, amount),
    st.tuples(st.just("unbalanced"), who, amount),
    st.tuples(st.just("duplicate"), who, amount),
)

COUNTERPART = {"points": "points_issued", "growth": "growth_issued", "sv_principal": "cash_received",
               "sv_bonus": "bonus_granted"}
SPENT = {"points": "points_redeemed", "sv_principal": "sv_spent", "sv_bonus": "bonus_spent"}
GUARDED = ("sv_principal", "sv_bonus")  # only ever debited through a guard in these sequences


class Books:
    """The model: what each member account should hold, and how many entries should exist."""

    def __init__(self, chain_id: int, ids: list[int], now) -> None:
        self.chain_id, self.ids, self.now = chain_id, ids, now
        self.balance: dict[tuple[int, str], int] = defaultdict(int)
        self.entries = 0
        self.keys: list[str] = []
        self.clawed: set[int] = set()

    async def post(self, key: str, legs: list[Leg], member_id: int, points_move: int = 0) -> None:
        """Post an entry as the core does: in one transaction, with the points lots kept in step."""
        async with in_transaction():
            entry = await ledger.post(self.chain_id, Entry(key=key, kind="test", legs=legs, member_id=member_id,
                                                           occurred_at=self.now))
            if points_move > 0:
                await points.add_lot(self.chain_id, member_id, entry, points_move, self.now, Program())
            elif points_move < 0:
                await points.take_from_lots(self.chain_id, member_id, -points_move)
            growth = sum(leg.amount for leg in legs if leg.ledger == "growth" and leg.member_id == member_id)
            if growth:  # growth moves with the member's tier figures, as every core path keeps them
                await tiers.add_figures(self.chain_id, member_id, 202611, tiers.Figures(growth=growth))
        self.entries += 1
        self.keys.append(key)
        for leg in legs:
            if leg.member_id is not None:
                self.balance[(leg.member_id, leg.ledger)] += leg.amount

    async def apply(self, n: int, op: tuple) -> None:
        kind, m = op[0], self.ids[op[1]]
        key = f"op:{n}"
        if kind == "adjust":
            account, value = op[2], op[3]
            held = self.balance[(m, "points" if account == "points" else "sv_principal")]
            refused = value < 0 and held < -value
            try:
                await members.adjust(self.chain_id, m, account, value, "property", "test", Program(), self.now)
            except (InsufficientPoints, InsufficientStoredValue) as error:
                assert refused, (op, held, error)
                expected = InsufficientPoints if account == "points" else InsufficientStoredValue
                assert isinstance(error, expected)
                return
            assert not refused, (op, held)
            self.entries += 1
            self.balance[(m, "points" if account == "points" else "sv_principal")] += value
        elif kind == "credit":
            account, value = op[2], op[3]
            await self.post(key, [Leg(account, value, m), Leg(COUNTERPART[account], -value)], m,
                            value if account == "points" else 0)
        elif kind == "spend":
            account, value = op[2], op[3]
            refused = self.balance[(m, account)] < value
            try:
                await self.post(key, [Leg(account, -value, m, guard=True), Leg(SPENT[account], value)], m,
                                -value if account == "points" else 0)
            except (InsufficientPoints, InsufficientStoredValue):
                assert refused, op
                return
            assert not refused, op
        elif kind == "clawback":  # a refund's reversal: unguarded, may go below zero
            account, value = op[2], op[3]
            await self.post(key, [Leg(account, -value, m), Leg(COUNTERPART[account], value)], m,
                            -value if account == "points" else 0)
            self.clawed.add(m)
        elif kind == "transfer":  # two members in one entry: the refusal of one leg undoes the other
            to, value = self.ids[op[2]], op[3]
            if to == m:
                return
            refused = self.balance[(m, "sv_principal")] < value
            try:
                await self.post(key, [Leg("sv_principal", value, to), Leg("sv_principal", -value, m, guard=True)], m)
            except InsufficientStoredValue:
                assert refused, op
                return
            assert not refused, op
        elif kind == "pay":  # stored value spends principal and bonus together; either short refuses both
            principal, bonus = op[2], op[3]
            refused = self.balance[(m, "sv_principal")] < principal or self.balance[(m, "sv_bonus")] < bonus
            try:
                await self.post(key, [Leg("sv_principal", -principal, m, guard=True), Leg("sv_spent", principal),
                                      Leg("sv_bonus", -bonus, m, guard=True), Leg("bonus_spent", bonus)], m)
            except InsufficientStoredValue:
                assert refused, op
                return
            assert not refused, op
        elif kind == "unbalanced":
            try:
                await self.post(key, [Leg("sv_principal", op[2], m), Leg("cash_received", -op[2] + 1)], m)
            except InvariantViolation as error:
                assert "does not balance" in str(error)
                return
            raise AssertionError("an unbalanced entry was posted")
        elif kind == "duplicate":
            if not self.keys:
                return
            try:
                await self.post(self.keys[-1], [Leg("sv_principal", op[2], m), Leg("cash_received", -op[2])], m)
            except DuplicateEntry:
                return
            raise AssertionError("an entry key was posted twice")

    async def check(self) -> None:
        assert await verify(self.chain_id) == []
        for m in self.ids:
            stored = await ledger.balances(self.chain_id, m)
            for account in ("points", "growth", "sv_principal", "sv_bonus"):
                assert stored[account] == self.balance[(m, account)], (m, account)
            for account in GUARDED:
                assert stored[account] >= 0, (m, account)
            if m not in self.clawed:
                assert stored["points"] >= 0, m
        sums = await Posting.filter(chain_id=self.chain_id).group_by("entry_id", "unit").annotate(
            total=Sum("amount")).values("entry_id", "unit", "total")
        assert all(int(row["total"]) == 0 for row in sums), sums
        assert await JournalEntry.filter(chain_id=self.chain_id).count() == self.entries


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
@example(ops=[("adjust", 0, "points", 100), ("spend", 0, "points", 60), ("clawback", 0, "points", 90),
              ("spend", 0, "points", 1), ("adjust", 0, "points", 50), ("adjust", 0, "points", -21),
              ("adjust", 0, "points", -20), ("credit", 1, "sv_principal", 300), ("transfer", 1, 2, 301),
              ("transfer", 1, 2, 300), ("transfer", 2, 0, 100), ("credit", 0, "sv_bonus", 50),
              ("pay", 0, 100, 51), ("pay", 0, 100, 50), ("unbalanced", 1, 5), ("duplicate", 2, 5),
              ("adjust", 2, "stored_value", -201), ("adjust", 2, "stored_value", -200)])
async def test_random_sequences_keep_the_books_straight(client, clock, ops):
    await empty_database()
    chain, _ = await create_chain("Property")
    vault, now = Vault(SECRET), clock.now()
    ids = []
    for i in range(MEMBERS):
        member = await members.register_member(chain.id, members.NewMember(phone=f"1300000000{i}"), Program(),
                                               vault, now)
        ids.append(member.id)
    books = Books(chain.id, ids, now)
    for n, op in enumerate(ops):
        await books.apply(n, op)
    await books.check()
