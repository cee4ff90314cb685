"""AlpacaBroker: alpaca-py's real TradingClient against a loopback Alpaca server."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca_server import AlpacaServer, Fault, random_faults
from alpaca_shapes import account, position
from loguru import logger

from app.engine.broker.alpaca import AlpacaBroker, LiveGateError
from app.engine.broker.alpaca_orders import to_order_status
from app.engine.broker.base import BrokerError
from app.engine.clock import SimClock
from app.engine.orders import OrderRouter
from app.engine.records import Recorder
from app.engine.secrets import ApiKeys, Secret
from app.engine.types import BrokerKind, Order, OrderStatus, OrderType, Side

PDT_FIELDS = {"pattern_day_trader", "daytrade_count", "daytrading_buying_power"}


@pytest.fixture
def clock() -> SimClock:
    return SimClock(datetime(2026, 7, 7, 14, 30, tzinfo=UTC))


@pytest.fixture
def broker(alpaca_server: AlpacaServer, clock: SimClock) -> Iterator[AlpacaBroker]:
    b = AlpacaBroker(alpaca_server.api_keys(), clock, url_override=alpaca_server.url, timeout_s=0.3)
    yield b
    b.close()


def order(coid: str, side: Side = Side.BUY, qty: float = 10, stop: float | None = None,
          symbol: str = "AAPL") -> Order:
    kind = OrderType.STOP if stop is not None else OrderType.MARKET
    return Order(coid, symbol, side, qty, kind, OrderStatus.INTENT,
                 datetime(2026, 7, 7, 14, 30, tzinfo=UTC), stop_price=stop, reason="entry",
                 signal_id="sig-1")


# ------------------------------------------------------------- reading
@pytest.mark.parametrize("legacy", [False, True], ids=["2026-account", "pre-2026-account"])
def test_account_works_with_and_without_pdt_fields(alpaca_server: AlpacaServer, broker: AlpacaBroker,
                                                   legacy: bool) -> None:
    alpaca_server.legacy_pdt_fields = legacy
    alpaca_server.cash, alpaca_server.last_equity = 25_000.0, 26_000.0
    alpaca_server.add_position("AAPL", 10, avg_price=100.0, price=110.0)
    assert (set(account(alpaca_server)) >= PDT_FIELDS) is legacy

    acct = broker.account()

    assert (acct.cash, acct.equity, acct.buying_power) == (25_000.0, 26_100.0, 25_000.0)
    assert acct.day_start_equity == 26_000.0
    assert acct.day_pnl == pytest.approx(100.0)


def test_positions_are_read_as_alpaca_holds_them(alpaca_server: AlpacaServer, broker: AlpacaBroker,
                                                 clock: SimClock) -> None:
    alpaca_server.add_position("AAPL", 5, avg_price=100.0, price=120.0)
    alpaca_server.add_position("MSFT", 2, avg_price=400.5, price=390.25)
    got = {p.symbol: p for p in broker.positions()}
    assert set(got) == {"AAPL", "MSFT"}
    assert (got["AAPL"].qty, got["AAPL"].avg_price, got["AAPL"].last_price) == (5, 100.0, 120.0)
    assert got["MSFT"].unrealized_pnl == pytest.approx(2 * (390.25 - 400.5))
    assert got["AAPL"].opened_at == clock.now()


def test_server_speaks_the_shapes_of_alpacas_own_fixtures(alpaca_server: AlpacaServer,
                                                          shared_data: Path) -> None:
    """The loopback server is only worth trusting if its JSON looks like Alpaca's."""
    fixtures = shared_data / "alpaca" / "fixtures"
    prefix = "trading__trading_client__test_"

    def keys(name: str) -> set[str]:
        body = json.loads((fixtures / f"{prefix}{name}.json").read_text())
        return set(body[0] if isinstance(body, list) else body)

    alpaca_server.add_position("AAPL", 5, 100.0)
    status, placed = alpaca_server.route("POST", "/v2/orders", {},
                                         {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market"})
    assert status == 200
    assert keys("order_routes__test_market_order") - {"commission"} <= set(placed)
    assert keys("position_routes__test_get_all_positions") <= set(position(alpaca_server, "AAPL"))
    assert keys("account_routes__test_get_account") - PDT_FIELDS == set(account(alpaca_server))


def test_server_closes_a_position_the_way_alpaca_py_expects(alpaca_server: AlpacaServer) -> None:
    """DELETE /v2/positions/{symbol}, for later flatten-all tests; alpaca-py must parse it."""
    from alpaca.trading.client import TradingClient

    alpaca_server.auto_fill = True
    alpaca_server.add_position("AAPL", 7, avg_price=100.0, price=105.0)
    client = TradingClient(alpaca_server.key_id, alpaca_server.secret_key, url_override=alpaca_server.url)
    closing = client.close_position("AAPL")
    assert (closing.side.value, float(closing.qty), closing.status.value) == ("sell", 7, "filled")  # type: ignore[union-attr, arg-type]
    assert alpaca_server.positions == {} and alpaca_server.cash == pytest.approx(100_000 + 735)


# ------------------------------------------------------------- orders
def test_market_order_is_accepted_then_filled(alpaca_server: AlpacaServer, broker: AlpacaBroker) -> None:
    alpaca_server.set_price("AAPL", 100.0)
    sent = broker.submit(order("e-1"))
    assert sent.status == OrderStatus.ACCEPTED and sent.broker_order_id
    assert (sent.reason, sent.signal_id, sent.qty, sent.order_type) == ("entry", "sig-1", 10, OrderType.MARKET)
    assert [o.client_order_id for o in broker.open_orders()] == ["e-1"]

    assert alpaca_server.fill_open_orders(101.5) == 1
    done = broker.get_order("e-1")
    assert done is not None and done.status == OrderStatus.FILLED
    assert (done.filled_qty, done.filled_avg_price) == (10, 101.5) and done.filled_at is not None
    assert broker.open_orders() == []
    assert broker.account().cash == pytest.approx(100_000 - 1015)


def test_stop_order_is_sent_on_a_whole_cent_and_triggers(alpaca_server: AlpacaServer,
                                                         broker: AlpacaBroker) -> None:
    alpaca_server.add_position("AAPL", 10, avg_price=100.0)
    sent = broker.submit(order("s-1", Side.SELL, stop=95.12345))  # Alpaca refuses sub-penny stops
    assert (sent.order_type, sent.stop_price, sent.status) == (OrderType.STOP, 95.12, OrderStatus.ACCEPTED)
    assert alpaca_server.fill_open_orders(96.0) == 0
    assert alpaca_server.fill_open_orders(95.0) == 1
    assert broker.get_order("s-1").status == OrderStatus.FILLED  # type: ignore[union-attr]
    assert broker.positions() == []


def test_limit_buy_is_sent_within_the_users_price_and_fills_at_it_or_better(alpaca_server: AlpacaServer,
                                                                             broker: AlpacaBroker) -> None:
    alpaca_server.set_price("AAPL", 100.0)
    limit = Order("l-1", "AAPL", Side.BUY, 10, OrderType.LIMIT, OrderStatus.INTENT,
                  datetime(2026, 7, 7, 14, 30, tzinfo=UTC), reason="manual entry", limit_price=99.127)
    sent = broker.submit(limit)  # Alpaca refuses sub-penny limits: rounded down, never above the user's price
    assert (sent.order_type, sent.limit_price, sent.status) == (OrderType.LIMIT, 99.12, OrderStatus.ACCEPTED)
    assert alpaca_server.fill_open_orders(99.5) == 0
    assert alpaca_server.fill_open_orders(98.9) == 1
    done = broker.get_order("l-1")
    assert done is not None and done.status == OrderStatus.FILLED and done.filled_avg_price == 98.9


def test_a_limit_buy_needs_buying_power_for_its_limit_price(alpaca_server: AlpacaServer,
                                                            broker: AlpacaBroker) -> None:
    alpaca_server.set_price("AAPL", 10.0)  # the price would pay for it; the limit's worth would not
    big = Order("l-2", "AAPL", Side.BUY, 2_000, OrderType.LIMIT, OrderStatus.INTENT,
                datetime(2026, 7, 7, 14, 30, tzinfo=UTC), reason="manual entry", limit_price=60.0)
    with pytest.raises(BrokerError, match="insufficient buying power") as err:
        broker.submit(big)
    assert not err.value.transient


def test_resubmitting_a_client_order_id_returns_the_order_already_there(
        alpaca_server: AlpacaServer, broker: AlpacaBroker) -> None:
    first = broker.submit(order("dup-1"))
    again = broker.submit(order("dup-1"))
    assert again.broker_order_id == first.broker_order_id
    assert again.reason == "entry"
    assert alpaca_server.created_per_coid["dup-1"] == 1 and len(alpaca_server.orders) == 1


@pytest.mark.parametrize("fault", [Fault.http(500, after=True), Fault.hang(after=True),
                                   Fault.reset(after=True)], ids=["500", "hang", "reset"])
def test_an_order_whose_answer_was_lost_is_never_booked_twice(
        alpaca_server: AlpacaServer, broker: AlpacaBroker, fault: Fault) -> None:
    alpaca_server.fail_next(fault)
    with pytest.raises(BrokerError) as err:
        broker.submit(order("lost-1"))
    assert err.value.transient
    assert alpaca_server.order_by_coid("lost-1") is not None  # booked, answer lost
    retried = broker.submit(order("lost-1"))
    assert retried.broker_order_id == alpaca_server.order_by_coid("lost-1")["id"]  # type: ignore[index]
    assert alpaca_server.duplicates() == {}


def test_get_order_is_none_for_an_order_alpaca_never_saw(broker: AlpacaBroker) -> None:
    assert broker.get_order("never-sent") is None


def test_cancel_open_order_and_cancel_is_a_noop_otherwise(alpaca_server: AlpacaServer,
                                                          broker: AlpacaBroker) -> None:
    alpaca_server.add_position("AAPL", 10, avg_price=100.0)
    broker.submit(order("stop-1", Side.SELL, stop=90.0))
    broker.cancel("stop-1")
    assert broker.get_order("stop-1").status == OrderStatus.CANCELED  # type: ignore[union-attr]
    broker.cancel("stop-1")  # already canceled
    broker.cancel("unknown")  # never sent
    broker.submit(order("sell-1", Side.SELL))
    alpaca_server.fill_open_orders(99.0)
    broker.cancel("sell-1")  # already filled
    assert broker.get_order("sell-1").status == OrderStatus.FILLED  # type: ignore[union-attr]


def test_cancel_racing_a_fill_is_a_noop(alpaca_server: AlpacaServer, broker: AlpacaBroker) -> None:
    """The order was open when looked up but filled before the DELETE arrived (422)."""
    broker.submit(order("race-1"))
    alpaca_server.before_route = lambda method, path: (
        alpaca_server.fill_open_orders(100.0) if method == "DELETE" else None)
    broker.cancel("race-1")
    assert alpaca_server.requests["DELETE /v2/orders/" + alpaca_server.order_by_coid("race-1")["id"]] == 1  # type: ignore[index]
    assert broker.get_order("race-1").status == OrderStatus.FILLED  # type: ignore[union-attr]


def test_cancel_waits_for_alpacas_asynchronous_cancel_so_the_exit_can_sell(
        alpaca_server: AlpacaServer, clock: SimClock) -> None:
    """Until a cancel lands the stop still holds the shares and an exit would be refused."""
    naps: list[float] = []
    b = AlpacaBroker(alpaca_server.api_keys(), clock, url_override=alpaca_server.url, timeout_s=0.3,
                     sleep=naps.append)
    alpaca_server.add_position("AAPL", 10, avg_price=100.0)
    alpaca_server.cancel_settles_after = 3
    b.submit(order("stop-1", Side.SELL, stop=90.0))
    b.cancel("stop-1")
    assert b.get_order("stop-1").status == OrderStatus.CANCELED  # type: ignore[union-attr]
    assert len(naps) == 3
    assert b.submit(order("exit-1", Side.SELL)).status == OrderStatus.ACCEPTED


def test_a_cancel_that_never_lands_gives_up_after_the_wait(alpaca_server: AlpacaServer,
                                                           clock: SimClock) -> None:
    naps: list[float] = []
    b = AlpacaBroker(alpaca_server.api_keys(), clock, url_override=alpaca_server.url, timeout_s=0.3,
                     cancel_wait_s=1.0, sleep=naps.append)
    alpaca_server.cancel_settles_after = 1_000
    b.submit(order("stuck-1"))
    b.cancel("stuck-1")  # returns rather than freezing the engine
    assert sum(naps) == pytest.approx(1.0)
    assert alpaca_server.order_by_coid("stuck-1")["status"] == "pending_cancel"  # type: ignore[index]


@pytest.mark.parametrize(("alpaca", "filled", "expected"), [
    ("new", 0, OrderStatus.NEW), ("accepted", 0, OrderStatus.ACCEPTED),
    ("pending_new", 0, OrderStatus.PENDING_NEW), ("accepted_for_bidding", 0, OrderStatus.PENDING_NEW),
    ("partially_filled", 3, OrderStatus.PARTIALLY_FILLED), ("done_for_day", 3, OrderStatus.DONE_FOR_DAY),
    ("pending_cancel", 0, OrderStatus.PENDING_CANCEL), ("pending_replace", 0, OrderStatus.PENDING_REPLACE),
    ("held", 0, OrderStatus.ACCEPTED), ("filled", 10, OrderStatus.FILLED), ("canceled", 0, OrderStatus.CANCELED),
    ("canceled", 4, OrderStatus.CANCELED), ("expired", 0, OrderStatus.EXPIRED),
    ("replaced", 0, OrderStatus.REPLACED), ("rejected", 0, OrderStatus.REJECTED),
    ("calculated", 10, OrderStatus.FILLED), ("calculated", 4, OrderStatus.DONE_FOR_DAY),
    ("something_new", 0, OrderStatus.ACCEPTED), ("submitted", 0, OrderStatus.ACCEPTED),
])
def test_every_alpaca_state_has_its_own_and_ended_ones_keep_their_fills_apart(
        alpaca: str, filled: float, expected: OrderStatus) -> None:
    status = to_order_status(alpaca, filled, 10)
    assert status == expected
    assert status.is_open == (alpaca not in ("filled", "canceled", "expired", "replaced", "rejected")
                              and not (alpaca == "calculated" and filled == 10))


def test_an_order_never_moves_back_a_stage() -> None:
    stages = [OrderStatus.INTENT, OrderStatus.PENDING_NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED]
    assert [s.stage for s in stages] == [0, 1, 1, 2]
    assert OrderStatus("submitted") is OrderStatus.ACCEPTED  # a record written before the states were split


def test_a_market_order_outside_hours_waits_for_the_open_as_alpaca_queues_it(
        alpaca_server: AlpacaServer, broker: AlpacaBroker) -> None:
    alpaca_server.open_market(False)
    alpaca_server.set_price("AAPL", 100.0)
    assert broker.submit(order("night-1")).status == OrderStatus.ACCEPTED
    assert alpaca_server.fill_open_orders(100.0, "AAPL") == 0  # nothing trades before the open
    alpaca_server.open_market()
    assert broker.get_order("night-1").status == OrderStatus.NEW
    alpaca_server.fill_open_orders(101.0, "AAPL")
    assert broker.get_order("night-1").status == OrderStatus.FILLED


def test_an_order_being_cancelled_can_still_fill(alpaca_server: AlpacaServer, clock: SimClock) -> None:
    broker = AlpacaBroker(alpaca_server.api_keys(), clock, url_override=alpaca_server.url, cancel_wait_s=0.0)
    alpaca_server.cancel_settles_after = 5
    broker.submit(order("slow-1", qty=10))
    broker.cancel("slow-1")  # returns while Alpaca still has it pending_cancel
    alpaca_server.fill_open_orders(100.0, "AAPL", qty=4)
    seen = broker.get_order("slow-1")
    assert (seen.status, seen.filled_qty) == (OrderStatus.PENDING_CANCEL, 4)


# ------------------------------------------------------------- errors
@pytest.mark.parametrize("fault", [Fault.http(500), Fault.http(503), Fault.http(504),
                                   Fault.rate_limited("7"), Fault.hang(), Fault.reset()],
                         ids=["500", "503", "504", "429", "hang", "reset"])
def test_outages_are_transient_and_tried_once(alpaca_server: AlpacaServer, broker: AlpacaBroker,
                                              fault: Fault) -> None:
    """One request per call: alpaca-py's own 429/504 retry loop is off, the router owns retries."""
    alpaca_server.fail_next(fault)
    started = time.monotonic()
    with pytest.raises(BrokerError) as err:
        broker.account()
    assert err.value.transient
    assert err.value.retry_after == (7.0 if fault.status == 429 else None)
    assert alpaca_server.request_count == 1
    assert time.monotonic() - started < 1.5  # the 0.3 s timeout, not alpaca-py's 3 s waits
    assert broker.account().equity == 100_000  # and the next call goes through


def test_retry_after_as_an_http_date(alpaca_server: AlpacaServer, broker: AlpacaBroker) -> None:
    alpaca_server.fail_next(Fault.rate_limited(email.utils.formatdate(time.time() + 30, usegmt=True)))
    with pytest.raises(BrokerError) as err:
        broker.positions()
    assert err.value.retry_after == pytest.approx(30, abs=2)


def test_insufficient_buying_power_is_a_permanent_rejection(alpaca_server: AlpacaServer,
                                                           broker: AlpacaBroker) -> None:
    alpaca_server.cash = 1_000.0
    alpaca_server.set_price("AAPL", 100.0)
    with pytest.raises(BrokerError) as err:
        broker.submit(order("big-1", qty=100))
    assert not err.value.transient
    assert "insufficient buying power" in str(err.value) and "403" in str(err.value)
    assert alpaca_server.orders == {}


def test_shares_held_by_a_stop_cannot_be_sold_again(alpaca_server: AlpacaServer, broker: AlpacaBroker) -> None:
    """As on Alpaca: an exit must cancel the protective stop before selling."""
    alpaca_server.add_position("AAPL", 10, avg_price=100.0)
    broker.submit(order("stop-1", Side.SELL, stop=90.0))
    with pytest.raises(BrokerError) as err:
        broker.submit(order("exit-1", Side.SELL))
    assert not err.value.transient and "insufficient qty available" in str(err.value)
    broker.cancel("stop-1")
    assert broker.submit(order("exit-2", Side.SELL)).status == OrderStatus.ACCEPTED


def test_an_unreadable_answer_is_an_unknown_outcome_not_a_rejection(alpaca_server: AlpacaServer,
                                                                   broker: AlpacaBroker) -> None:
    alpaca_server.fail_next(Fault.http(200, body='{"captive": "portal"}', after=True))
    with pytest.raises(BrokerError, match="cannot read") as err:
        broker.submit(order("odd-1"))
    assert err.value.transient
    assert broker.submit(order("odd-1")).broker_order_id  # the retry finds the booked order


@pytest.mark.parametrize("bad", [order("q-1", qty=0), replace(order("s-1"), order_type=OrderType.STOP)],
                         ids=["zero-qty", "stop-without-price"])
def test_orders_alpaca_cannot_take_are_refused_before_sending(alpaca_server: AlpacaServer,
                                                              broker: AlpacaBroker, bad: Order) -> None:
    with pytest.raises(BrokerError) as err:
        broker.submit(bad)
    assert not err.value.transient and alpaca_server.request_count == 0


def test_wrong_keys_are_a_permanent_error(alpaca_server: AlpacaServer, clock: SimClock) -> None:
    keys = ApiKeys(Secret("PKWRONGWRONGWRONG1"), Secret("not-the-secret-at-all"))
    b = AlpacaBroker(keys, clock, url_override=alpaca_server.url, timeout_s=0.3)
    with pytest.raises(BrokerError) as err:
        b.account()
    assert not err.value.transient and "401" in str(err.value)


@pytest.mark.parametrize("fault", [Fault.http(403, body="denied for key {key} secret {secret}"),
                                   Fault.http(502, body="<html>upstream {key}:{secret}</html>"),
                                   Fault.reset()], ids=["403-echo", "502-echo", "reset"])
def test_keys_never_reach_an_exception_or_a_log(alpaca_server: AlpacaServer, broker: AlpacaBroker,
                                                fault: Fault) -> None:
    """Even when a proxy echoes the request's keys into its error page."""
    key, secret = alpaca_server.key_id, alpaca_server.secret_key
    if fault.body:
        fault = Fault.http(fault.status, body=fault.body.format(key=key, secret=secret))
    alpaca_server.fail_next(fault)
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}", diagnose=True, backtrace=True)
    try:
        try:
            broker.account()
        except BrokerError as exc:
            logger.exception("account failed: {}", exc)
            caught = exc
    finally:
        logger.remove(sink)
    text = "\n".join(lines) + str(caught) + repr(caught) + repr(broker)
    assert key not in text and secret not in text
    assert caught.__cause__ is None and caught.__context__ is None  # no library exception attached
    assert "account failed" in text


# ------------------------------------------------------- construction
def test_live_trading_needs_the_live_gate(alpaca_server: AlpacaServer, clock: SimClock) -> None:
    keys = alpaca_server.api_keys()
    with pytest.raises(LiveGateError, match="live trading is locked"):
        AlpacaBroker(keys, clock, kind=BrokerKind.LIVE, url_override=alpaca_server.url)
    live = AlpacaBroker(keys, clock, kind=BrokerKind.LIVE, live_gate_passed=True,
                        url_override=alpaca_server.url, timeout_s=0.3)
    assert live.kind == BrokerKind.LIVE and live.account().equity == 100_000
    paper = AlpacaBroker(keys, clock, url_override=alpaca_server.url)
    assert paper.kind == BrokerKind.PAPER


def test_missing_keys_or_a_simulated_kind_are_refused(clock: SimClock) -> None:
    with pytest.raises(BrokerError, match="keys are missing"):
        AlpacaBroker(ApiKeys(Secret(""), Secret("")), clock)
    with pytest.raises(ValueError, match="PAPER or LIVE"):
        AlpacaBroker(ApiKeys(Secret("k" * 20), Secret("s" * 20)), clock, kind=BrokerKind.SIMULATED)


def test_keys_come_from_alpacas_environment_variables(alpaca_server: AlpacaServer, clock: SimClock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", alpaca_server.key_id)
    monkeypatch.setenv("APCA_API_SECRET_KEY", alpaca_server.secret_key)
    b = AlpacaBroker.from_env(None, clock, url_override=alpaca_server.url, timeout_s=0.3)
    assert b.account().cash == 100_000


# ------------------------------------------------------------ end to end
def test_router_over_a_faulty_alpaca_books_every_order_exactly_once(alpaca_server: AlpacaServer,
                                                                    clock: SimClock) -> None:
    """200 placements, 30% of requests failing every way the network can:
    no order booked twice, none lost, each recorded with Alpaca's id."""
    alpaca_server.auto_fill = True
    alpaca_server.set_price("AAPL", 10.0)
    alpaca_server.faults = random_faults(0.3, seed=11)
    broker = AlpacaBroker(alpaca_server.api_keys(), clock, url_override=alpaca_server.url, timeout_s=0.15)
    records = Recorder()
    router = OrderRouter(broker, records, clock, sleep=lambda s: None)
    ids = [f"e2e-{i:04d}" for i in range(200)]

    for coid in ids:
        router.place(order(coid, qty=1))
    for _ in range(50):
        if not router.queue:
            break
        router.retry_queued()

    alpaca_server.faults = None
    assert not router.queue
    assert alpaca_server.duplicates() == {}
    assert set(alpaca_server.created_per_coid) == set(ids)
    for coid in ids:
        rec = records.get_order(coid)
        assert rec is not None and rec.status in (OrderStatus.ACCEPTED, OrderStatus.FILLED)
        assert rec.broker_order_id == alpaca_server.order_by_coid(coid)["id"]  # type: ignore[index]
    assert alpaca_server.fault_count > 50 and router.retries > 20  # the faults really happened
    assert broker.positions()[0].qty == 200
    broker.close()
