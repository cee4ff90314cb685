"""The watchlist changed while the engine runs: demo, paper trading and replays."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import utc
from test_engine_bootstrap import WATCHING, start
from test_live_paper import paper_desk

from app.engine.bootstrap import build_engine
from app.engine.clock import MarketCalendar
from app.engine.events import BarEvent, Event, EventBus, OrderEvent, PredictionEvent
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket
from app.engine.types import Side

TODAY = utc(2025, 3, 6, 12, 0)
STEPS_PER_BAR = 11  # ten ticks and a close


def _closed(events: list[Event]) -> Counter[str]:
    return Counter(e.bar.symbol for e in events if isinstance(e, BarEvent) and e.closed)


def test_a_symbol_added_in_the_demo_trades_from_the_next_bar_and_the_others_go_on_unchanged(app_home: Path) -> None:
    runs: dict[str, list[float]] = {}
    for change in (False, True):
        events: list[Event] = []
        bus = EventBus()
        bus.subscribe(events.append)
        ctx = build_engine(AppPaths.resolve(), Settings(demo_seed=3), bus=bus, today=TODAY, sleep=lambda s: None)
        try:
            ctx.replay.run(max_steps=20 * STEPS_PER_BAR + 4)  # mid-bar: the change waits for the bar's end
            if change:
                history = ctx.set_watchlist(ctx.settings.updated(watchlist=("PLTR", "NVDA")))
                assert history and {b.symbol for b in history} == {"NVDA"}
                assert history[-1].time + timedelta(minutes=5) <= ctx.clock.now()
            ctx.replay.run(max_steps=20 * STEPS_PER_BAR)
            runs[str(change)] = [e.bar.close for e in events if isinstance(e, BarEvent) and e.closed
                                 and e.bar.symbol == "PLTR"]
            if change:
                closed = _closed(events)
                assert closed["NVDA"] >= 19, "NVDA's bars close with PLTR's from the next bar on"
                assert {e.symbol for e in events if isinstance(e, PredictionEvent)} == {"PLTR", "NVDA"}
        finally:
            ctx.close()
        for suffix in ("", "-wal", "-shm"):  # a fresh database for the second run
            Path(f"{AppPaths.resolve().database}{suffix}").unlink(missing_ok=True)
    assert runs["True"] == runs["False"], "PLTR's prices go on exactly as without the change"


def test_a_symbol_keeps_its_prices_across_a_restart_with_more_symbols(app_home: Path) -> None:
    """PLTR alone, then a restart with NVDA added: PLTR's next bars are those it would have
    had alone (a held symbol re-priced at a restart would show a profit that never was)."""
    def pltr_closes(watchlist: tuple[str, ...], restart_with: tuple[str, ...] | None) -> list[float]:
        home = AppPaths.resolve(str(app_home / "-".join(watchlist + (restart_with or ()))))
        ctx = build_engine(home, Settings(demo_seed=4, watchlist=watchlist), today=TODAY, sleep=lambda s: None)
        ctx.replay.run(max_steps=30 * STEPS_PER_BAR)
        if restart_with is not None:
            ctx.close()
            ctx = build_engine(home, Settings(demo_seed=4, watchlist=restart_with), today=TODAY, sleep=lambda s: None)
        events: list[Event] = []
        ctx.bus.subscribe(events.append)
        try:
            ctx.replay.run(max_steps=30 * STEPS_PER_BAR)
        finally:
            ctx.close()
        return [e.bar.close for e in events if isinstance(e, BarEvent) and e.closed and e.bar.symbol == "PLTR"]

    alone = pltr_closes(("PLTR",), None)
    assert len(alone) >= 29
    assert pltr_closes(("PLTR",), ("PLTR", "NVDA"))[:len(alone)] == alone
    assert pltr_closes(("PLTR",), ("NVDA", "PLTR"))[:len(alone)] == alone  # the order does not matter


def test_a_symbol_removed_while_held_is_sold_on_time_and_never_bought_again(app_home: Path) -> None:
    events: list[Event] = []
    settings = WATCHING
    ctx = start(events, settings)
    try:
        while not ctx.records.positions():
            assert ctx.replay.step()
        held = ctx.records.positions()[0].symbol
        ctx.set_watchlist(ctx.settings.updated(watchlist=tuple(s for s in settings.watchlist if s != held)))
        mark = len(events)
        ctx.replay.run(max_steps=2 * 78 * STEPS_PER_BAR)  # through the close and a whole next session
        after = [e.order for e in events[mark:] if isinstance(e, OrderEvent) and e.order.symbol == held]
        assert all(o.side == Side.SELL for o in after), "no entry on a symbol off the watchlist"
        assert held not in {p.symbol for p in ctx.records.positions()}, "its position was closed by the day's rules"
        assert any(o.side == Side.SELL and o.filled_qty > 0 for o in after)
    finally:
        ctx.close()


def test_a_replay_of_files_refuses_another_watchlist(app_home: Path) -> None:
    cal = MarketCalendar()
    bars = SimulatedMarket("PLTR", 2, cal).history(cal.previous_sessions(datetime(2025, 6, 1, tzinfo=UTC), 3))
    ctx = build_engine(AppPaths.resolve(), Settings(), today=TODAY, sleep=lambda s: None, replay_bars=bars)
    try:
        with pytest.raises(ValueError, match="a replay plays the symbols of its files"):
            ctx.set_watchlist(ctx.settings.updated(watchlist=("PLTR", "NVDA")))
        assert ctx.settings.watchlist == ("PLTR",)
    finally:
        ctx.close()


def test_paper_trading_fetches_a_symbol_added_in_the_same_request_and_warms_it_up(app_home: Path) -> None:
    with paper_desk(app_home, ("PLTR", "NVDA"), Settings()) as desk:
        ctx, server, clock = desk.ctx, desk.server, desk.clock
        for _ in range(10):
            clock.advance(timedelta(seconds=30))
            ctx.replay.step()
        history = ctx.set_watchlist(ctx.settings.updated(watchlist=("PLTR", "NVDA")))
        assert len(history) > 100 and {b.symbol for b in history} == {"NVDA"}
        assert history[-1].time + timedelta(minutes=5) <= clock.now()
        server.bar_requests.clear()
        for _ in range(20):
            clock.advance(timedelta(seconds=30))
            ctx.replay.step()
        assert server.bar_requests == ["PLTR,NVDA"] * 20
        nvda = [e for e in desk.seen if e.symbol == "NVDA"]
        assert len(nvda) >= 1, "NVDA's model speaks from its first new bar: it was warmed up"


def test_a_replay_closes_a_symbol_whose_file_ends_while_held_that_day(app_home: Path) -> None:
    from test_backtest_portfolio import portfolio_bars

    bars = portfolio_bars(sessions=4, symbols=("AAA", "BBB"))
    settings = Settings(mode="auto", auto_threshold=0.6, approval_threshold=0.6, watchlist=("AAA", "BBB"),
                        max_exposure_pct=1.0)

    def replay(played: list) -> tuple[list, list]:  # type: ignore[type-arg]
        events: list[Event] = []
        bus = EventBus()
        bus.subscribe(events.append)
        home = AppPaths.resolve(str(app_home / f"r{len(played)}"))
        ctx = build_engine(home, settings, bus=bus, today=TODAY, sleep=lambda s: None, replay_bars=played)
        try:
            ctx.replay.run()
            return [e.order for e in events if isinstance(e, OrderEvent)], ctx.records.positions()
        finally:
            ctx.close()

    orders, _ = replay(bars)
    entry = next(o for o in orders if o.symbol == "BBB" and o.side == Side.BUY and o.filled_at is not None
                 and o.filled_at.date() != bars[0].time.date())
    cut = entry.filled_at + timedelta(minutes=10)
    orders, left = replay([b for b in bars if b.symbol != "BBB" or b.time <= cut])
    sells = [o for o in orders if o.symbol == "BBB" and o.side == Side.SELL and o.filled_qty > 0
             and o.filled_at is not None and o.filled_at > entry.filled_at]
    assert sells and sells[0].filled_at.date() == cut.date(), "sold the day its data stopped"
    assert "BBB" not in {p.symbol for p in left}
