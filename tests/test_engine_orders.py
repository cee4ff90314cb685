"""Order routing: one broker order per intent, the intent recorded before it
is sent, transient failures retried, permanent ones recorded and left alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta

import pytest
from conftest import utc

from app.engine.broker.base import Broker, BrokerError
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import SimClock
from app.engine.orders import OrderRouter
from app.engine.records import MemoryRecorder, Recorder
from app.engine.types import Account, Order, OrderStatus, OrderType, Position, Side

T0 = utc(2025, 3, 4, 15, 0)


class CountingBroker(Broker):
    """A broker that books a new order for every submit (no idempotency of its
    own), fails the next ``drop`` submits, and sees what was recorded first."""

    def __init__(self, records: Recorder | None = None) -> None:
        self.submitted: list[Order] = []
        self.drop = 0
        self.reject = ""
        self.records = records
        self.status_seen_at_submit: list[OrderStatus | None] = []

    def submit(self, order: Order) -> Order:
        if self.records is not None:
            known = self.records.get_order(order.client_order_id)
            self.status_seen_at_submit.append(known.status if known else None)
        if self.drop > 0:
            self.drop -= 1
            raise BrokerError("503 service unavailable", transient=True, retry_after=2.0)
        if self.reject:
            raise BrokerError(self.reject, transient=False)
        accepted = replace(order, status=OrderStatus.ACCEPTED, broker_order_id=f"b{len(self.submitted)}")
        self.submitted.append(accepted)
        return accepted

    def account(self) -> Account:
        return Account(100_000.0, 100_000.0, 100_000.0, 100_000.0)

    def positions(self) -> list[Position]:
        return []

    def open_orders(self) -> list[Order]:
        return list(self.submitted)

    def get_order(self, client_order_id: str) -> Order | None:
        return next((o for o in self.submitted if o.client_order_id == client_order_id), None)

    def cancel(self, client_order_id: str) -> None:
        pass


def order(coid: str = "PLTR-20250304T1500-BUY-entry", side: Side = Side.BUY, qty: float = 100) -> Order:
    return Order(coid, "PLTR", side, qty, OrderType.MARKET, OrderStatus.INTENT, T0, reason="entry")


def make_router(broker: Broker | None = None) -> tuple[OrderRouter, CountingBroker, MemoryRecorder,
                                                       SimClock, list[float]]:
    records = MemoryRecorder()
    b = broker or CountingBroker(records)
    clock = SimClock(T0)
    sleeps: list[float] = []
    return OrderRouter(b, records, clock, sleeps.append), b, records, clock, sleeps  # type: ignore[return-value]


def test_the_same_intent_placed_twice_is_one_broker_order() -> None:
    router, broker, records, _, _ = make_router()
    first = router.place(order())
    again = router.place(order())
    assert len(broker.submitted) == 1
    assert first == again and again.status == OrderStatus.ACCEPTED
    assert records.get_order(first.client_order_id) == first


def test_the_intent_is_recorded_before_it_is_sent() -> None:
    router, broker, _, _, _ = make_router()
    router.place(order())
    assert broker.status_seen_at_submit == [OrderStatus.INTENT]


def test_the_simulated_broker_is_idempotent_on_client_order_id() -> None:
    sim = SimulatedBroker(SimClock(T0))
    a = sim.submit(order())
    b = sim.submit(replace(order(), qty=999))
    assert a == b and len(sim.open_orders()) == 1 and sim.open_orders()[0].qty == 100


def test_transient_errors_are_retried_with_backoff() -> None:
    router, broker, _, _, sleeps = make_router()
    broker.drop = 2
    placed = router.place(order())
    assert placed.status == OrderStatus.ACCEPTED and len(broker.submitted) == 1
    assert sleeps == [2.0, 2.0]  # the broker's Retry-After wins over the shorter backoff
    assert router.retries == 2 and router.connected


def test_after_three_failures_the_order_waits_in_the_queue() -> None:
    router, broker, records, clock, sleeps = make_router()
    broker.drop = 3
    placed = router.place(order(side=Side.SELL))  # an exit: no expiry
    assert placed.status == OrderStatus.INTENT and not router.connected
    assert list(router.queue) == [placed.client_order_id] and len(sleeps) == 2
    broker.drop = 6  # two more rounds of three attempts fail
    clock.advance(timedelta(hours=3))
    router.retry_queued()
    router.retry_queued()
    assert broker.submitted == []  # still down: the exit is still waiting, not dropped
    (sent,) = router.retry_queued()
    assert sent.status == OrderStatus.ACCEPTED and router.queue == {} and router.connected
    assert records.get_order(sent.client_order_id) == sent
    assert len(broker.submitted) == 1


def test_a_permanent_rejection_is_recorded_with_the_brokers_reason() -> None:
    router, broker, records, _, sleeps = make_router()
    broker.reject = "insufficient buying power"
    placed = router.place(order())
    assert placed.status == OrderStatus.REJECTED and "insufficient buying power" in placed.reason
    assert records.get_order(placed.client_order_id) == placed
    assert router.queue == {} and sleeps == []
    assert records.commands[-1]["outcome"] == "rejected: insufficient buying power"
    broker.reject = ""
    assert router.place(order()).status == OrderStatus.REJECTED  # the same intent is not re-sent
    assert broker.submitted == []


def test_a_queued_entry_expires() -> None:
    router, broker, records, clock, _ = make_router()
    broker.drop = 3
    router.place(order(), expires_at=T0 + timedelta(minutes=5))
    broker.drop = 0
    clock.advance(timedelta(minutes=5))
    (expired,) = router.retry_queued()
    assert expired.status == OrderStatus.CANCELED and "expired" in expired.reason
    assert broker.submitted == [] and router.queue == {}
    assert records.get_order(expired.client_order_id) == expired


def test_a_queued_entry_is_revalidated_and_can_be_refused_or_resized() -> None:
    router, broker, records, _, _ = make_router()
    broker.drop = 6
    router.place(order("a"), expires_at=T0 + timedelta(minutes=5), revalidate=lambda o: None)
    router.place(order("b"), expires_at=T0 + timedelta(minutes=5),
                 revalidate=lambda o: replace(o, qty=40))
    broker.drop = 0
    out = {o.client_order_id: o for o in router.retry_queued()}
    assert out["a"].status == OrderStatus.CANCELED and "re-validation" in out["a"].reason
    assert out["b"].status == OrderStatus.ACCEPTED and out["b"].qty == 40
    assert [o.client_order_id for o in broker.submitted] == ["b"]


def test_canceling_a_queued_order_means_it_is_never_sent() -> None:
    router, broker, records, _, _ = make_router()
    broker.drop = 3
    placed = router.place(order(side=Side.SELL))
    assert router.cancel(placed.client_order_id)
    assert router.retry_queued() == [] and broker.submitted == []
    got = records.get_order(placed.client_order_id)
    assert got is not None and got.status == OrderStatus.CANCELED


@pytest.mark.parametrize("qty", [0.0, -5.0])
def test_the_simulated_broker_rejects_nonsense_quantities(qty: float) -> None:
    router, _, records, _, _ = make_router(SimulatedBroker(SimClock(T0)))
    placed = router.place(order(qty=qty))
    assert placed.status == OrderStatus.REJECTED and "must be positive" in placed.reason


def test_the_simulated_broker_rejects_what_the_cash_cannot_pay() -> None:
    clock = SimClock(T0)
    sim = SimulatedBroker(clock, 1_000.0)
    sim.on_price("PLTR", 20.0, T0)
    with pytest.raises(BrokerError) as err:
        sim.submit(order(qty=100))
    assert not err.value.transient and "buying power" in str(err.value)


def test_positions_are_marked_stale_while_the_broker_is_unreachable() -> None:
    from datetime import datetime

    from app.engine.bot import TradingBot
    from app.engine.broker.base import BrokerError
    from app.engine.broker.simulated import SimulatedBroker
    from app.engine.clock import SimClock
    from app.engine.events import EventBus, PortfolioEvent
    from app.engine.records import MemoryRecorder
    from app.engine.settings import Settings
    from app.engine.strategy.rules import RulesModel
    from app.engine.types import Order, OrderStatus, OrderType, Position, Side

    class Down(SimulatedBroker):
        down = False

        def get_order(self, client_order_id: str):  # type: ignore[no-untyped-def]
            if self.down:
                raise BrokerError("connection reset", transient=True)
            return super().get_order(client_order_id)

    clock = SimClock(datetime(2025, 6, 2, 15, tzinfo=UTC))
    broker = Down(clock)
    records = MemoryRecorder()
    broker.on_price("PLTR", 20.0, clock.now())
    broker.submit(Order("b", "PLTR", Side.BUY, 10, OrderType.MARKET, OrderStatus.INTENT, clock.now()))
    broker.on_price("PLTR", 20.0, clock.now())  # the broker holds the 10 shares the record says
    records.position(Position("PLTR", 10, 20.0, 20.0, clock.now(), stop_price=19.4))
    stop = Order("x", "PLTR", Side.SELL, 10, OrderType.STOP, OrderStatus.ACCEPTED, clock.now(), stop_price=19.4)
    broker.submit(stop)
    records.order(stop, clock.now())
    seen: list[PortfolioEvent] = []
    bus = EventBus()
    bus.subscribe(lambda e: seen.append(e) if isinstance(e, PortfolioEvent) else None)
    bot = TradingBot(Settings(), clock, broker, RulesModel(), records, bus, sleep=lambda s: None)
    bot.on_price("PLTR", 20.5)
    assert seen and not seen[-1].positions[0].stale
    broker.down = True
    bot.on_price("PLTR", 20.6)
    assert seen[-1].positions[0].stale, "last known state, marked stale"
    broker.down = False
    bot.on_price("PLTR", 20.7)
    assert not seen[-1].positions[0].stale
