"""A hypothesis state machine over the real Alpaca client and the loopback server: bars,
prints that fill orders whole or in pieces, slow cancels, outages, a user cancelling the
app's stop, restarts, flatten-all and the closing bell, in any order.

After every step (and one healthy stop check, as the live engine makes every 30 s):
- every share the app holds at the broker is covered by a working sell stop or exit;
- no sell is left working on a flat account (with shorting enabled it would open a short);
- no client order id was ever sent twice;
- exposure at cost stays within the limit (a gap can move a fill: 35% of slack);
- flat after flatten-all and after the close.
"""

from __future__ import annotations

import os
from datetime import timedelta

from alpaca_desk import SYMBOL, AlpacaDesk
from alpaca_server import AlpacaServer, Fault
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.engine.bot import TradingBot
from app.engine.clock import MarketCalendar
from app.engine.events import EventBus

CALENDAR = MarketCalendar()
OPEN = frozenset({"new", "accepted", "partially_filled", "pending_cancel", "pending_new", "held"})


class Execution(RuleBasedStateMachine):
    server: AlpacaServer

    @initialize(price=st.floats(5.0, 300.0), mode=st.sampled_from(["auto", "hybrid"]))
    def start(self, price: float, mode: str) -> None:
        self.server = AlpacaServer(hang_s=0.2).start()
        self.server.shorting_enabled = True  # a margin account: a stray sell would open a short
        self.price = round(price, 2)
        self.server.set_price(SYMBOL, self.price)
        self.desk = AlpacaDesk(self.server, mode=mode)
        self.settings = self.desk.settings

    def teardown(self) -> None:
        if hasattr(self, "server"):
            self.server.stop()

    # ------------------------------------------------------------ the market
    def _move(self, move: float) -> None:
        self.price = round(min(max(self.price * (1 + move), 1.0), 5_000.0), 2)

    @rule(p_up=st.sampled_from([0.05, 0.5, 0.75, 0.9, 0.99]), move=st.floats(-0.08, 0.08))
    def bar_closes(self, p_up: float, move: float) -> None:
        self._move(move)
        self.desk.next_bar(self.price, p_up)

    @rule(move=st.floats(-0.06, 0.06), most=st.sampled_from([None, None, 7, 40]))
    def the_market_trades(self, move: float, most: int | None) -> None:
        """A print: it fills what it reaches, whole or at most ``most`` shares of each order."""
        self._move(move)
        self.server.fill_open_orders(self.price, SYMBOL, most)
        self.server.set_price(SYMBOL, self.price)
        self.desk.check()

    # ------------------------------------------------------------ Alpaca being Alpaca
    @rule(reads=st.integers(0, 3))
    def cancels_get_slow(self, reads: int) -> None:
        self.server.cancel_settles_after = reads

    @rule(n=st.integers(1, 6))
    def an_outage(self, n: int) -> None:
        self.server.fail_next(*[Fault.http(503)] * n)
        self.desk.check()

    @rule()
    def the_user_cancels_the_apps_stop_on_the_dashboard(self) -> None:
        for o in self.desk.orders("sell", "stop"):
            if o["status"] in OPEN and o["status"] != "pending_cancel":
                self.server.cancel_by_coid(o["client_order_id"])

    @rule()
    def the_app_restarts(self) -> None:
        old = self.desk.bot
        self.desk.bot = TradingBot(self.settings, self.desk.clock, self.desk.broker, self.desk.model,
                                   self.desk.records, EventBus(), CALENDAR, "alpaca", sleep=lambda s: None)
        self.desk.bot.set_mode(old.mode)
        self.desk.bot.start()

    @precondition(lambda self: bool(self.desk.bot.pending))
    @rule()
    def the_user_approves(self) -> None:
        self.desk.bot.approve(sorted(self.desk.bot.pending)[0])

    # ------------------------------------------------------------ endings
    def _settle(self, checks: int = 6) -> None:
        """The broker healthy again; a few prints and stop checks."""
        self.server.heal()
        self.server.cancel_settles_after = 0
        for _ in range(checks):
            self.server.fill_open_orders(self.price, SYMBOL)
            self.desk.check()

    @rule()
    def flatten_all(self) -> None:
        self.server.cancel_settles_after = 0
        self.desk.bot.flatten_all()
        self._settle()
        assert self.desk.held() == 0 and self.desk.position is None, "flatten all ends flat"

    @rule()
    def the_closing_bell(self) -> None:
        now = self.desk.clock.now()
        session = CALENDAR.session_at(now) or CALENDAR.next_session(now)
        self.server.cancel_settles_after = 0
        self.desk.clock.set(max(now, session.close - timedelta(minutes=6)))
        while self.desk.clock.now() + timedelta(seconds=30) < session.close:
            self.server.fill_open_orders(self.price, SYMBOL)
            self.desk.check()
        assert self.desk.held() == 0 and self.desk.position is None, "flat at the close"
        self.server.end_of_day()
        nxt = CALENDAR.next_session(session.close)
        self.desk.clock.set(nxt.open + timedelta(minutes=5))
        self.desk.check()

    # ------------------------------------------------------------ always
    @invariant()
    def every_share_is_covered_within_one_stop_check(self) -> None:
        if not hasattr(self, "desk"):
            return
        self.server.heal()  # the check runs on a healthy broker...
        self.desk.check()  # ...one stop check later
        held = self.desk.held()
        working = [o for o in self.desk.orders("sell") if o["status"] in OPEN]
        cover = sum(float(o["qty"]) - float(o["filled_qty"]) for o in working)
        assert held >= 0, f"short at the broker: {held}"
        assert cover >= held - 1e-9, f"held {held:g}, covered {cover:g}: {[o['client_order_id'] for o in working]}"
        if held == 0:
            assert working == [], f"sells working on a flat account: {[o['client_order_id'] for o in working]}"

    @invariant()
    def no_id_is_sent_twice(self) -> None:
        if hasattr(self, "server"):
            assert self.server.duplicates() == {}

    @invariant()
    def exposure_at_cost_within_the_limit(self) -> None:
        if not hasattr(self, "desk"):
            return
        with self.server.lock:
            held = self.server.positions.get(SYMBOL)
            equity = self.server._equity()
        if held:
            limit = self.settings.max_exposure_pct * equity
            assert held["qty"] * held["avg"] <= limit * 1.35 + 1e-6, (held, limit)


# EXECUTION_EXAMPLES=200 for a longer hunt
Execution.TestCase.settings = settings(max_examples=int(os.environ.get("EXECUTION_EXAMPLES", "15")),
                                       stateful_step_count=25, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
TestExecution = Execution.TestCase
