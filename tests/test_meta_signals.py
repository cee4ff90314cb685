"""A meta-labelling model's calls through the bot: a buy or nothing, only where its primary
rule calls one, and never with an expected return after costs at or below zero."""

from __future__ import annotations

import numpy as np
from desk import Desk

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import OrderType, Side


class MetaModel(SignalModel):
    """States P(the primary rule's long makes money), whether the rule calls a buy, and the
    trade's expected return, as the trained ensemble does."""

    name = "meta"

    def __init__(self) -> None:
        self.p, self.fires, self.expected = 0.5, True, 10.0

    def predict(self, closes: np.ndarray, bars=None) -> ModelOutput:  # type: ignore[no-untyped-def]
        return ModelOutput(self.p, (("meta", self.p),), ("chosen by the test",), "meta-v1", long_only=True,
                           tradeable=self.fires, expected_bps=self.expected)


def desk_with(p: float, fires: bool, expected: float) -> Desk:
    desk = Desk("auto")
    model = MetaModel()
    model.p, model.fires, model.expected = p, fires, expected
    desk.bot.pipeline("PLTR").model = model
    desk.model.p_up = p
    return desk


def feed(desk: Desk, price: float = 20.0) -> None:
    model = desk.bot.pipeline("PLTR").model
    p = model.p  # type: ignore[attr-defined]
    desk.close_bar(price, p)
    desk.tick(price)


def test_a_confident_call_with_a_positive_expected_return_buys_and_says_it() -> None:
    desk = desk_with(0.9, True, 12.5)
    feed(desk)
    assert desk.position is not None and desk.position.qty == 1_000
    (sig, status, _), = desk.records.signals.values()
    assert status == "executed" and sig.expected_bps == 12.5 and sig.confidence == 0.9


def test_no_trade_goes_out_with_an_expected_return_at_or_below_zero() -> None:
    for expected in (0.0, -3.0):
        desk = desk_with(0.95, True, expected)
        feed(desk)
        assert desk.position is None
        (_, status, detail), = desk.records.signals.values()
        assert status == "skipped" and "expected return after costs" in detail


def test_nothing_is_asked_when_the_primary_rule_calls_no_buy() -> None:
    desk = desk_with(0.95, False, 30.0)
    feed(desk)
    assert desk.position is None and desk.records.signals == {}


def test_a_low_chance_of_profit_is_never_a_sell() -> None:
    """max(p, 1 - p) would read P(profit) 0.1 as a 0.90 SELL of a position the stops manage."""
    desk = desk_with(0.95, True, 20.0)
    feed(desk)
    assert desk.position is not None
    model = desk.bot.pipeline("PLTR").model
    model.p = 0.1  # type: ignore[attr-defined]
    feed(desk, 20.1)
    assert desk.position is not None and desk.position.qty == 1_000
    assert desk.broker_orders(Side.SELL, OrderType.MARKET) == []
    assert {sig.side for sig, _, _ in desk.records.signals.values()} == {Side.BUY}
