"""The demo as the app starts it: build_engine on a fresh home, a few simulated
sessions, then a restart that carries on where the last run stopped."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import utc

from app.engine.bootstrap import EngineContext, build_engine
from app.engine.clock import NY
from app.engine.events import Event, EventBus, OrderEvent, PredictionEvent, SignalEvent, TradeEvent
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.engine.storage import OrderRepository, PredictionRepository, SignalRepository
from app.engine.types import OrderStatus, OrderType

TODAY = utc(2025, 3, 6, 12, 0)  # a Thursday; the demo starts at Wednesday's open
SESSION_STEPS = 78 * 11  # 78 five-minute bars, each 10 ticks and a close
SETTINGS = Settings(mode="auto", demo_seed=1)
# three symbols that trade often: room for several positions, Auto acting from 0.60
WATCHING = Settings(mode="auto", demo_seed=1, watchlist=("PLTR", "NVDA", "AMD"), max_exposure_pct=1.0,
                    auto_threshold=0.6, approval_threshold=0.6)


def start(events: list[Event], settings: Settings = SETTINGS) -> EngineContext:
    """The demo engine in this test's home, every event it publishes into ``events``."""
    bus = EventBus()
    bus.subscribe(events.append)
    return build_engine(AppPaths.resolve(), settings, bus=bus, today=TODAY, sleep=lambda s: None)


def placed(events: list[Event]) -> list[str]:
    return [e.order.client_order_id for e in events
            if isinstance(e, OrderEvent) and e.order.status == OrderStatus.NEW]


def test_the_demo_predicts_signals_and_trades_in_auto_mode(app_home: Path) -> None:
    events: list[Event] = []
    ctx = start(events)
    try:
        assert ctx.clock.now() == utc(2025, 3, 5, 14, 30)  # Wednesday's open
        assert len(ctx.history) == 2 * 78
        steps = ctx.replay.run(max_steps=3 * SESSION_STEPS)
        assert steps == 3 * SESSION_STEPS and ctx.replay.bars_played == 3 * 78
        kinds = Counter(type(e).__name__ for e in events)
        assert kinds[PredictionEvent.__name__] == 3 * 78
        assert PredictionRepository(ctx.storage).count() == 3 * 78
        assert any(isinstance(e, SignalEvent) and e.status == "executed" for e in events)
        assert SignalRepository(ctx.storage).recent()
        orders = OrderRepository(ctx.storage).recent()
        assert any(o.status == OrderStatus.FILLED and o.reason == "entry" for o in orders)
        assert ctx.broker.fills
        trades = [e.trade for e in events if isinstance(e, TradeEvent)]
        assert trades and all(t.exit_time > t.entry_time for t in trades)
        # the demo never holds overnight: flat at the close, every trade within one day
        assert not ctx.calendar.is_open(ctx.clock.now()) and ctx.broker.positions() == []
        assert all(t.exit_time.astimezone(NY).date() == t.entry_time.astimezone(NY).date() for t in trades)
        assert (app_home / "trader.db").exists()
        # the orders table (the last event per order) shows every order as the record has it
        shown = {e.order.client_order_id: e.order.status for e in events if isinstance(e, OrderEvent)}
        assert shown == {o.client_order_id: o.status for o in orders}
        assert any(o.order_type == OrderType.STOP for o in orders)
    finally:
        ctx.close()


def test_a_restart_resumes_the_simulated_clock_without_repeating_orders(app_home: Path) -> None:
    first: list[Event] = []
    ctx = start(first)
    ctx.replay.run(max_steps=int(1.5 * SESSION_STEPS))
    stopped = ctx.clock.now()
    cash = ctx.broker.account().cash
    ctx.close()

    second: list[Event] = []
    ctx = start(second)
    try:
        assert ctx.clock.now() == stopped
        assert ctx.broker.account().cash == cash
        ctx.replay.run(max_steps=2 * SESSION_STEPS)
        assert ctx.clock.now() > stopped
        before, after = placed(first), placed(second)
        assert before and after
        assert not set(before) & set(after)
        assert len(set(after)) == len(after)
        times = [e.time for e in second if isinstance(e, PredictionEvent)]
        assert min(times) >= stopped  # no bar is replayed
        assert len(OrderRepository(ctx.storage).recent()) == len(set(before) | set(after))
    finally:
        ctx.close()


def test_a_pinned_day_picks_the_demo_session_whatever_the_date(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """$AI_TRADER_DEMO_TODAY replays a chosen day (tests and screenshots use it); a bad value
    is one clear line, not a traceback deep in the calendar."""
    monkeypatch.setenv("AI_TRADER_DEMO_TODAY", "2025-03-06T12:00:00+00:00")
    ctx = build_engine(AppPaths.resolve(), SETTINGS, sleep=lambda s: None)
    try:
        assert ctx.clock.now() == utc(2025, 3, 5, 14, 30)  # Wednesday's open, as with today=TODAY
    finally:
        ctx.close()
    monkeypatch.setenv("AI_TRADER_DEMO_TODAY", "next tuesday")
    fresh = AppPaths.resolve(str(Path(AppPaths.resolve().home).parent / "fresh"))
    with pytest.raises(ValueError, match="AI_TRADER_DEMO_TODAY='next tuesday' is not an ISO date"):
        build_engine(fresh, SETTINGS, sleep=lambda s: None)


def test_the_demo_trades_a_watchlist_one_bar_time_for_all_symbols_at_once(app_home: Path) -> None:
    events: list[Event] = []
    ctx = start(events, WATCHING)
    try:
        assert {b.symbol for b in ctx.history} == {"PLTR", "NVDA", "AMD"}
        ctx.replay.run(max_steps=2 * SESSION_STEPS)
        assert ctx.replay.bars_played == 2 * 78  # bar times: each one closes every symbol's bar
        predicted = Counter(e.symbol for e in events if isinstance(e, PredictionEvent))
        assert set(predicted) == {"PLTR", "NVDA", "AMD"} and len(set(predicted.values())) == 1
        traded = {e.order.symbol for e in events if isinstance(e, OrderEvent)}
        assert len(traded) >= 2, f"only {traded} traded in two sessions of three symbols"
    finally:
        ctx.close()
