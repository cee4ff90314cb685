"""Broker faults: a thousand trading cycles against an Alpaca that fails 30% of
the time, in every way the network can, before and after the request lands.

The real TradingBot drives alpaca-py's real client (through AlpacaBroker) at a
loopback server; the record is a real SQLite file. Nothing may crash, no
client_order_id may be booked twice, every exit must get through in the end,
and at the end the database must agree with the broker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alpaca_server import AlpacaServer, Fault, random_faults

from app.engine.bot import TradingBot
from app.engine.broker.alpaca import AlpacaBroker
from app.engine.broker.alpaca_orders import to_order_status
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import EventBus
from app.engine.records import SqlRecorder
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket
from app.engine.storage import OrderRepository, PositionRepository, Storage, TradeRepository
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, BrokerKind, OrderStatus, OrderType, Side

SYMBOL = "PLTR"
BAR = timedelta(minutes=5)
PARTIAL = 150  # shares of one order the market takes per print, in the partial-fill run


class ScriptedModel(SignalModel):
    """P(up) drawn from a seeded RNG: frequent, confident buys and sells."""

    name = "scripted"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def predict(self, closes: np.ndarray) -> ModelOutput:
        p = self.rng.choices((0.92, 0.08, 0.5), weights=(2, 2, 6))[0]
        return ModelOutput(p, (("scripted", p),), ("scripted",), "scripted-v1")


@pytest.fixture
def server() -> Iterator[AlpacaServer]:
    srv = AlpacaServer(auto_fill=True, hang_s=0.3).start()
    try:
        yield srv
    finally:
        srv.stop()


def _sessions(cal: MarketCalendar, bars_wanted: int) -> list[Bar]:
    market = SimulatedMarket(SYMBOL, 21, cal)
    sessions = cal.previous_sessions(datetime(2025, 6, 20, tzinfo=UTC), 14)
    bars = market.history(sessions)
    assert len(bars) >= bars_wanted
    return bars[:bars_wanted]


def _build(server: AlpacaServer, folder: Path, clock: SimClock, cal: MarketCalendar,
           timeout_s: float) -> tuple[TradingBot, AlpacaBroker, Storage, SqlRecorder]:
    broker = AlpacaBroker(server.api_keys(), clock, kind=BrokerKind.PAPER, url_override=server.url,
                          timeout_s=timeout_s, cancel_wait_s=0.3, sleep=lambda s: None)
    storage = Storage(folder / "trader.db")
    records = SqlRecorder(storage, folder / "pending_records.jsonl")
    settings = Settings(mode="auto", max_round_trips=100)
    bot = TradingBot(settings, clock, broker, ScriptedModel(5), records, EventBus(), cal,
                     "loopback", sleep=lambda s: None)
    return bot, broker, storage, records


def _agree(server: AlpacaServer, broker: AlpacaBroker, storage: Storage) -> tuple[int, list[str]]:
    """Compare the database with the broker: (records lost, disagreements)."""
    repo = OrderRepository(storage)
    lost, problems = 0, []
    for coid in server.created_per_coid:
        mine = repo.get(coid)
        theirs = server.order_by_coid(coid)
        assert theirs is not None
        status = to_order_status(theirs["status"], float(theirs["filled_qty"]), float(theirs["qty"]))
        if mine is None:
            lost += 1
            problems.append(f"{coid}: at the broker, not in the database")
        elif mine.status != status:
            problems.append(f"{coid}: database {mine.status.value}, broker {status.value}")
    db_open = {o.client_order_id for o in repo.open_orders()}
    broker_open = {o.client_order_id for o in broker.open_orders()}
    if db_open != broker_open:
        problems.append(f"open orders differ: database {sorted(db_open)}, broker {sorted(broker_open)}")
    db_pos = {p.symbol: p.qty for p in PositionRepository(storage).all()}
    broker_pos = {p.symbol: p.qty for p in broker.positions()}
    if db_pos != broker_pos:
        problems.append(f"positions differ: database {db_pos}, broker {broker_pos}")
    return lost, problems


@pytest.mark.parametrize("market", ["whole fills", "partial fills, slow cancels"])
def test_a_thousand_cycles_against_a_broker_failing_30_percent(server: AlpacaServer, tmp_path: Path,
                                                              market: str) -> None:
    """With ``partial fills, slow cancels`` the market takes at most PARTIAL shares of each
    order per print (market orders included, so entries and stops fill in pieces over
    bars), and every cancel stays ``pending_cancel`` for two reads, as Alpaca's can."""
    partial = market != "whole fills"
    cal = MarketCalendar()
    bars = _sessions(cal, 1000)
    clock = SimClock(bars[0].time)
    server.set_price(SYMBOL, bars[0].open)
    server.auto_fill = not partial
    server.cancel_settles_after = 2 if partial else 0
    most = PARTIAL if partial else None
    bot, broker, storage, records = _build(server, tmp_path, clock, cal, timeout_s=0.05)
    bot.start()
    server.faults = random_faults(0.3, seed=2024)
    started = time.perf_counter()
    cycles = 0
    for bar in bars:
        # the bar trades: the broker fills what it holds, stops at the low
        clock.set(bar.time + BAR / 2)
        server.fill_open_orders(bar.low, SYMBOL, most)
        server.set_price(SYMBOL, bar.close)
        server.fill_open_orders(bar.close, SYMBOL, most)
        clock.set(bar.time + BAR)
        bot.on_bar_close(bar)
        bot.on_price(SYMBOL, bar.close)
        cycles += 1
    faults, requests, retries = server.fault_count, server.request_count, bot.core.router.retries
    elapsed = time.perf_counter() - started

    # the end: the broker heals, flatten all, retried until flat
    server.faults = None
    server.cancel_settles_after = 0
    for _ in range(20):
        clock.advance(timedelta(seconds=30))
        bot.flatten_all("end of test")
        server.fill_open_orders(bars[-1].close, SYMBOL)
        bot.on_price(SYMBOL, bars[-1].close)
        if not broker.positions() and not bot.core.router.queue and not records.positions():
            break
    lost, problems = _agree(server, broker, storage)
    dupes = server.duplicates()
    exits = [c for c in server.created_per_coid if "-exit-" in c]
    trades = TradeRepository(storage).all()
    ended = [server.order_by_coid(c) or {} for c in server.created_per_coid]
    partly = sum(1 for o in ended if 0 < float(o["filled_qty"]) < float(o["qty"]))
    print(f"\nfaults ({market}): {partly} orders ended partly filled; {cycles} cycles in {elapsed:.1f} s, "
          f"{requests} broker requests, {faults} faults injected ({faults / requests:.0%}), {retries} retries, "
          f"{len(server.created_per_coid)} orders "
          f"({len(exits)} exits), {len(trades)} trades, duplicates {len(dupes)}, records lost {lost}")
    assert cycles == 1000
    assert faults / requests > 0.25 and retries > 100, "the faults really happened"
    assert len(exits) > 20 and len(trades) > 20, "the bot traded through the faults"
    assert partly > 20 or not partial, "orders really filled in pieces"
    assert dupes == {}
    assert broker.positions() == [] and records.positions() == [], "flat at the end"
    assert not bot.core.router.queue
    assert lost == 0 and problems == [], problems
    assert not (tmp_path / "pending_records.jsonl").exists()
    broker.close()
    storage.close()


# ------------------------------------------------- the two races the run above found
def _desk(server: AlpacaServer, folder: Path) -> tuple[TradingBot, AlpacaBroker, Storage, SqlRecorder, SimClock]:
    cal = MarketCalendar()
    session = cal.session(datetime(2025, 6, 10).date())
    assert session is not None
    clock = SimClock(session.open + timedelta(hours=1))
    server.set_price(SYMBOL, 20.0)
    bot, broker, storage, records = _build(server, folder, clock, cal, timeout_s=0.3)
    bot.start()
    return bot, broker, storage, records, clock


def _bar(bot: TradingBot, clock: SimClock, price: float, p_up: float) -> None:
    class Fixed(SignalModel):
        name = "fixed"

        def predict(self, closes: np.ndarray, *bars: object) -> ModelOutput:
            return ModelOutput(p_up, (("fixed", p_up),), ("test",), "fixed-v1")

    bot.model = Fixed()
    start = clock.now()
    clock.set(start + BAR)
    bot.on_bar_close(Bar(SYMBOL, start, price, price, price, price, 1_000.0))


def test_a_stop_that_filled_unseen_is_booked_not_canceled(server: AlpacaServer, tmp_path: Path) -> None:
    """The broker's stop fills while the engine cannot poll it; the engine then sees the
    price under the stop and cancels the stop to sell: the cancel finds it filled."""
    bot, broker, storage, records, clock = _desk(server, tmp_path)
    _bar(bot, clock, 20.0, 0.95)  # bought at 20 (filled on arrival), stop at 19.40 at the broker
    (stop,) = [o for o in broker.open_orders() if o.order_type == OrderType.STOP]
    server.fill_open_orders(19.3, SYMBOL)  # the market falls through it: the broker sells
    server.set_price(SYMBOL, 19.3)
    server.fail_next(Fault.http(503))  # ... and the engine's next poll of the stop fails
    bot.on_price(SYMBOL, 19.3)  # price under the stop: the engine wants out
    bot.on_price(SYMBOL, 19.3)
    got = OrderRepository(storage).get(stop.client_order_id)
    orders = OrderRepository(storage).recent()
    print(f"\nstop race: stop recorded {got.status.value if got else None}, "
          f"{sum(o.status == OrderStatus.REJECTED for o in orders)} rejected exits, "
          f"trades {[t.exit_reason for t in TradeRepository(storage).all()]}")
    assert got is not None and got.status == OrderStatus.FILLED
    assert not any(o.status == OrderStatus.REJECTED for o in orders), "no exit sent for shares already sold"
    assert [t.exit_reason for t in TradeRepository(storage).all()] == ["stop loss"]
    assert records.positions() == [] and broker.positions() == []
    storage.close()


def test_a_queued_entry_that_did_reach_the_broker_is_booked_when_it_expires(server: AlpacaServer,
                                                                            tmp_path: Path) -> None:
    """Every answer to the entry is lost (the order was booked on the first try), it is
    queued, and it expires: the engine asks the broker before giving up on it."""
    bot, broker, storage, records, clock = _desk(server, tmp_path)
    lost = {"left": 6}

    def lose_order_answers(method: str, path: str) -> Fault | None:
        if method == "POST" and path == "/v2/orders" and lost["left"] > 0:
            lost["left"] -= 1
            return Fault.http(500, after=True)
        return None

    server.faults = lose_order_answers
    _bar(bot, clock, 20.0, 0.95)  # three attempts: booked and filled, every answer lost
    bot.on_price(SYMBOL, 20.0)  # three more
    assert bot.core.router.queue and records.positions() == []
    clock.advance(timedelta(minutes=10))  # past the signal's expiry
    bot.on_price(SYMBOL, 20.0)
    (entry,) = [o for o in OrderRepository(storage).recent() if o.side == Side.BUY]
    held = broker.positions()
    print(f"\nlost answers: entry recorded {entry.status.value} ({entry.reason!r}); broker holds "
          f"{[(p.symbol, p.qty) for p in held]}, engine holds {[(p.symbol, p.qty) for p in records.positions()]}")
    assert server.duplicates() == {} and len(server.created_per_coid) >= 2
    assert entry.status == OrderStatus.FILLED and "expired" not in entry.reason
    assert [(p.symbol, p.qty) for p in records.positions()] == [(p.symbol, p.qty) for p in held] != []
    assert [o.order_type for o in broker.open_orders()] == [OrderType.STOP], "and it is protected"
    storage.close()
