"""Orders as commands, sent with retries and one client order id per intent.

The intent is recorded (status NEW) *before* it is sent, so that after a crash
the engine finds it, asks the broker whether it arrived (by the same
``client_order_id``) and never sends a second order for the same intent.
"""

from __future__ import annotations

import os
import signal
import time as _time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from loguru import logger

from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import Clock
from app.engine.records import Recorder
from app.engine.types import Order, OrderStatus

RETRY_DELAYS = (0.5, 1.0)  # 3 attempts in all
ID_SEQUENCE_KEY = "orders.sequence"  # the last number given to a stop or exit id, kept across restarts
HELD_KEY = "orders.held"  # entries held for the open: id -> (not before, expires), kept across restarts
ID_BOOK_KEY = "orders.book"  # a token of this record's own: a fresh database never reuses an old id
OWN_PREFIX = "ait-"  # every client order id the app sends starts so: what it may manage at the broker


def is_own(client_order_id: str) -> bool:
    """Whether the app placed this order (the user's own orders, from Alpaca's dashboard or
    another program, are never cancelled, adopted or counted as the app's exits)."""
    return client_order_id.startswith(OWN_PREFIX)
T = TypeVar("T")


def crash_point(name: str) -> None:
    """TEST HOOK (tests/test_reliability_crash.py), inert unless the environment sets
    AI_TRADER_CRASH_AT to this point's name ("after_submit", or "after_submit:3" for
    its third visit): the process then kills itself with SIGKILL on the spot."""
    want = _CRASH_AT
    if want and want.partition(":")[0] == name:
        _crash_visits[name] = _crash_visits.get(name, 0) + 1
        if _crash_visits[name] >= int(want.partition(":")[2] or 1):
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))  # SIGTERM: Windows
            os._exit(137)


_crash_visits: dict[str, int] = {}
_CRASH_AT = os.environ.get("AI_TRADER_CRASH_AT")  # read once: the hook sits on every order's path


@dataclass
class PlaceOrderCommand:
    order: Order

    def execute(self, broker: Broker) -> Order:
        return broker.submit(self.order)


@dataclass
class CancelOrderCommand:
    client_order_id: str

    def execute(self, broker: Broker) -> None:
        broker.cancel(self.client_order_id)


@dataclass
class QueuedOrder:
    order: Order
    expires_at: datetime | None  # None: an exit, retried until it succeeds
    revalidate: Callable[[Order], Order | None] | None = None
    not_before: datetime | None = None  # held until then (a daily entry waits for the open)


class OrderRouter:
    def __init__(self, broker: Broker, records: Recorder, clock: Clock,
                 sleep: Callable[[float], None] = _time.sleep) -> None:
        self.broker = broker
        self.records = records
        self.clock = clock
        self.sleep = sleep
        self.queue: dict[str, QueuedOrder] = {}
        self.retries = 0
        self.connected = True
        self._held_saved: dict[str, list[str]] | None = None
        self._seq: int | None = None  # held here too: a database refusing writes never repeats an id
        self._book = ""

    def new_id(self, symbol: str, kind: str) -> str:
        """A client order id no other intent ever had (``ait-PLTR-stop-3f9a1c-000042``): a number
        from a sequence, never the time (two intents can share a second), after a token of this
        record's own (a database moved aside starts a new one, so Alpaca's orders from the old
        one are never taken for new ones). Entries are named after their signal instead,
        which a restart must find again."""
        if self._seq is None:
            self._seq = int(self.records.state_get(ID_SEQUENCE_KEY, 0) or 0)
            self._book = str(self.records.state_get(ID_BOOK_KEY, "") or "")
            if not self._book:  # a new record (or one moved aside): its ids must not meet the old ones
                self._book = uuid.uuid4().hex[:6]
                self.records.state_set(ID_BOOK_KEY, self._book)
        self._seq += 1
        self.records.state_set(ID_SEQUENCE_KEY, self._seq)
        return f"{OWN_PREFIX}{symbol}-{kind}-{self._book}-{self._seq:06d}"

    def place(self, order: Order, expires_at: datetime | None = None,
              revalidate: Callable[[Order], Order | None] | None = None) -> Order:
        """Record the intent, then send it. Returns the order as it now stands.

        A transient failure leaves the order queued: exits (``expires_at`` None)
        are retried until they go through; entries until they expire, and are
        re-validated by ``revalidate`` before each new attempt.
        """
        now = self.clock.now()
        known = self.records.get_order(order.client_order_id)
        if known is not None and known.status != OrderStatus.INTENT:
            return known  # this intent was already sent: never twice
        self.records.order(order, now)
        self.records.command(now, "place", order.client_order_id,
                             {"symbol": order.symbol, "side": order.side.value, "qty": order.qty,
                              "type": order.order_type.value, "stop": order.stop_price,
                              "reason": order.reason}, "")
        crash_point("before_submit")
        return self._send(QueuedOrder(order, expires_at, revalidate))

    def replace(self, old: Order, new: Order) -> Order | None:
        """Put ``new`` in the place of the working ``old`` (a stop moved or resized) with the
        broker's replace; the intent is recorded first, like a placement. Returns the new
        order, or None when it did not happen (``old`` filled or ended meanwhile, or the
        broker cannot be reached): the next check then sees the truth and acts on it."""
        now = self.clock.now()
        self.records.order(new, now)
        self.records.command(now, "replace", new.client_order_id,
                             {"replaces": old.client_order_id, "qty": new.qty, "stop": new.stop_price}, "")
        try:
            placed = self._with_retry(lambda: self.broker.replace_order(old.client_order_id, new))
        except BrokerError as exc:
            try:  # an answer lost on the way back: did the replacement land?
                there = self._with_retry(lambda: self.broker.get_order(new.client_order_id))
            except BrokerError:
                # unknown: the intent stays recorded (NEW); the next poll finds it, or drops it
                logger.warning("Move of {} to {} unconfirmed: {}", old.client_order_id, new.client_order_id, exc)
                return None
            if there is None:
                self.records.order(replace(new, status=OrderStatus.CANCELED,
                                           reason=f"{new.reason}; not placed: {exc}"), self.clock.now())
                logger.warning("Could not move {} to {}: {}", old.client_order_id, new.client_order_id, exc)
                return None
            placed = there
        placed = placed.with_intent_of(new)
        self._record_sent(placed)
        # Alpaca answers a replace before it happens: the old order can still fill first (the new
        # one is then rejected). Its record is closed only once the broker says it ended unfilled;
        # a fill is left to the next poll to book, never lost. Until then the keeper treats the
        # newest stop as the working one.
        try:
            was = self._with_retry(lambda: self.broker.get_order(old.client_order_id))
        except BrokerError:
            was = None
        if was is not None and not was.status.is_open and was.filled_qty <= old.filled_qty + 1e-9:
            self.records.order(replace(was.with_intent_of(old), filled_qty=old.filled_qty,
                                       reason=f"{old.reason}; replaced by {new.client_order_id}"),
                               self.clock.now())
        return placed

    def cancel(self, client_order_id: str) -> bool:
        """True once the broker confirms the order is over unfilled (or never had it).
        An order that filled meanwhile (a stop racing the cancel) stays open in the
        record, so the next poll books its fill; it is never marked canceled."""
        self.queue.pop(client_order_id, None)
        cmd = CancelOrderCommand(client_order_id)
        try:
            self._with_retry(lambda: cmd.execute(self.broker))
            there = self._with_retry(lambda: self.broker.get_order(client_order_id))
        except BrokerError as exc:
            logger.warning("Cancel of {} failed: {}", client_order_id, exc)
            return False
        o = self.records.get_order(client_order_id)
        booked = o.filled_qty if o is not None else 0.0
        if there is not None and (there.status.is_open or there.filled_qty > booked + 1e-9):
            # still working (pending_cancel), or shares filled that are not booked yet: the
            # record stays open, so the next poll follows it and books every share
            logger.info("Order {} was not canceled: the broker has it {} ({:g} filled)",
                        client_order_id, there.status.value, there.filled_qty)
            return False
        if o is not None and o.status.is_open:
            self.records.order(replace(o, status=there.status if there else OrderStatus.CANCELED),
                               self.clock.now())
        self.records.command(self.clock.now(), "cancel", client_order_id, {}, "ok")
        return True

    def hold(self, order: Order, not_before: datetime, expires_at: datetime,
             revalidate: Callable[[Order], Order | None]) -> Order:
        """Record the intent now and send it at ``not_before`` or later, re-validated then
        (a daily bar's entry, decided while the market is closed, goes out at the open)."""
        now = self.clock.now()
        self.records.order(order, now)
        self.records.command(now, "hold", order.client_order_id,
                             {"symbol": order.symbol, "qty": order.qty, "until": not_before.isoformat()}, "")
        self.queue[order.client_order_id] = QueuedOrder(order, expires_at, revalidate, not_before)
        self._save_held()
        return order

    def restore_held(self, revalidate: Callable[[Order], Order | None]) -> int:
        """After a restart: the entries held for the open are queued again (their intents are
        recorded), rather than dropped as orders that never reached the broker."""
        saved = self.records.state_get(HELD_KEY)
        if not isinstance(saved, dict):
            return 0
        for coid, (not_before, expires_at) in saved.items():
            o = self.records.get_order(coid)
            if o is not None and o.status == OrderStatus.INTENT:
                self.queue[coid] = QueuedOrder(o, datetime.fromisoformat(expires_at), revalidate,
                                               datetime.fromisoformat(not_before))
        self._save_held()
        return sum(1 for q in self.queue.values() if q.not_before is not None)

    def _save_held(self) -> None:
        held = {c: [q.not_before.isoformat(), q.expires_at.isoformat()] for c, q in self.queue.items()
                if q.not_before is not None and q.expires_at is not None}
        if held != self._held_saved:
            self._held_saved = held
            self.records.state_set(HELD_KEY, held)

    def drop(self, client_order_id: str, why: str) -> None:
        """Take a queued (held or failing) entry back before it is sent: flatten-all, the close."""
        q = self.queue.pop(client_order_id, None)
        if q is not None:
            self.records.order(replace(q.order, status=OrderStatus.CANCELED, reason=f"{q.order.reason}; {why}"),
                               self.clock.now())
            self._save_held()

    def retry_queued(self) -> list[Order]:
        """Try the queued orders again (called on every price check)."""
        out = []
        for coid, q in list(self.queue.items()):
            now = self.clock.now()
            if q.not_before is not None and now < q.not_before:
                continue
            if q.expires_at is not None and now >= q.expires_at:
                out.extend(self._give_up(q, "expired before the broker took it"))
                continue
            if q.revalidate is not None:
                fresh = q.revalidate(q.order)
                if fresh is None:
                    out.extend(self._give_up(q, "refused on re-validation"))
                    continue
                q.order = fresh
            del self.queue[coid]
            out.append(self._send(q))
        if self._held_saved:
            self._save_held()
        return out

    def _give_up(self, q: QueuedOrder, why: str) -> list[Order]:
        """Drop a queued order, unless an attempt whose answer was lost did reach the
        broker: then the order is recorded as the broker has it (a fill is booked, not
        forgotten). While the broker cannot be asked, the order stays queued."""
        coid = q.order.client_order_id
        try:
            there = self._with_retry(lambda: self.broker.get_order(coid))
        except BrokerError:
            return []
        del self.queue[coid]
        if there is not None:
            logger.warning("Order {} reached the broker after all ({})", coid, there.status.value)
            found = there.with_intent_of(q.order)
        else:
            found = replace(q.order, status=OrderStatus.CANCELED, reason=f"{q.order.reason}; {why}")
        self._record_sent(found)
        return [found]

    def _record_sent(self, order: Order) -> None:
        """Record the broker's answer, except that a fill is recorded only once the bot
        has booked it (``TradingBot._placed``): "filled" in the record always means
        "booked", and an order filled on arrival stays open in the record until then,
        so a crash in between leaves it to the next poll or reconciliation."""
        if order.filled_qty > 0:
            order = replace(order, status=OrderStatus.ACCEPTED, filled_qty=0.0, filled_avg_price=None)
        self.records.order(order, self.clock.now())

    # ------------------------------------------------------------ internal
    def _send(self, q: QueuedOrder) -> Order:
        order = q.order
        try:
            accepted = self._with_retry(lambda: PlaceOrderCommand(order).execute(self.broker))
        except BrokerError as exc:
            now = self.clock.now()
            if exc.transient:
                self.queue[order.client_order_id] = q
                logger.warning("Order {} not sent ({}); queued for retry", order.client_order_id, exc)
                return order
            rejected = replace(order, status=OrderStatus.REJECTED, reason=f"{order.reason}; {exc}")
            self.records.order(rejected, now)
            self.records.command(now, "place", order.client_order_id, {}, f"rejected: {exc}")
            logger.error("Order {} rejected by the broker: {}", order.client_order_id, exc)
            return rejected
        crash_point("after_submit")
        accepted = accepted.with_intent_of(order)
        self._record_sent(accepted)
        return accepted

    def _with_retry(self, call: Callable[[], T]) -> T:
        """``call()``, retried with backoff while the broker's failure is transient."""
        attempt = 0
        while True:
            try:
                result = call()
            except BrokerError as exc:
                if not exc.transient:
                    raise
                self.connected = False
                if attempt == len(RETRY_DELAYS):
                    raise
                self.retries += 1
                delay = max(RETRY_DELAYS[attempt], exc.retry_after or 0.0)
                logger.info("Broker call failed ({}); retry {} in {:.1f}s", exc, attempt + 1, delay)
                self.sleep(min(delay, 10.0))
                attempt += 1
                continue
            self.connected = True
            return result
