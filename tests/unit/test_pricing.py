"""Worked examples for pricing and refunds; each comment shows the arithmetic behind the figure."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, strategies as st

from loyalty_core.errors import InvalidRedeemPoints, RedeemOverLimit, RefundExceedsOrder, ValidationFailed
from loyalty_core.program import Campaign, Level, Program, Redeem
from loyalty_core.rules.pricing import (
    Line, OrderFigures, RefundShare, active_campaign, allocate, points_discount, price_order,
    refund_by_amount, refund_by_lines, tier_discount,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
REGULAR = Level(code="regular", name="普通会员", threshold=0)
GOLD = Level(code="gold", name="金卡", threshold=5000, earn_multiplier=Decimal("1.5"), discount_percent=Decimal(2))
MEMBER_DAY = {"name": "member day", "days_of_month": [8, 18, 28], "factor": 2}
# 2026-11-28 is a Saturday and a member day (the 28th); no lunch campaign on weekends.
SATURDAY_28TH = datetime.fromisoformat("2026-11-28T10:00:00+08:00")
PLAIN_DAY = datetime.fromisoformat("2026-11-24T10:00:00+08:00")


def program(**points) -> Program:
    return Program.model_validate({"points": points})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---- allocate ----------------------------------------------------------------------------

def test_allocate_thirds_give_the_spare_fen_to_the_first_line():
    # 100/3 = 33.33 each: floors 33+33+33 = 99, the 1 fen left goes to the earliest tie.
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]


def test_allocate_by_largest_remainder():
    # 7 x 3600/4800 = 5.25, 7 x 1200/4800 = 1.75, 0: floors 5+1+0 = 6, the 1 fen left goes to .75.
    assert allocate(7, [3600, 1200, 0]) == [5, 2, 0]


def test_allocate_edges():
    assert allocate(0, [5, 7]) == [0, 0]
    assert allocate(0, [0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        allocate(1, [0, 0])
    with pytest.raises(ValueError):
        allocate(1, [2, -1])


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**7), min_size=1, max_size=12))
def test_allocate_sums_exactly_and_stays_within_a_fen(total, weights):
    if sum(weights) == 0:
        weights = weights + [1]
    shares = allocate(total, weights)
    assert sum(shares) == total
    for share, weight in zip(shares, weights):
        exact = Fraction(total * weight, sum(weights))
        assert exact - 1 < share < exact + 1


# ---- discounts ---------------------------------------------------------------------------

def test_tier_discount_rounds_down():
    # 8599 x 2 / 100 = 171.98 -> 171
    assert tier_discount(8599, GOLD) == 171
    assert tier_discount(8599, REGULAR) == 0


def test_redeem_must_be_a_multiple_of_the_step():
    redeem = Redeem()  # 100 points -> 100 fen, at most half the subtotal
    with pytest.raises(InvalidRedeemPoints):
        points_discount(150, 1000, 1000, redeem)
    with pytest.raises(InvalidRedeemPoints):
        points_discount(-100, 1000, 1000, redeem)
    assert points_discount(0, 0, 0, redeem) == 0


def test_redeem_up_to_max_ratio():
    redeem = Redeem()
    # subtotal 1000 x 0.5 = 500 fen: 500 points (5 steps x 100 fen) is exactly at the limit.
    assert points_discount(500, 1000, 1000, redeem) == 500
    # 600 points would take 600 fen > 500: the most allowed is 500 // 100 x 100 = 500 points.
    with pytest.raises(RedeemOverLimit) as refused:
        points_discount(600, 1000, 1000, redeem)
    assert "500 points" in refused.value.detail
    assert refused.value.extra == {"max_redeem_points": 500}


def test_redeem_limited_by_what_tier_and_coupon_left():
    # subtotal 1000, a coupon of 850 leaves base 150: half the subtotal (500) would allow more,
    # but only 150 fen are left to pay, so 1 step (100 points) is the most.
    redeem = Redeem(points=100, amount=100, max_ratio=Decimal("0.5"))
    with pytest.raises(RedeemOverLimit) as refused:
        points_discount(200, 150, 1000, redeem)
    assert refused.value.extra == {"max_redeem_points": 100}


def test_redeem_max_ratio_is_exact_decimal():
    # 0.3 x 1000 = 300 exactly (a float gives 300.00000000000006 or 299.99999999999994).
    redeem = Redeem(points=10, amount=10, max_ratio=Decimal("0.3"))
    assert points_discount(300, 1000, 1000, redeem) == 300


# ---- earning -----------------------------------------------------------------------------

def test_tier_multiplier_is_exact():
    # 6000 fen / 100 = 60 x 1.15 = 69 exactly; with binary floats 60 x 1.15 = 68.99999... -> 68.
    silver = Level(code="silver", name="银卡", threshold=1000, earn_multiplier=Decimal("1.15"))
    quote = price_order([Line("RICE", None, 1, 6000, 6000)], program(), silver, 0, 0, PLAIN_DAY)
    assert quote.points_to_earn == 69
    assert quote.growth_to_earn == 60  # 6000 // 100


def test_category_multiplier_and_excluded_category():
    rules = program(category_multipliers={"fresh": 2}, exclude_categories=["tobacco"])
    lines = [Line("APPLE", "fresh", 1, 1000, 1000), Line("CIG", "tobacco", 1, 1000, 1000),
             Line("LATTE", "coffee", 1, 1000, 1000)]
    quote = price_order(lines, rules, REGULAR, 300, 0, PLAIN_DAY)
    # The 300 fen coupon is shared 100/100/100 - tobacco absorbs its share too - leaving 900 each.
    assert [line.coupon_share for line in quote.lines] == [100, 100, 100]
    assert [line.eligible for line in quote.lines] == [900, 900, 900]
    assert [line.factor for line in quote.lines] == [Decimal(2), Decimal(0), Decimal(1)]
    # 900 x 2 + 900 x 0 + 900 x 1 = 2700 fen of weight / 100 = 27 points.
    assert quote.points_to_earn == 27
    assert quote.payable == 2700


# ---- campaigns ---------------------------------------------------------------------------

def campaigns(lunch_factor: int) -> list[Campaign]:
    lunch = {"name": "lunch", "weekdays": [1, 2, 3, 4, 5], "hours": "11:00-14:00", "factor": lunch_factor}
    return [Campaign(**MEMBER_DAY), Campaign(**lunch)]


def test_largest_active_campaign_wins():
    # 2026-11-18 is a Wednesday and a member day: at 12:00 both are active.
    noon = at("2026-11-18T12:00:00+08:00")
    assert active_campaign(campaigns(3), noon, SHANGHAI) == ("lunch", Decimal(3))
    # Equal factors: the first in the list wins.
    assert active_campaign(campaigns(2), noon, SHANGHAI) == ("member day", Decimal(2))


def test_hours_include_the_start_and_exclude_the_end():
    # 2026-11-23 is a Monday and no member day.
    assert active_campaign(campaigns(3), at("2026-11-23T11:00:00+08:00"), SHANGHAI) == ("lunch", Decimal(3))
    assert active_campaign(campaigns(3), at("2026-11-23T13:59:59+08:00"), SHANGHAI) == ("lunch", Decimal(3))
    assert active_campaign(campaigns(3), at("2026-11-23T14:00:00+08:00"), SHANGHAI) == (None, Decimal(1))
    assert active_campaign(campaigns(3), at("2026-11-23T10:59:59+08:00"), SHANGHAI) == (None, Decimal(1))


def test_weekdays_are_iso_and_hours_can_end_at_midnight():
    late = [Campaign(name="late", weekdays=[7], hours="20:00-24:00", factor=Decimal("1.5"))]
    # 2026-11-29 is a Sunday (ISO 7).
    assert active_campaign(late, at("2026-11-29T23:59:00+08:00"), SHANGHAI) == ("late", Decimal("1.5"))
    assert active_campaign(late, at("2026-11-30T00:00:00+08:00"), SHANGHAI) == (None, Decimal(1))


def test_the_day_is_the_chains_local_day():
    # 2026-11-27T16:30Z is 2026-11-28 00:30 in Shanghai (UTC+8): the 28th, a member day.
    moment = at("2026-11-27T16:30:00+00:00")
    assert active_campaign(campaigns(3), moment, SHANGHAI) == ("member day", Decimal(2))
    assert active_campaign(campaigns(3), moment, ZoneInfo("UTC")) == (None, Decimal(1))


def test_a_campaign_without_conditions_is_always_active():
    always = [Campaign(name="launch", factor=Decimal("1.2"))]
    assert active_campaign(always, PLAIN_DAY, SHANGHAI) == ("launch", Decimal("1.2"))
    assert active_campaign([], PLAIN_DAY, SHANGHAI) == (None, Decimal(1))


# ---- a whole order -----------------------------------------------------------------------

GOLD_RULES = program(category_multipliers={"fresh": 2}, exclude_categories=["tobacco"], campaigns=[MEMBER_DAY])
GOLD_LINES = [
    Line("LATTE", "coffee", 2, 1800, 3600),
    Line("FRUIT", "fresh", 1, 2450, 2400),  # a line-level markdown: amount is not qty x unit_price
    Line("CIG", "tobacco", 1, 2500, 2500),
]


def gold_quote():
    return price_order(GOLD_LINES, GOLD_RULES, GOLD, 500, 200, SATURDAY_28TH)


def test_member_day_gold_order_with_tobacco_and_redeemed_points():
    quote = gold_quote()
    # subtotal 3600 + 2400 + 2500 = 8500
    assert quote.subtotal == 8500
    # tier: 8500 x 2% = 170; shares 170 x 3600/8500 = 72, x 2400/8500 = 48, x 2500/8500 = 50 (exact)
    assert quote.tier_discount == 170
    assert [line.tier_share for line in quote.lines] == [72, 48, 50]
    # coupon: min(500, 8500 - 170) = 500; 211.76 / 141.18 / 147.06 -> floors 211+141+147 = 499,
    # the 1 fen left goes to the largest remainder (.76, LATTE)
    assert quote.coupon_discount == 500
    assert [line.coupon_share for line in quote.lines] == [212, 141, 147]
    # points: 200 points = 2 steps x 100 fen = 200 fen <= min(0.5 x 8500 = 4250, 8500-170-500 = 7830);
    # 84.71 / 56.47 / 58.82 -> floors 84+56+58 = 198, the 2 fen left go to .82 (CIG) and .71 (LATTE)
    assert quote.points_discount == 200
    assert [line.points_share for line in quote.lines] == [85, 56, 59]
    # payable 8500 - 170 - 500 - 200 = 7630
    assert quote.payable == 7630
    # eligible: 3600-72-212-85 = 3231, 2400-48-141-56 = 2155, 2500-50-147-59 = 2244 (sum 7630)
    assert [line.eligible for line in quote.lines] == [3231, 2155, 2244]
    assert [line.payable for line in quote.lines] == [3231, 2155, 2244]
    assert [line.factor for line in quote.lines] == [Decimal(1), Decimal(2), Decimal(0)]
    # 2026-11-28 in Shanghai is a member day: factor 2
    assert (quote.campaign, quote.campaign_factor) == ("member day", Decimal(2))
    # earn: (3231 x 1 + 2155 x 2 + 2244 x 0) = 7541 / 100 = 75.41 x 1.5 = 113.115 x 2 = 226.23 -> 226
    assert quote.points_to_earn == 226
    # growth: 7630 // 100 = 76
    assert quote.growth_to_earn == 76


def test_coupon_is_capped_at_what_the_tier_discount_left():
    # subtotal 1000, gold tier 20, coupon 5000 -> min(5000, 980) = 980; payable 0, earns nothing.
    quote = price_order([Line("CAKE", None, 1, 1000, 1000)], program(), GOLD, 5000, 0, PLAIN_DAY)
    assert (quote.tier_discount, quote.coupon_discount, quote.payable, quote.points_to_earn) == (20, 980, 0, 0)


def test_rounding_never_discounts_a_line_below_zero():
    lines = [Line("A", None, 1, 333, 333), Line("B", None, 1, 333, 333), Line("C", None, 1, 334, 334)]
    quote = price_order(lines, program(), GOLD, 980, 0, PLAIN_DAY)
    # tier 1000 x 2% = 20: 6.66 / 6.66 / 6.68 -> floors 6+6+6, 2 fen to C (.68) then A (.66, earlier tie)
    #   = [7, 6, 7]
    # coupon 980: 326.34 / 326.34 / 327.32 -> floors 326+326+327 = 979, 1 fen to A (.34, earlier tie)
    #   = [327, 326, 327]
    # A would then carry 7 + 327 = 334 > 333: the coupon fen over moves to B, the line with room.
    assert [line.tier_share for line in quote.lines] == [7, 6, 7]
    assert [line.coupon_share for line in quote.lines] == [326, 327, 327]
    assert [line.eligible for line in quote.lines] == [0, 0, 0]


def test_order_validation_names_each_bad_field():
    lines = [Line("A", None, 0, -1, 100), Line("B", None, 1, 100, -5)]
    with pytest.raises(ValidationFailed) as refused:
        price_order(lines, program(), REGULAR, -1, 0, PLAIN_DAY)
    assert [error["field"] for error in refused.value.errors] == [
        "lines[0].qty", "lines[0].unit_price", "lines[1].amount", "coupon_discount"]
    with pytest.raises(ValidationFailed) as refused:
        price_order([], program(), REGULAR, 0, 0, PLAIN_DAY)
    assert refused.value.errors[0]["field"] == "lines"


def test_order_redeem_errors():
    lines = [Line("A", None, 1, 1000, 1000)]
    with pytest.raises(InvalidRedeemPoints):
        price_order(lines, program(), REGULAR, 0, 50, PLAIN_DAY)
    with pytest.raises(RedeemOverLimit):
        price_order(lines, program(), REGULAR, 0, 600, PLAIN_DAY)  # 600 fen > 0.5 x 1000


@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(0, 5000), st.sampled_from(["fresh", "tobacco", None])),
             min_size=1, max_size=6),
    st.integers(0, 100), st.integers(0, 20000), st.integers(0, 60),
)
def test_shares_add_up_and_no_line_goes_negative(raw, percent, coupon, steps):
    lines = [Line(f"S{i}", category, qty, amount, amount) for i, (qty, amount, category) in enumerate(raw)]
    level = Level(code="x", name="x", threshold=0, discount_percent=Decimal(percent))
    rules = program(category_multipliers={"fresh": 2}, exclude_categories=["tobacco"],
                    redeem={"points": 10, "amount": 10, "max_ratio": 1})
    try:
        quote = price_order(lines, rules, level, coupon, steps * 10, PLAIN_DAY)
    except RedeemOverLimit:
        return
    assert sum(line.tier_share for line in quote.lines) == quote.tier_discount
    assert sum(line.coupon_share for line in quote.lines) == quote.coupon_discount
    assert sum(line.points_share for line in quote.lines) == quote.points_discount
    assert sum(line.eligible for line in quote.lines) == quote.payable
    for line in quote.lines:
        assert 0 <= line.eligible <= line.amount
        assert min(line.tier_share, line.coupon_share, line.points_share) >= 0


# ---- refunds -----------------------------------------------------------------------------

def gold_order() -> OrderFigures:
    """The gold order above, paid with 3000 fen of stored-value principal and 500 of bonus."""
    quote = gold_quote()
    return OrderFigures(
        payable=quote.payable, subtotal=quote.subtotal, points_earned=quote.points_to_earn,
        points_redeemed=200, sv_principal_paid=3000, sv_bonus_paid=500, growth_earned=quote.growth_to_earn,
        lines=quote.lines, refunded_qty=[0] * len(quote.lines), refunded_amount=0,
        refunded_ratio=Fraction(0), refunded_earn_ratio=Fraction(0),
        points_reversed=0, points_returned=0, sv_principal_returned=0, sv_bonus_returned=0, growth_reversed=0,
    )


def after(order: OrderFigures, share: RefundShare, refunded_qty: list[int] | None = None) -> OrderFigures:
    """The order's figures once ``share`` is applied, as the caller would store them."""
    return replace(
        order, refunded_qty=refunded_qty or order.refunded_qty, refunded_amount=order.refunded_amount + share.amount,
        refunded_ratio=share.ratio, refunded_earn_ratio=share.earn_ratio,
        points_reversed=order.points_reversed + share.points_reversed,
        points_returned=order.points_returned + share.points_returned,
        sv_principal_returned=order.sv_principal_returned + share.sv_principal_returned,
        sv_bonus_returned=order.sv_bonus_returned + share.sv_bonus_returned,
        growth_reversed=order.growth_reversed + share.growth_reversed,
    )


FULL = (7630, 226, 200, 3000, 500, 76)  # payable, earned, redeemed, principal, bonus, growth


def taken_back(order: OrderFigures) -> tuple[int, ...]:
    return (order.refunded_amount, order.points_reversed, order.points_returned,
            order.sv_principal_returned, order.sv_bonus_returned, order.growth_reversed)


def test_half_then_the_rest_by_lines_adds_up_to_the_whole_order():
    order = gold_order()
    first, qty = refund_by_lines(order, [("LATTE", 1)])
    # ratio: 3600 x 1/2 / 8500 = 18/85; earn ratio: 3231 x 1 x 1/2 / 7541 = 3231/15082
    assert (first.ratio, first.earn_ratio, qty) == (Fraction(18, 85), Fraction(3231, 15082), [1, 0, 0])
    # amount 7630 x 18/85 = 1615.76 -> 1615; earned 226 x 3231/15082 = 48.4 -> 48;
    # redeemed 200 x 18/85 = 42.4 -> 42; principal 3000 x 18/85 = 635.3 -> 635;
    # bonus 500 x 18/85 = 105.9 -> 105; growth 76 x 18/85 = 16.1 -> 16
    assert (first.amount, first.points_reversed, first.points_returned, first.sv_principal_returned,
            first.sv_bonus_returned, first.growth_reversed) == (1615, 48, 42, 635, 105, 16)
    order = after(order, first, qty)
    rest, qty = refund_by_lines(order, [("LATTE", 1), ("FRUIT", 1), ("CIG", 1)])
    # Both ratios reach 1: each figure comes back in full, less what the first refund took.
    assert (rest.ratio, rest.earn_ratio, qty) == (1, 1, [2, 1, 1])
    # 7630-1615 = 6015, 226-48 = 178, 200-42 = 158, 3000-635 = 2365, 500-105 = 395, 76-16 = 60
    assert (rest.amount, rest.points_reversed, rest.points_returned, rest.sv_principal_returned,
            rest.sv_bonus_returned, rest.growth_reversed) == (6015, 178, 158, 2365, 395, 60)
    assert taken_back(after(order, rest, qty)) == FULL


def test_refund_by_amount():
    order = gold_order()
    tenth = refund_by_amount(order, 763)
    # 763 / 7630 = 1/10 for both ratios: earned 22.6 -> 22, redeemed 20, principal 300, bonus 50,
    # growth 7.6 -> 7
    assert (tenth.ratio, tenth.earn_ratio) == (Fraction(1, 10), Fraction(1, 10))
    assert (tenth.amount, tenth.points_reversed, tenth.points_returned, tenth.sv_principal_returned,
            tenth.sv_bonus_returned, tenth.growth_reversed) == (763, 22, 20, 300, 50, 7)
    order = after(order, tenth)
    rest = refund_by_amount(order, 7630 - 763)
    assert (rest.ratio, rest.earn_ratio) == (1, 1)
    assert taken_back(after(order, rest)) == FULL


def test_refunding_an_excluded_line_reverses_no_earned_points():
    share, qty = refund_by_lines(gold_order(), [("CIG", 1)])
    # ratio 2500/8500 = 5/17, but tobacco's earning weight is 2244 x 0 = 0: earn ratio stays 0.
    assert (share.ratio, share.earn_ratio, qty) == (Fraction(5, 17), 0, [0, 0, 1])
    # amount 7630 x 5/17 = 2244.1 -> 2244; redeemed 200 x 5/17 = 58.8 -> 58; growth 76 x 5/17 = 22.4 -> 22
    assert (share.amount, share.points_reversed, share.points_returned, share.growth_reversed) == (2244, 0, 58, 22)


def test_amount_then_lines_still_adds_up_exactly():
    order = after(gold_order(), refund_by_amount(gold_order(), 763))
    # Returning the tobacco now refunds 5/17 of what was left: 1/10 + 9/10 x 5/17 = 31/85;
    # the earn ratio stays at 1/10 since tobacco carries no earning weight.
    share, qty = refund_by_lines(order, [("CIG", 1)])
    assert (share.ratio, share.earn_ratio) == (Fraction(31, 85), Fraction(1, 10))
    assert (share.amount, share.points_reversed) == (7630 * 31 // 85 - 763, 0)
    order = after(order, share, qty)
    rest, qty = refund_by_lines(order, [("LATTE", 2), ("FRUIT", 1)])
    assert (rest.ratio, rest.earn_ratio) == (1, 1)
    assert taken_back(after(order, rest, qty)) == FULL


def test_a_sku_on_several_lines_fills_them_in_order():
    lines = [Line("TEA", None, 2, 500, 1000), Line("CAKE", None, 1, 800, 800), Line("TEA", None, 1, 400, 400)]
    quote = price_order(lines, program(), REGULAR, 0, 0, PLAIN_DAY)
    order = replace(gold_order(), payable=quote.payable, subtotal=quote.subtotal, points_earned=quote.points_to_earn,
                    growth_earned=quote.growth_to_earn, lines=quote.lines, refunded_qty=[0, 0, 0])
    share, qty = refund_by_lines(order, [("TEA", 3)])
    # both TEA lines, 1000 + 400 of 2200 fen: ratio 14/22 = 7/11; amount 2200 x 7/11 = 1400
    assert (qty, share.ratio, share.amount) == ([2, 0, 1], Fraction(7, 11), 1400)


def test_refund_beyond_the_order_is_refused():
    order = gold_order()
    with pytest.raises(RefundExceedsOrder):
        refund_by_lines(order, [("LATTE", 3)])  # only 2 bought
    with pytest.raises(RefundExceedsOrder):
        refund_by_lines(order, [("LATTE", 1), ("LATTE", 2)])  # 3 in total
    share, qty = refund_by_lines(order, [("LATTE", 1)])
    with pytest.raises(RefundExceedsOrder):
        refund_by_lines(after(order, share, qty), [("LATTE", 2)])  # 1 left
    with pytest.raises(RefundExceedsOrder):
        refund_by_amount(order, 7631)
    with pytest.raises(RefundExceedsOrder):
        refund_by_amount(after(order, share, qty), 7630 - 1615 + 1)


def test_refund_validation():
    order = gold_order()
    with pytest.raises(ValidationFailed) as refused:
        refund_by_lines(order, [("NOPE", 1), ("LATTE", 0)])
    assert [error["field"] for error in refused.value.errors] == ["lines[0].sku", "lines[1].qty"]
    with pytest.raises(ValidationFailed) as refused:
        refund_by_amount(order, 0)
    assert refused.value.errors[0]["field"] == "amount"


@given(st.lists(st.tuples(st.sampled_from(["LATTE", "FRUIT", "CIG"]), st.booleans()), max_size=6))
def test_any_sequence_of_partial_refunds_adds_up_to_a_full_one(steps):
    order = gold_order()
    for sku, by_amount in steps:
        left = order.payable - order.refunded_amount
        if by_amount and left > 1:
            share, qty = refund_by_amount(order, left // 3 or 1), None
        else:
            index = next(i for i, line in enumerate(order.lines) if line.sku == sku)
            if order.refunded_qty[index] == order.lines[index].qty:
                continue
            share, qty = refund_by_lines(order, [(sku, 1)])
        assert min(share.amount, share.points_reversed, share.points_returned, share.growth_reversed) >= 0
        order = after(order, share, qty)
    remaining = [(line.sku, line.qty - done) for line, done in zip(order.lines, order.refunded_qty)
                 if line.qty > done]
    if remaining:
        order = after(order, *refund_by_lines(order, remaining))
    assert taken_back(order) == FULL


def test_a_free_order_refunds_by_quantity():
    lines = [Line("GIFT", None, 3, 0, 0), Line("BAG", None, 1, 0, 0)]
    quote = price_order(lines, program(), REGULAR, 0, 0, PLAIN_DAY)
    order = replace(gold_order(), payable=0, subtotal=0, points_earned=0, points_redeemed=0, sv_principal_paid=0,
                    sv_bonus_paid=0, growth_earned=0, lines=quote.lines, refunded_qty=[0, 0])
    share, qty = refund_by_lines(order, [("GIFT", 1)])
    # subtotal 0: by quantity, 1 of 3 + 1 = 4 units -> 1/4; nothing to pay back.
    assert (share.ratio, share.earn_ratio, share.amount, qty) == (Fraction(1, 4), Fraction(1, 4), 0, [1, 0])
