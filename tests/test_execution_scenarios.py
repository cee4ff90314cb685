"""The execution core against the real Alpaca client and a loopback server that
behaves as Alpaca does: one scenario per defect a careful trader found (issue
"Execution core"), each driven through alpaca-py on a simulated clock."""

from __future__ import annotations

from datetime import timedelta

from alpaca_desk import BAR, SYMBOL, AlpacaDesk, FixedModel, holding
from alpaca_server import AlpacaServer, Fault
from conftest import utc

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.runner import run_backtest
from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.data.sources import AlpacaDataSource
from app.engine.events import EventBus
from app.engine.live import LiveSession
from app.engine.records import MemoryRecorder
from app.engine.replay import MarketReplay, replay_feed
from app.engine.settings import Settings
from app.engine.types import Bar

WASH_TRADE = ('{"code": 40310000, "message": "potential wash trade detected. use complex orders"}')


def test_a_working_entry_counts_as_holding_and_as_exposure(alpaca_server: AlpacaServer) -> None:
    """#1: an entry accepted but not yet filled is a position in the making; the next
    bar must not send a second one (2,000 shares, 40% of equity, against a 20% limit)."""
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(50.0, p_up=0.95)
    assert len(desk.orders("buy")) == 1
    desk.next_bar(50.0, p_up=0.95)
    buys = desk.orders("buy")
    assert len(buys) == 1, "one entry per symbol while the first is still working"
    assert sum(float(o["qty"]) for o in buys) * 50.0 <= 0.20 * 100_000 + 1e-6


def test_the_breaker_baseline_is_the_previous_close_never_zero(alpaca_server: AlpacaServer) -> None:
    """#5: losses before the app started count (Alpaca's last_equity), and a broker that
    cannot be reached at start leaves no zero baseline that would never trip."""
    alpaca_server.last_equity = 100_000.0
    alpaca_server.cash = 94_000.0  # down 6% since yesterday's close, before the app started
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(50.0, p_up=0.95)
    assert desk.orders("buy") == [], "the day is already past the 5% daily loss limit"
    assert desk.bot.status().circuit_breaker


def test_an_unreachable_broker_at_start_leaves_entries_refused_not_the_breaker_off(
        alpaca_server: AlpacaServer) -> None:
    alpaca_server.faults = lambda method, path: Fault.http(503)
    desk = AlpacaDesk(alpaca_server)  # the day starts while the account cannot be read
    desk.close_bar(50.0, p_up=0.95)
    assert desk.orders("buy") == [] and alpaca_server.fault_count > 0
    alpaca_server.faults = None
    alpaca_server.cash = 90_000.0  # then the account is reachable, and down 10% on the day
    desk.next_bar(50.0, p_up=0.95)
    assert desk.orders("buy") == []
    assert desk.bot.status().circuit_breaker


def test_daily_bars_never_send_an_order_while_the_market_is_closed(alpaca_server: AlpacaServer) -> None:
    """#6: a daily bar closes at night; its entry waits for the open, is checked again
    then, and its stop is placed as soon as it fills, not the next night."""
    night = utc(2025, 3, 5, 5, 0)  # 00:00 in New York
    alpaca_server.open_market(False)  # Alpaca would queue a market order now, and fill it at the open
    desk = AlpacaDesk(alpaca_server, start=night, timeframe="1d")
    desk.close_bar(50.0, p_up=0.95, start=utc(2025, 3, 4, 5, 0))
    assert desk.orders("buy", open_only=False) == [], "no market order at midnight, not even a queued one"
    assert "at the open" in desk.signal_details()[-1][1]
    desk.clock.set(utc(2025, 3, 5, 14, 29))
    desk.check()
    assert desk.orders("buy", open_only=False) == [], "not before 09:30"
    alpaca_server.open_market()
    alpaca_server.auto_fill = True
    desk.check(seconds=60)  # 09:30:30
    assert desk.held() > 0 and desk.stop_cover() == desk.held(), "bought at the open, stop in place at once"


def test_an_exit_alpaca_refuses_leaves_the_position_protected(alpaca_server: AlpacaServer) -> None:
    """#4: the stop is cancelled to free the shares, the market sell is refused (wash trade:
    the user's own buy limit is open); the position must not stay naked."""
    desk = holding(alpaca_server)
    alpaca_server.place_foreign(SYMBOL, "buy", 10, "limit", limit_price=45.0)
    report = desk.bot.close_position(SYMBOL)
    assert "rejected" in report and desk.held() > 0
    desk.check()
    assert desk.stop_cover() == desk.held(), "a stop covers every share again"


def test_two_exits_in_the_same_second_get_two_ids(alpaca_server: AlpacaServer) -> None:
    """#11: an exit Alpaca refused is tried again with a new id; the same id would be
    "found" as the refused order and nothing would be sent."""
    desk = holding(alpaca_server)
    web = alpaca_server.place_foreign(SYMBOL, "buy", 10, "limit", limit_price=45.0)
    first = desk.bot.close_position(SYMBOL)
    alpaca_server.cancel_by_coid(web)  # the user clears the conflicting order; same second
    second = desk.bot.close_position(SYMBOL)
    assert "rejected" in first, first
    alpaca_server.fill_open_orders(50.0, SYMBOL)
    assert desk.held() == 0, f"the second exit reached Alpaca and sold ({second})"
    assert alpaca_server.duplicates() == {}


def test_broker_stops_outlive_the_session_and_come_back_when_they_end(alpaca_server: AlpacaServer) -> None:
    """#2: a DAY stop expires at 16:00 and the position sleeps unprotected; stops are GTC,
    and a stop that ends anyway (cancelled on the dashboard) is placed again at once."""
    desk = holding(alpaca_server, timeframe="1d")  # daily bars: held overnight, no end-of-day flatten
    alpaca_server.end_of_day()
    desk.check()
    assert desk.stop_cover() == desk.held(), "the stop is still working after the close"
    stop = desk.orders("sell", "stop")[0]
    alpaca_server.cancel_by_coid(stop["client_order_id"])
    desk.check()
    assert desk.stop_cover() == desk.held(), "a cancelled stop is replaced by the next check"


def test_a_trailing_update_never_leaves_the_position_without_a_stop(alpaca_server: AlpacaServer) -> None:
    """#3: the stop is moved with Alpaca's replace, not cancel-then-new: a cancel still
    pending_cancel made the new stop fail ("insufficient qty available"), and once the cancel
    landed the position had no stop at all while the engine thought it had one."""
    desk = holding(alpaca_server)
    alpaca_server.cancel_settles_after = 3
    desk.trade(52.0)
    desk.trade(53.0)  # +6%: the trailing stop starts, once, at 53 less 2%
    for _ in range(5):
        desk.check()  # nothing moves any more; a pending cancel would have landed by now
    stops = desk.orders("sell", "stop")
    assert len(stops) == 1 and desk.stop_cover() == desk.held()
    assert float(stops[0]["stop_price"]) == round(desk.position.stop_price, 2) > 50.0  # type: ignore[union-attr]


def test_a_stop_that_fills_during_its_move_is_not_posted_again_on_a_flat_account(
        alpaca_server: AlpacaServer) -> None:
    """#10: the old stop fills while the engine moves it; on a margin account with shorting a
    full-size sell stop sent to a flat account is accepted, and would open a short."""
    alpaca_server.shorting_enabled = True
    desk = holding(alpaca_server)
    created_at_fill: list[int] = []

    def fill_first(method: str, path: str) -> None:
        if method in ("PATCH", "DELETE") and path.startswith("/v2/orders/"):
            alpaca_server.before_route = None
            alpaca_server.fill_open_orders(47.0, SYMBOL)  # the market fell through the stop first
            created_at_fill.append(len(alpaca_server.orders))

    desk.trade(52.0)
    alpaca_server.before_route = fill_first
    desk.trade(53.0)  # the trailing stop moves up: the old one fills in that instant
    for _ in range(3):
        desk.check()
    assert created_at_fill, "the race was staged"
    assert len(alpaca_server.orders) == created_at_fill[0], "no order was sent after the stop filled"
    assert desk.held() == 0 and desk.position is None, "flat, not short"


def test_a_partly_filled_entry_is_protected_for_what_filled(alpaca_server: AlpacaServer) -> None:
    """#1 (partial): 100 of the entry's shares filled and the rest hangs. The 100 are a
    position with a broker stop; since Alpaca refuses a sell stop beside a working buy (wash
    trade), the unfilled rest of the entry is cancelled first."""
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(50.0, p_up=0.95)
    (entry,) = desk.orders("buy")
    alpaca_server.fill_open_orders(50.0, SYMBOL, qty=100)
    desk.check()
    assert desk.held() == 100 and desk.position is not None and desk.position.qty == 100
    assert desk.stop_cover() == 100, "the filled shares have their stop"
    assert alpaca_server.order_by_coid(entry["client_order_id"])["status"] == "canceled"  # type: ignore[index]
    desk.next_bar(50.0, p_up=0.95)
    assert desk.orders("buy") == [], "holding already: no second entry"


def test_after_a_partial_stop_fill_the_rest_stays_covered_and_booked(alpaca_server: AlpacaServer) -> None:
    """#9: part of the stop filled; the remainder keeps its stop, the local position follows the
    broker, and a failed positions call never deletes it."""
    desk = holding(alpaca_server)
    held = desk.held()
    alpaca_server.fill_open_orders(48.0, SYMBOL, qty=40)  # through the stop: Alpaca sells 40 of them so far
    alpaca_server.faults = lambda method, path: Fault.http(503) if path == "/v2/positions" else None
    desk.check()
    desk.check()
    alpaca_server.faults = None
    assert desk.position is not None and desk.position.qty == held - 40
    assert desk.stop_cover() == desk.held() == held - 40


# ------------------------------------------------------------ #7: time drives the engine
def test_the_end_of_day_flatten_happens_on_time_without_a_new_bar(alpaca_server: AlpacaServer) -> None:
    """#7: with 15-minute bars the 15:45 bar completes at 16:00, after the close. The stop
    checks run every 30 s on the latest trade (alpaca-py's latest-trade endpoint), so the
    position is flattened at 15:55 anyway."""
    desk = holding(alpaca_server, timeframe="15m")
    source = AlpacaDataSource(alpaca_server.api_keys(), url_override=alpaca_server.url)
    live = LiveSession(desk.bot, source, desk.clock, SYMBOL, "15m", desk.clock.now())
    alpaca_server.auto_fill = True
    desk.clock.set(utc(2025, 3, 4, 20, 50))  # 15:50 in New York; no bar is due before 16:00
    alpaca_server.set_price(SYMBOL, 50.4)
    while desk.clock.now() < utc(2025, 3, 4, 20, 56):
        desk.clock.advance(timedelta(seconds=30))
        live.step()
    assert desk.held() == 0, "flat before the close"
    assert [t.exit_reason for t in desk.records.trades] == ["end of day"]
    assert desk.records.trades[0].exit_price == 50.4, "priced by the latest trade"


def test_an_approval_expires_on_the_clock_not_at_the_next_bar(alpaca_server: AlpacaServer) -> None:
    """#7: a signal waiting for approval expires at its time even when no bar arrives."""
    desk = AlpacaDesk(alpaca_server, mode="manual", timeframe="1h")
    desk.close_bar(50.0, p_up=0.75)
    assert desk.bot.pending
    live = LiveSession(desk.bot, AlpacaDataSource(alpaca_server.api_keys(), url_override=alpaca_server.url),
                       desk.clock, SYMBOL, "1h", desk.clock.now())
    desk.clock.advance(timedelta(hours=1, seconds=30))  # past the end of the next bar
    live.step()
    assert not desk.bot.pending
    assert desk.signal_details()[-1][0] == "expired"


def test_a_replay_whose_bars_stop_mid_morning_still_flattens_that_day() -> None:
    """#7: recorded bars with a gap (the day's data end at 10:30) must not hold the position
    over the weekend: the replay's clock runs on to that day's flatten and close."""
    calendar = MarketCalendar()
    friday, monday = utc(2025, 3, 7, 14, 30), utc(2025, 3, 10, 13, 30)
    bars = [Bar(SYMBOL, friday - timedelta(days=1) + i * BAR, 50.0, 50.1, 49.9, 50.0, 1e4) for i in range(78)]
    bars += [Bar(SYMBOL, friday + i * BAR, 50.0, 50.1, 49.9, 50.0, 1e4) for i in range(12)]  # to 10:30
    bars += [Bar(SYMBOL, monday + i * BAR, 50.0, 50.1, 49.9, 50.0, 1e4) for i in range(12)]
    feed, history, start = replay_feed(bars, calendar, 5)
    clock = SimClock(start)
    broker = SimulatedBroker(clock, 100_000.0)
    model = FixedModel()
    bot = TradingBot(Settings(mode="auto"), clock, broker, model, MemoryRecorder(), EventBus(), calendar,
                     sleep=lambda s: None)
    bot.warm_up(history)
    bot.start()
    replay = MarketReplay(bot, broker, clock, feed)
    model.p_up = 0.95
    while clock.now() < friday + 2 * BAR:
        replay.step()
    model.p_up = 0.5
    assert broker.held(SYMBOL) > 0
    while clock.now() < monday and replay.step():
        pass
    assert broker.held(SYMBOL) == 0 or bot.records.positions() == [], "not held into Monday"
    assert any(o.reason == "exit: end of day" for o in bot.records.orders.values())


def test_a_backtest_with_a_data_gap_flattens_at_the_end_of_that_day() -> None:
    """#7: the backtest runs the same clock: bars that stop at 10:30 on a Friday leave no
    position over the weekend; the end-of-day sell fills at the next open, the first price."""
    friday, monday = utc(2025, 3, 7, 14, 30), utc(2025, 3, 10, 13, 30)
    bars = [Bar(SYMBOL, friday + i * BAR, 50.0, 50.1, 49.9, 50.0, 1e4) for i in range(12)]
    bars += [Bar(SYMBOL, monday + i * BAR, 51.0, 51.1, 50.9, 51.0, 1e4) for i in range(12)]
    model = FixedModel()
    model.p_up = 0.95
    result = run_backtest(bars, BacktestConfig(strategy="rules"), Settings(), model=model)
    (first, *_) = result.trades
    assert first.exit_reason == "end of day"
    assert first.exit_time.date() == monday.date() and first.exit_price == 51.0



# ------------------------------------------------------------ #8: only what the app opened
def test_a_holding_the_app_did_not_buy_is_left_alone_until_adopted(alpaca_server: AlpacaServer) -> None:
    """#8: the user's own shares get no stop (it was put above the market) and are not sold
    at 15:55 or by flatten-all, unless the user hands them to the app."""
    alpaca_server.add_position(SYMBOL, 100, 60.0, price=50.0)  # bought by hand at 60, now 50
    desk = AlpacaDesk(alpaca_server)
    desk.check()
    assert desk.position is None and desk.orders() == [], "no stop, no order for shares it did not buy"
    assert SYMBOL in desk.bot.core.book.foreign_positions
    desk.bot.flatten_all()
    desk.clock.set(utc(2025, 3, 4, 20, 56))  # 15:56 in New York
    desk.check()
    assert desk.held() == 100 and desk.orders() == []
    desk.clock.set(utc(2025, 3, 5, 15, 0))
    report = desk.bot.adopt(SYMBOL)
    assert "adopted" in report and desk.position is not None and desk.position.qty == 100
    (stop,) = desk.orders("sell", "stop")
    assert float(stop["stop_price"]) < 50.0, "an adopted holding's stop is below the market"


def test_a_users_resting_sell_is_not_taken_for_the_apps_exit(alpaca_server: AlpacaServer) -> None:
    """#8: a limit sell the user left at Alpaca for their own shares is theirs: reconciliation
    took it for "an exit already working", so the app's own position was never closed."""
    alpaca_server.auto_fill = True
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(50.0, p_up=0.95)
    bought = desk.held()
    assert bought > 0 and desk.position is not None
    with alpaca_server.lock:
        alpaca_server.positions[SYMBOL]["qty"] += 50  # the user buys 50 more by hand...
    web = alpaca_server.place_foreign(SYMBOL, "sell", 50, "limit", limit_price=60.0)  # ...and offers them
    desk.bot.start()  # a restart: reconciliation meets the user's order
    desk.clock.set(utc(2025, 3, 4, 20, 55, 30))
    desk.check()
    assert desk.held() == 50, "the app sold what it bought, and only that"
    assert alpaca_server.order_by_coid(web)["status"] == "accepted"  # type: ignore[index]
    assert desk.position is None
