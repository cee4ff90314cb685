"""Attacks on the execution core from a second outside review: shares sold outside the app
while its stop works, adoption beside the user's own resting sell, restarts while a flatten,
a breaker flatten or a daily entry held for the open is pending, and races that held up."""

from __future__ import annotations

from datetime import timedelta

from alpaca_desk import SYMBOL, AlpacaDesk, holding
from alpaca_server import AlpacaServer, Fault
from conftest import utc

from app.engine.bot import TradingBot
from app.engine.events import EventBus


def _restart(desk: AlpacaDesk) -> TradingBot:
    bus = EventBus()
    bus.subscribe(desk.events.append)
    bot = TradingBot(desk.settings, desk.clock, desk.broker, desk.model, desk.records, bus,
                     desk.bot.calendar, "alpaca", sleep=lambda s: None)
    desk.bot = bot
    bot.start()
    return bot


# 1. user sells the app's shares on a margin account while the app's stop works
def test_user_sells_app_shares_margin_stop_then_shorts(alpaca_server: AlpacaServer) -> None:
    alpaca_server.shorting_enabled = True
    desk = holding(alpaca_server)
    n = desk.held()
    alpaca_server.place_foreign(SYMBOL, "sell", n, "market")
    alpaca_server.fill_open_orders(50.0, SYMBOL)   # only the user's market fills (stop not reached)
    assert desk.held() == 0
    desk.check()
    desk.check()
    assert desk.cover() == 0, f"stop left for shares no longer held: {desk.orders()}"
    desk.trade(45.0)
    assert desk.held() >= 0, f"short {desk.held()}"


# 2. adopt while the user has a resting sell on those shares (margin): double sell
def test_adopt_beside_users_resting_sell(alpaca_server: AlpacaServer) -> None:
    alpaca_server.shorting_enabled = True
    alpaca_server.add_position(SYMBOL, 100, 50.0, price=50.0)
    alpaca_server.place_foreign(SYMBOL, "sell", 100, "limit", limit_price=55.0)
    desk = AlpacaDesk(alpaca_server)
    desk.check()
    desk.bot.adopt(SYMBOL)
    desk.check()
    desk.trade(56.0)  # user's limit sells 100
    desk.check()
    desk.check()
    desk.trade(40.0)
    assert desk.held() >= 0, f"short {desk.held()}; orders {desk.orders(open_only=False)}"


# 3. flatten with a slow cancel, then a restart: flatten intent lost
def test_flatten_then_restart_while_cancel_pending(alpaca_server: AlpacaServer) -> None:
    desk = holding(alpaca_server)
    alpaca_server.cancel_settles_after = 50
    desk.bot.flatten_all()
    assert desk.held() > 0 and desk.bot.core.book.exits_due
    _restart(desk)
    alpaca_server.cancel_settles_after = 0
    with alpaca_server.lock:
        for k in alpaca_server._settle_in:  # the cancel lands now
            alpaca_server._settle_in[k] = 0
    for _ in range(4):
        desk.trade(50.0)
    assert desk.held() == 0, f"flatten forgotten after restart; held {desk.held()} orders {desk.orders()}"


# 4. circuit breaker + flatten, cancel slow, restart
def test_breaker_flatten_then_restart(alpaca_server: AlpacaServer) -> None:
    desk = holding(alpaca_server, flatten_on_circuit_breaker=True, daily_loss_limit=0.01)
    alpaca_server.cancel_settles_after = 50
    with alpaca_server.lock:
        alpaca_server.cash -= 5000  # a loss elsewhere trips the breaker
    desk.check()
    assert desk.bot.core.day.breaker and desk.held() > 0
    _restart(desk)
    alpaca_server.cancel_settles_after = 0
    with alpaca_server.lock:
        for k in alpaca_server._settle_in:
            alpaca_server._settle_in[k] = 0
    for _ in range(4):
        desk.trade(50.0)
    assert desk.held() == 0, f"breaker flatten forgotten after restart; held {desk.held()}"


# 5. take profit racing the broker stop: price gaps above TP with stop cancel slow, then falls
def test_take_profit_with_slow_cancel_then_gap_down(alpaca_server: AlpacaServer) -> None:
    desk = holding(alpaca_server, take_profit_pct=0.04)
    alpaca_server.cancel_settles_after = 2
    desk.trade(53.0)   # TP: stop cancel pending
    desk.trade(40.0)   # gap down below stop while cancel pending
    for _ in range(4):
        desk.trade(40.0)
    assert desk.held() == 0 or desk.cover() == desk.held()
    assert desk.held() >= 0
    assert alpaca_server.duplicates() == {}


# 6. trailing move while stop partially filled
def test_trailing_move_with_partial_stop_fill(alpaca_server: AlpacaServer) -> None:
    alpaca_server.shorting_enabled = True
    desk = holding(alpaca_server)
    stop = desk.orders("sell", "stop")[0]
    sp = float(stop["stop_price"])
    alpaca_server.fill_open_orders(sp - 0.1, SYMBOL, qty=10)
    desk.check()
    desk.trade(60.0)  # trailing starts; replace refused (partially filled)
    desk.check()
    held = desk.held()
    assert desk.cover() == held, f"cover {desk.cover()} held {held} {desk.orders()}"
    desk.trade(58.0)  # below trailing 58.8
    for _ in range(3):
        desk.trade(58.0)
    assert desk.held() == 0, f"held {desk.held()}, orders {desk.orders()}"
    assert desk.held() >= 0
    assert alpaca_server.duplicates() == {}


# 7. SELL signal while a trailing replace is unconfirmed
def test_sell_signal_while_replace_unconfirmed(alpaca_server: AlpacaServer) -> None:
    desk = holding(alpaca_server)
    alpaca_server.fail_next(Fault.reset(after=True), *[Fault.http(503)] * 6)
    desk.trade(55.0)  # trailing: replace lands, answer lost, the read-back fails too
    alpaca_server.heal()
    desk.clock.advance(timedelta(minutes=5))
    desk.close_bar(55.0, p_up=0.05)  # a confident SELL
    for _ in range(3):
        desk.trade(55.0)
    assert desk.held() == 0, f"held {desk.held()} {desk.orders()}"
    assert desk.orders() == []
    assert alpaca_server.duplicates() == {}


# 8. manual approval of an entry after the price moved via on_price only
def test_manual_approve_after_move(alpaca_server: AlpacaServer) -> None:
    alpaca_server.auto_fill = True
    desk = AlpacaDesk(alpaca_server, mode="manual")
    desk.close_bar(50.0, p_up=0.95)
    (sid,) = list(desk.bot.pending)
    alpaca_server.set_price(SYMBOL, 53.0)  # the market moved 6%; the bot's next check is 30 s away
    out = desk.bot.approve(sid)
    assert desk.held() == 0, f"approved at a stale price: {out}"


# 9. daily bars: entry held over a weekend+holiday, restart in between
def test_daily_held_entry_survives_restart(alpaca_server: AlpacaServer) -> None:
    alpaca_server.auto_fill = True
    desk = AlpacaDesk(alpaca_server, timeframe="1d", start=utc(2025, 7, 3, 18, 30))  # Thu 14:30 NY, early close
    desk.close_bar(50.0, p_up=0.95, start=utc(2025, 7, 3, 4, 0))
    assert desk.bot.core.router.queue, desk.signal_details()
    _restart(desk)
    desk.clock.set(utc(2025, 7, 7, 13, 31))  # Monday open (Fri 4 July closed)
    desk.check()
    assert desk.held() > 0, f"held daily entry lost on restart: {desk.signal_details()}"


# 10. breaker trips (flatten) while the broker is flaky
def test_breaker_flatten_during_outage(alpaca_server: AlpacaServer) -> None:
    alpaca_server.shorting_enabled = True
    desk = holding(alpaca_server, flatten_on_circuit_breaker=True, daily_loss_limit=0.01)
    with alpaca_server.lock:
        alpaca_server.cash -= 5000
    desk.check()  # reads the account: the breaker trips
    # outage begins during flatten: all DELETEs fail
    alpaca_server.faults = lambda m, p: Fault.http(503) if m == "DELETE" else None
    desk.check()
    alpaca_server.heal()
    for _ in range(4):
        desk.trade(50.0)
    assert desk.bot.core.day.breaker and desk.held() == 0, f"held {desk.held()} {desk.orders()}"
    assert desk.orders() == []


# 11. adopt on a cash account while the user keeps a resting sell for part of the shares
def test_adopt_cash_with_users_resting_sell(alpaca_server: AlpacaServer) -> None:
    alpaca_server.add_position(SYMBOL, 100, 50.0, price=50.0)
    alpaca_server.place_foreign(SYMBOL, "sell", 40, "limit", limit_price=60.0)
    desk = AlpacaDesk(alpaca_server)
    desk.check()
    desk.bot.adopt(SYMBOL)
    desk.check()
    desk.check()
    assert desk.stop_cover() >= 60, f"adopted shares unprotected: stop cover {desk.stop_cover()}"


# 12. take profit while an entry is partly filled
def test_take_profit_with_partial_entry(alpaca_server: AlpacaServer) -> None:
    desk = AlpacaDesk(alpaca_server, take_profit_pct=0.02)
    desk.close_bar(50.0, p_up=0.95)
    alpaca_server.fill_open_orders(50.0, SYMBOL, qty=100)
    desk.check()
    desk.trade(52.0) if False else None
    alpaca_server.set_price(SYMBOL, 52.0)
    desk.bot.on_price(SYMBOL, 52.0)
    for _ in range(3):
        desk.trade(52.0)
    assert desk.held() == 0 and desk.orders() == [], f"held {desk.held()} {desk.orders()}"
    assert alpaca_server.duplicates() == {}


# 13. gap through the stop while a trailing replace is in flight (old stop fills first)
def test_gap_through_stop_during_replace(alpaca_server: AlpacaServer) -> None:
    alpaca_server.shorting_enabled = True
    desk = holding(alpaca_server)
    desk.trade(55.0)  # trailing active, stop moved
    def fill_first(method: str, path: str) -> None:
        if method == "PATCH":
            alpaca_server.fill_open_orders(40.0, SYMBOL)
    alpaca_server.before_route = fill_first
    desk.clock.advance(timedelta(seconds=30))
    alpaca_server.set_price(SYMBOL, 58.0)
    desk.bot.on_price(SYMBOL, 58.0)
    alpaca_server.before_route = None
    for _ in range(3):
        desk.check()
    assert desk.held() == 0 and desk.orders() == [], f"held {desk.held()} {desk.orders()}"
    assert desk.position is None


# 14. restart while the stop is partly filled, then trailing
def test_restart_with_partial_stop(alpaca_server: AlpacaServer) -> None:
    alpaca_server.shorting_enabled = True
    desk = holding(alpaca_server)
    sp = float(desk.orders("sell", "stop")[0]["stop_price"])
    alpaca_server.fill_open_orders(sp - 0.1, SYMBOL, qty=30)
    _restart(desk)
    desk.check()
    assert desk.position is not None and desk.position.qty == desk.held()
    assert desk.cover() == desk.held()
    alpaca_server.fill_open_orders(sp - 0.1, SYMBOL)
    for _ in range(3):
        desk.check()
    assert desk.held() == 0 and desk.position is None and desk.orders() == []


# 15. hybrid: pending approval, then the user's holding is adopted, then approve
def test_approve_after_adopt(alpaca_server: AlpacaServer) -> None:
    alpaca_server.auto_fill = True
    alpaca_server.add_position(SYMBOL, 100, 50.0, price=50.0)
    desk = AlpacaDesk(alpaca_server, mode="hybrid")
    desk.close_bar(50.0, p_up=0.76)
    (sid,) = list(desk.bot.pending)
    desk.bot.adopt(SYMBOL)
    out = desk.bot.approve(sid)
    assert desk.held() == 100, out
