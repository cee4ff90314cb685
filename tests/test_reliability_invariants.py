"""Money-safety invariants, whatever happens: hypothesis drives a real bot over a
real simulated broker with any sequence of signals, approvals, mode changes,
price moves (gaps included), transient broker faults, flatten-alls and
closing bells, and checks after every step that

- every entry the broker receives is one the risk rules accept at that moment,
  no bigger than ``risk.size_position`` allows and within ``max_exposure_pct``;
- no sell is ever bigger than what is held (nothing goes short by accident);
- the engine's positions agree with the broker's;
- nothing is held past the close with ``eod_flatten`` on;
- ``flatten_all`` ends flat once the broker accepts orders.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.engine import risk
from app.engine.bot import TradingBot
from app.engine.broker.base import BrokerError
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import EventBus
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, Order, Side, TradingMode

SYMBOL = "PLTR"
BAR = timedelta(minutes=5)
CALENDAR = MarketCalendar()
FIRST_DAY = date(2025, 3, 4)


class ChosenModel(SignalModel):
    """P(up) is whatever the test says it is for this bar."""

    name = "chosen"

    def __init__(self) -> None:
        self.p_up = 0.5

    def predict(self, closes: np.ndarray, *bars: Any) -> ModelOutput:
        return ModelOutput(self.p_up, (("chosen", self.p_up),), ("chosen by hypothesis",), "chosen-v1")


class GuardedBroker(SimulatedBroker):
    """The simulated broker, checking each new order the moment it arrives, and
    dropping the next ``fail`` submits and cancels as a flaky network would."""

    def __init__(self, clock: SimClock, settings: Settings) -> None:
        super().__init__(clock, 100_000.0, slippage_bps=settings.slippage_bps)
        self.settings = settings
        self.bot: TradingBot | None = None
        self.fail = 0
        self.violations: list[str] = []
        self.entries = 0
        self.faults = 0

    def _flaky(self) -> None:
        if self.fail > 0:
            self.fail -= 1
            self.faults += 1
            raise BrokerError("connection reset by peer", transient=True)

    def submit(self, order: Order) -> Order:
        self._flaky()
        if order.client_order_id not in self._orders:  # new, not an idempotent resend
            self._check(order)
        return super().submit(order)

    def cancel(self, client_order_id: str) -> None:
        self._flaky()
        super().cancel(client_order_id)

    def _check(self, order: Order) -> None:
        held = self.held(order.symbol)
        if order.side == Side.SELL:
            if order.qty > held + 1e-9:
                self.violations.append(f"{order.client_order_id}: sells {order.qty:g}, holds {held:g}")
            return
        assert self.bot is not None
        self.entries += 1
        ctx = self.bot.core.book.risk_context(order.symbol, order.side, order.client_order_id)  # not against itself
        decision = risk.check_entry(ctx, self.settings)
        cap = risk.size_position(ctx, self.settings)
        after = risk.exposure(ctx.positions) + order.qty * ctx.price
        if not decision.accepted:
            self.violations.append(f"{order.client_order_id}: sent although refused ({decision.reason})")
        elif order.qty > min(decision.qty, cap) + 1e-9:
            self.violations.append(f"{order.client_order_id}: {order.qty:g} shares, risk allows {cap:g}")
        if after > ctx.equity * self.settings.max_exposure_pct + 1e-6:
            self.violations.append(f"{order.client_order_id}: exposure {after:,.0f} over the limit")


class Desk(RuleBasedStateMachine):
    @initialize(risk_per_trade=st.sampled_from([0.005, 0.02, 0.05]),
                max_position_pct=st.sampled_from([0.05, 0.2, 0.5, 1.0]),
                max_exposure_pct=st.sampled_from([0.05, 0.2, 0.6]),
                stop_loss_pct=st.sampled_from([0.01, 0.03, 0.1]),
                mode=st.sampled_from(["manual", "hybrid", "auto"]),
                price=st.floats(2.0, 500.0))
    def start(self, risk_per_trade: float, max_position_pct: float, max_exposure_pct: float,
              stop_loss_pct: float, mode: str, price: float) -> None:
        self.settings = Settings(mode=mode, risk_per_trade=risk_per_trade, max_position_pct=max_position_pct,
                                 max_exposure_pct=max_exposure_pct, stop_loss_pct=stop_loss_pct,
                                 trailing_start_pct=max(0.05, stop_loss_pct * 2),
                                 max_price_move_pct=0.05)
        session = CALENDAR.session(FIRST_DAY)
        assert session is not None
        self.clock = SimClock(session.open + timedelta(minutes=30))
        self.broker = GuardedBroker(self.clock, self.settings)
        self.model = ChosenModel()
        self.records = MemoryRecorder()
        self.bot = TradingBot(self.settings, self.clock, self.broker, self.model, self.records, EventBus(),
                              CALENDAR, sleep=lambda s: None)
        self.broker.bot = self.bot
        self.price = round(price, 2)
        self.broker.on_price(SYMBOL, self.price, self.clock.now())
        self.bot.start()
        self.days = 0

    # ------------------------------------------------------------ the market
    def _move(self, move: float) -> None:
        self.price = round(min(max(self.price * (1 + move), 1.0), 5_000.0), 4)

    @rule(p_up=st.sampled_from([0.02, 0.2, 0.5, 0.71, 0.75, 0.79, 0.81, 0.9, 0.99]),
          move=st.floats(-0.12, 0.12))
    def bar_closes(self, p_up: float, move: float) -> None:
        now = self.clock.now()
        start = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
        open_ = self.price
        self._move(move)
        self.clock.set(start + BAR)
        self.broker.on_price(SYMBOL, self.price, self.clock.now())
        self.model.p_up = p_up
        hi, lo = max(open_, self.price), min(open_, self.price)
        self.bot.on_bar_close(Bar(SYMBOL, start, open_, hi, lo, self.price, 10_000.0))

    @rule(move=st.floats(-0.1, 0.1))
    def price_ticks(self, move: float) -> None:
        self._move(move)
        now = self.clock.advance(timedelta(seconds=30))
        self.broker.on_price(SYMBOL, self.price, now)
        self.bot.on_price(SYMBOL, self.price)

    # ------------------------------------------------------------ the user
    @precondition(lambda self: bool(self.bot.pending))
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        self.bot.approve(data.draw(st.sampled_from(sorted(self.bot.pending))))

    @precondition(lambda self: bool(self.bot.pending))
    @rule()
    def reject(self) -> None:
        self.bot.reject(sorted(self.bot.pending)[0])

    @rule(mode=st.sampled_from(list(TradingMode)))
    def switch_mode(self, mode: TradingMode) -> None:
        self.bot.set_mode(mode)

    @rule(n=st.integers(1, 5))
    def network_fails(self, n: int) -> None:
        self.broker.fail = n

    @rule()
    def flatten_all(self) -> None:
        self.broker.fail = 0  # the broker accepts orders again
        self.bot.flatten_all()
        for _ in range(3):
            self.price_ticks(0.0)
        assert self.broker.positions() == [] and self.records.positions() == [], "flatten all ends flat"

    @rule()
    def the_closing_bell(self) -> None:
        """Ticks through the last minutes of the session; then the next morning."""
        session = CALENDAR.session_at(self.clock.now()) or CALENDAR.next_session(self.clock.now())
        self.clock.set(max(self.clock.now(), session.close - timedelta(minutes=6)))
        while self.clock.now() + timedelta(seconds=30) < session.close:
            self.price_ticks(0.0)
        held = self.broker.positions()
        assert held == [] and self.records.positions() == [], f"held past the close: {held}"
        nxt = CALENDAR.next_session(session.close)
        self.clock.set(nxt.open + timedelta(minutes=5))
        self.days += 1

    # ------------------------------------------------------------ always
    @invariant()
    def every_order_passed_the_risk_rules(self) -> None:
        assert self.broker.violations == [], self.broker.violations

    @invariant()
    def the_engine_and_the_broker_agree(self) -> None:
        mine = {p.symbol: p.qty for p in self.records.positions()}
        theirs = {p.symbol: p.qty for p in self.broker.positions()}
        assert all(q > 0 for q in theirs.values()), f"short at the broker: {theirs}"
        assert mine == theirs, (mine, theirs)

    @invariant()
    def exposure_at_cost_within_the_limit(self) -> None:
        cost = sum(p.qty * p.avg_price for p in self.broker.positions())
        limit = self.settings.max_exposure_pct * self.broker.account().equity
        # equity moves after the entry; slippage moves the fill: allow what a gap can do
        assert cost <= limit * 1.35 + 1e-6, (cost, limit)


# RELIABILITY_EXAMPLES=1000 for a longer hunt
Desk.TestCase.settings = settings(max_examples=int(os.environ.get("RELIABILITY_EXAMPLES", "40")),
                                  stateful_step_count=35, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
TestMoneySafety = Desk.TestCase


def test_the_state_machine_really_trades() -> None:
    """A fixed run through the machine: entries, exits, faults and the close all happen."""
    desk = Desk()
    desk.start(risk_per_trade=0.02, max_position_pct=0.2, max_exposure_pct=0.2, stop_loss_pct=0.03,
               mode="auto", price=20.0)
    desk.bar_closes(0.95, 0.0)
    desk.price_ticks(0.0)
    (held,) = desk.records.positions()
    desk.network_fails(4)
    desk.bar_closes(0.05, 0.01)
    for _ in range(3):
        desk.price_ticks(0.0)
    desk.bar_closes(0.95, -0.2)  # a gap down through the stop
    desk.price_ticks(0.0)
    desk.bar_closes(0.95, 0.0)
    desk.price_ticks(0.0)
    desk.the_closing_bell()
    desk.every_order_passed_the_risk_rules()
    desk.the_engine_and_the_broker_agree()
    print(f"\ninvariants: {desk.broker.entries} entries checked, {desk.broker.faults} faults, "
          f"{len(desk.records.trades)} trades ({[t.exit_reason for t in desk.records.trades]}), "
          f"first entry {held.qty:g} shares")
    assert desk.broker.entries >= 2 and desk.broker.faults == 4 and len(desk.records.trades) >= 2
    assert desk.records.positions() == []
