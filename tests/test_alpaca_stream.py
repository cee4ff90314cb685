"""Fills as they happen: alpaca-py's real TradingStream against the loopback server's
trade-updates websocket, with polling as the fallback when the stream is down or lags."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from alpaca_desk import SYMBOL, AlpacaDesk, Pushed, streaming
from alpaca_desk import holding as holding_pltr
from alpaca_server import AlpacaServer

MakeDesk = Callable[..., tuple[AlpacaDesk, Pushed]]


@pytest.fixture
def streaming_desk(alpaca_server: AlpacaServer) -> Iterator[MakeDesk]:
    """Makes desks whose broker follows the stream: ``holding=True`` for one holding PLTR at 50
    under its 48.50 stop."""
    made: list[AlpacaDesk] = []

    def make(server: AlpacaServer, holding: bool = False) -> tuple[AlpacaDesk, Pushed]:
        desk = holding_pltr(server) if holding else AlpacaDesk(server)
        made.append(desk)
        return desk, streaming(desk)

    yield make
    for desk in made:
        desk.broker.close()  # the stream's thread stops before the server goes


def order_reads(server: AlpacaServer) -> int:
    return sum(n for route, n in server.requests.items() if route.startswith("GET /v2/orders")
               and route != "GET /v2/orders")


def test_a_fill_pushed_by_the_stream_is_booked_and_protected_without_a_poll(
        alpaca_server: AlpacaServer, streaming_desk: MakeDesk) -> None:
    desk, pushed = streaming_desk(alpaca_server)
    desk.close_bar(20.0, p_up=0.95)  # the entry goes out and waits at Alpaca
    (entry,) = desk.orders("buy")
    seen = pushed.count
    reads = order_reads(alpaca_server)

    alpaca_server.fill_open_orders(20.0, SYMBOL)
    # the entry's own "new" update may still be on its way (a loaded host): each push is applied as
    # the desk's worker does, until the fill's has come
    for k in range(1, 4):
        pushed.wait(seen + k)
        desk.bot.on_trade_updates()  # what the desk's worker does when the stream says so
        if desk.position is not None:
            break

    assert desk.position is not None and desk.position.qty == float(entry["qty"])
    assert desk.stop_cover() == desk.held() == float(entry["qty"]), "the pushed fill got no stop"
    assert order_reads(alpaca_server) == reads, "the fill was learnt by polling, not from the stream"
    assert desk.records.get_order(entry["client_order_id"]).filled_qty == float(entry["qty"])


def test_a_stop_fill_pushed_between_checks_is_booked_as_a_trade_at_once(
        alpaca_server: AlpacaServer, streaming_desk: MakeDesk) -> None:
    desk, pushed = streaming_desk(alpaca_server, holding=True)
    assert desk.stop_cover() == desk.held() > 0
    seen = pushed.count
    desk.server.set_price(SYMBOL, 48.0)
    alpaca_server.fill_open_orders(48.0, SYMBOL)  # the broker's stop sells
    pushed.wait(seen + 1)
    desk.bot.on_trade_updates()
    assert desk.position is None and len(desk.records.trades) == 1
    assert desk.records.trades[0].exit_reason == "stop loss"


def test_updates_lost_while_the_stream_was_down_are_found_by_the_poll(
        alpaca_server: AlpacaServer, streaming_desk: MakeDesk) -> None:
    desk, _ = streaming_desk(alpaca_server, holding=True)
    stream = alpaca_server.stream
    assert stream is not None

    stream.disconnect()  # the stop fills while the stream is down: its update is lost
    alpaca_server.fill_open_orders(48.0, SYMBOL)
    assert stream.wait_listening(connections=2), "alpaca-py did not reconnect"
    desk.check(seconds=5)  # a new connection: the check polls every open order
    assert desk.position is None and len(desk.records.trades) == 1


def test_late_and_repeated_updates_never_book_a_fill_twice(
        alpaca_server: AlpacaServer, streaming_desk: MakeDesk) -> None:
    desk, pushed = streaming_desk(alpaca_server)
    stream = alpaca_server.stream
    assert stream is not None
    stream.paused = True  # the stream lags: its updates arrive after the poll has booked the fill
    desk.close_bar(20.0, p_up=0.95)
    alpaca_server.fill_open_orders(20.0, SYMBOL, qty=400)
    alpaca_server.fill_open_orders(20.5, SYMBOL)
    desk.check()  # an entry is working: the check polls, and books all of it
    qty = desk.position.qty if desk.position else 0.0
    assert qty > 400
    seen = pushed.count
    stream.resume()  # new, partial_fill, fill... all older than the record now
    pushed.wait(seen + 3)
    desk.bot.on_trade_updates()
    assert desk.position is not None and desk.position.qty == qty == desk.held()
    assert desk.stop_cover() == qty
