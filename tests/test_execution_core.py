"""The execution core's shape: one core for the portfolio, one pipeline per symbol, an order
state machine that only moves forward, and a simulated broker that fills by volume."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from conftest import utc
from desk import BAR, MORNING, Desk, FixedModel
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from app.engine.bot import TradingBot
from app.engine.broker.base import BrokerError
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import EventBus, PredictionEvent
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, Order, OrderStatus, OrderType, Side


class Says(SignalModel):
    """A model with one fixed opinion, so each symbol's own model can be told apart."""

    def __init__(self, name: str, p_up: float) -> None:
        self.name, self.p_up = name, p_up

    def predict(self, closes: np.ndarray) -> ModelOutput:
        return ModelOutput(self.p_up, ((self.name, self.p_up),), (f"{self.name} says so",), f"{self.name}-v1")


def bar(symbol: str, start, price: float, volume: float = 1_000_000.0) -> Bar:
    return Bar(symbol, start, price, price, price, price, volume)


def test_each_symbol_runs_its_own_model_and_one_core_holds_the_portfolio() -> None:
    clock = SimClock(MORNING)
    sim = SimulatedBroker(clock, 100_000.0)
    records, bus, seen = MemoryRecorder(), EventBus(), []
    bus.subscribe(seen.append)
    models = {"PLTR": Says("pltr-model", 0.95), "SPY": Says("spy-model", 0.5), "NVDA": Says("nvda-model", 0.95)}
    settings = Settings(mode="auto", max_exposure_pct=1.0)  # room for several 20% positions
    bot = TradingBot(settings, clock, sim, FixedModel(), records, bus, models=models.__getitem__)
    bot.start()
    clock.set(MORNING + BAR)
    for symbol, price in (("PLTR", 20.0), ("SPY", 500.0), ("NVDA", 100.0)):
        sim.on_price(symbol, price, clock.now())
        bot.on_bar_close(bar(symbol, MORNING, price))
    clock.advance(timedelta(seconds=30))
    for symbol, price in (("PLTR", 20.0), ("SPY", 500.0), ("NVDA", 100.0)):
        sim.on_price(symbol, price, clock.now())
    bot.on_clock()

    assert {p.symbol for p in records.positions()} == {"PLTR", "NVDA"}  # SPY's model saw no edge
    assert {s: p.model.name for s, p in bot.pipelines.items()} == {s: m.name for s, m in models.items()}
    calls = {(e.symbol, e.votes[0][0]) for e in seen if isinstance(e, PredictionEvent)}
    assert calls == {("PLTR", "pltr-model"), ("SPY", "spy-model"), ("NVDA", "nvda-model")}
    # one book: every position has its own broker stop, and the second entry was sized
    # against the first (20% of equity each at most, both counted)
    stops = {o.symbol: o.qty for o in sim.open_orders() if o.order_type == OrderType.STOP}
    assert stops == {p.symbol: p.qty for p in records.positions()}
    equity = sim.account().equity
    assert all(p.qty * p.avg_price <= 0.2 * equity + 1e-6 for p in records.positions())


def test_a_late_feed_blocks_only_its_own_symbol() -> None:
    desk = Desk("auto", calendar=MarketCalendar())
    desk.close_bar(500.0, symbol="SPY")
    desk.clock.advance(timedelta(minutes=15))  # SPY's next bars do not come; PLTR's do
    desk.close_bar(20.0, p_up=0.95)
    assert desk.bot.data_stale("SPY") and not desk.bot.data_stale("PLTR")
    desk.tick(20.0)
    assert desk.position is not None, "PLTR's entry was blocked by SPY's late feed"
    desk.close_bar(500.0, p_up=0.95, symbol="SPY")  # SPY back: judged on its own feed again
    assert not desk.bot.data_stale("SPY")


def test_an_order_report_older_than_the_record_changes_nothing() -> None:
    desk = Desk("auto")
    fills = desk.bot.core.fills
    fills.on_position_changed = lambda symbol: None  # the fills alone: no broker holds these shares
    entry = Order("ait-x-entry", "PLTR", Side.BUY, 1000, OrderType.MARKET, OrderStatus.PARTIALLY_FILLED,
                  MORNING, filled_qty=400, filled_avg_price=20.0)
    desk.records.order(entry, MORNING)
    fills.book_fill(entry)
    assert desk.position is not None and desk.position.qty == 400

    stale = replace(entry, status=OrderStatus.NEW, filled_qty=0.0, filled_avg_price=None)  # a late "new"
    assert fills.follow(entry, stale) is entry
    assert desk.records.get_order("ait-x-entry").status == OrderStatus.PARTIALLY_FILLED
    assert desk.position.qty == 400

    done = replace(entry, status=OrderStatus.FILLED, filled_qty=1000, filled_avg_price=20.3)
    fills.follow(entry, done)
    assert desk.position.qty == 1000
    assert desk.position.avg_price == pytest.approx(20.3 * 1000 / 1000)  # the broker's average of all
    ended = desk.records.get_order("ait-x-entry")
    assert ended.status == OrderStatus.FILLED and not ended.status.is_open
    assert fills.follow(ended, replace(done, status=OrderStatus.CANCELED)) is ended  # never reopened


def test_the_simulated_broker_fills_a_big_order_over_several_bars() -> None:
    clock = SimClock(MORNING)
    sim = SimulatedBroker(clock, 1_000_000.0, participation=0.1)
    sim.on_price("PLTR", 20.0, MORNING)
    sim.submit(Order("big", "PLTR", Side.BUY, 1000, OrderType.MARKET, OrderStatus.INTENT, MORNING))
    states = []
    for k, (price, volume) in enumerate([(20.0, 3_000), (21.0, 3_000), (22.0, 2_000), (23.0, 50_000)]):
        sim.on_bar(Bar("PLTR", MORNING + k * BAR, price, price, price, price, volume))
        o = sim.get_order("big")
        states.append((o.status, o.filled_qty))
    assert states == [(OrderStatus.PARTIALLY_FILLED, 300), (OrderStatus.PARTIALLY_FILLED, 600),
                      (OrderStatus.PARTIALLY_FILLED, 800), (OrderStatus.FILLED, 1000)]
    assert sim.get_order("big").filled_avg_price == pytest.approx((300 * 20 + 300 * 21 + 200 * 22 + 200 * 23) / 1000)
    assert sim.held("PLTR") == 1000


def test_a_partly_filled_order_cancelled_keeps_its_shares_and_says_so() -> None:
    clock = SimClock(MORNING)
    sim = SimulatedBroker(clock, 1_000_000.0, participation=0.1)
    sim.submit(Order("big", "PLTR", Side.BUY, 1000, OrderType.MARKET, OrderStatus.INTENT, MORNING))
    sim.on_bar(Bar("PLTR", MORNING, 20.0, 20.0, 20.0, 20.0, 3_000))
    sim.cancel("big")
    o = sim.get_order("big")
    assert (o.status, o.filled_qty, sim.held("PLTR")) == (OrderStatus.CANCELED, 300, 300)


def test_an_entry_filled_in_part_by_a_thin_market_is_protected_for_what_filled() -> None:
    """The bot on a simulated broker that fills 10% of each bar's volume: the part of the entry
    that filled is a position with a stop of its size; the rest of the entry is cut (a working
    buy beside a sell stop is what Alpaca refuses as a wash trade)."""
    desk = Desk("auto")
    desk.sim = thin = SimulatedBroker(desk.clock, 100_000.0, participation=0.1)
    desk.bot = TradingBot(desk.settings, desk.clock, thin, desk.model, desk.records, desk.bot.bus)
    desk.bot.start()
    desk.close_bar(20.0, p_up=0.95)
    desk.clock.advance(BAR)
    thin.on_bar(Bar("PLTR", utc(2025, 3, 4, 15, 5), 20.0, 20.0, 20.0, 20.0, 2_000))  # 200 of the entry fill
    desk.bot.on_clock()
    assert desk.position is not None and desk.position.qty == 200
    (stop,) = [o for o in thin.open_orders() if o.order_type == OrderType.STOP]
    assert stop.qty == 200 and stop.stop_price == pytest.approx(20.0 * 0.97)
    entry = next(o for o in desk.records.orders.values() if o.reason == "entry")
    assert entry.status == OrderStatus.CANCELED and entry.filled_qty == 200


def test_a_slow_cancel_stays_pending_can_still_fill_and_lands_later() -> None:
    clock = SimClock(MORNING)
    sim = SimulatedBroker(clock, 1_000_000.0, participation=0.1, cancel_delay_s=60)
    sim.submit(Order("slow", "PLTR", Side.BUY, 1000, OrderType.MARKET, OrderStatus.INTENT, MORNING))
    sim.on_bar(Bar("PLTR", MORNING, 20.0, 20.0, 20.0, 20.0, 3_000))
    sim.cancel("slow")
    assert sim.get_order("slow").status == OrderStatus.PENDING_CANCEL
    clock.advance(timedelta(seconds=30))
    sim.on_price("PLTR", 20.5, clock.now(), volume=1_000)  # fills while the cancel is pending
    o = sim.get_order("slow")
    assert (o.status, o.filled_qty) == (OrderStatus.PENDING_CANCEL, 400)
    clock.advance(timedelta(seconds=30))
    o = sim.get_order("slow")
    assert (o.status, o.filled_qty, sim.held("PLTR")) == (OrderStatus.CANCELED, 400, 400)
    sim.on_price("PLTR", 21.0, clock.now(), volume=100_000)
    assert sim.held("PLTR") == 400  # a canceled order fills no more


@hyp_settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.80, 0.99), min_size=1, max_size=10), st.integers(1, 5), st.sampled_from([0.2, 0.5, 1.0]))
def test_signals_of_one_bar_close_are_ranked_then_sized_against_every_limit(
        p_ups: list[float], max_positions: int, max_exposure: float) -> None:
    """Up to ten symbols signal at the same bar close: the strongest enter first, and what
    enters never breaks the position count, the exposure cap or the size per position."""
    clock = SimClock(MORNING)
    sim = SimulatedBroker(clock, 100_000.0)
    records = MemoryRecorder()
    symbols = [f"S{k}" for k in range(len(p_ups))]
    models = {s: Says(s, p) for s, p in zip(symbols, p_ups, strict=True)}
    settings = Settings(mode="auto", max_positions=max_positions, max_exposure_pct=max_exposure)
    bot = TradingBot(settings, clock, sim, FixedModel(), records, models=models.__getitem__)
    bot.start()
    clock.set(MORNING + BAR)
    for k, s in enumerate(symbols):
        sim.on_price(s, 10.0 + k, clock.now())
    bot.on_bars_close([bar(s, MORNING, 10.0 + k) for k, s in enumerate(symbols)])

    entries = [o for o in records.orders.values() if o.reason == "entry"]
    entered = {o.symbol for o in entries}
    equity = 100_000.0
    assert len(entries) <= max_positions
    assert sum(o.qty * (10.0 + symbols.index(o.symbol)) for o in entries) <= max_exposure * equity + 1e-6
    assert all(o.qty * (10.0 + symbols.index(o.symbol)) <= 0.2 * equity + 1e-6 for o in entries)
    assert entered, "the strongest signal did not enter although every limit had room"
    sent = [models[o.symbol].p_up for o in entries]  # in the order they were sent
    assert sent == sorted(sent, reverse=True), "a weaker signal was sized before a stronger one"
    assert sent[0] == max(p_ups), "the strongest signal was not the first sized"
    weakest_in = min(sent)
    for sid, (sig, status, detail) in records.signals.items():
        if sig.symbol not in entered and models[sig.symbol].p_up > weakest_in:
            # a stronger signal left out only because what room was left could not hold one share
            assert status.value == "refused" and "rounds to zero" in detail, (sid, status, detail)


class OneSickSymbol(SimulatedBroker):
    """Reads of one symbol's orders fail (a per-order fault at the broker); the rest answer."""

    sick = ""

    def get_order(self, client_order_id: str) -> Order | None:
        if self.sick and client_order_id.startswith(f"ait-{self.sick}-"):
            raise BrokerError("Alpaca unavailable (503)", transient=True)
        return super().get_order(client_order_id)


def test_one_order_whose_reads_fail_does_not_starve_the_others() -> None:
    desk = Desk("auto", sim=OneSickSymbol, max_exposure_pct=1.0)
    sim = desk.sim
    assert isinstance(sim, OneSickSymbol)
    desk.close_bar(500.0, p_up=0.95, symbol="SPY")  # SPY's entry waits at the broker
    sim.sick = "SPY"  # from now on every read of it fails
    desk.close_bar(20.0, p_up=0.95)  # PLTR's entry, polled after SPY's
    desk.tick(20.0)  # PLTR's entry fills
    assert desk.position is not None and desk.position.qty > 0, "PLTR's fill was never read"
    assert [o.qty for o in desk.broker_orders(Side.SELL, OrderType.STOP) if o.symbol == "PLTR"] == [desk.position.qty]
    assert desk.bot.core.connected  # the broker answers: one order's fault is not an outage


def test_a_backtests_broker_skips_checks_only_when_nothing_changed() -> None:
    """A broker only the engine trades on (a backtest's) says when a symbol's orders changed,
    and the stop check is not repeated while nothing did. A stop that ends at the broker is
    a change: it is put back at the next check, as without the shortcut."""
    clock = SimClock(MORNING)
    sim = SimulatedBroker(clock, 100_000.0, sole_owner=True)
    records = MemoryRecorder()
    bot = TradingBot(Settings(mode="auto"), clock, sim, Says("m", 0.95), records)
    bot.start()
    clock.set(MORNING + BAR)
    sim.on_price("PLTR", 20.0, clock.now())
    bot.on_bar_close(bar("PLTR", MORNING, 20.0))
    clock.advance(timedelta(seconds=30))
    sim.on_price("PLTR", 20.0, clock.now())
    bot.on_clock()
    stops = [o for o in sim.open_orders() if o.order_type == OrderType.STOP]
    assert len(stops) == 1 and records.get_position("PLTR") is not None
    asked = sim.revision("PLTR")
    bot.on_clock()
    assert sim.revision("PLTR") == asked, "an unchanged account was asked to change"

    sim.cancel(stops[0].client_order_id)  # the stop ended at the broker (cancelled there, expired)
    bot.on_clock()
    again = [o for o in sim.open_orders() if o.order_type == OrderType.STOP]
    assert len(again) == 1 and again[0].client_order_id != stops[0].client_order_id, "the shares were left bare"
    assert again[0].qty == records.get_position("PLTR").qty


def test_the_shortcut_changes_no_backtest() -> None:
    """The same 3-symbol backtest with the broker's revisions trusted and ignored (every check
    in full): the same trades, fills and equity, to the cent."""
    from test_backtest_portfolio import portfolio_bars

    from app.engine.backtest.config import BacktestConfig
    from app.engine.backtest.runner import run_backtest

    bars = portfolio_bars(sessions=10)
    cfg = BacktestConfig(symbol="AAA,BBB,CCC", timeframe="5m", strategy="sma_cross")
    settings = Settings(max_exposure_pct=1.0, trailing_start_pct=0.006, trailing_pct=0.003)  # stops move often
    fast = run_backtest(bars, cfg, settings=settings)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SimulatedBroker, "revision", lambda self, symbol: None)
        full = run_backtest(bars, cfg, settings=settings)
    assert len(fast.trades) >= 20
    assert {t.exit_reason for t in fast.trades} >= {"trailing stop"}, "no trailing stop was ever moved"
    assert fast.trades == full.trades
    assert list(fast.equity) == list(full.equity)
    assert (fast.held == full.held).all()
