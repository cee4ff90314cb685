"""The built-in paper broker: fills against the simulated (or replayed) market.

Semantics, the same in the demo, replays and backtests:
- a market order fills at the next price the market shows: the next tick in a
  live simulation (``on_price``), or the next bar's open in a bar-by-bar run
  (``on_bar``), moved against the trader by ``slippage_bps``;
- a stop order triggers when the price trades at or through it and fills at
  the stop, or at the open when a bar gaps through it;
- commission is charged per share and/or as a fraction of the traded value;
- with ``participation`` set, an order takes at most that fraction of a bar's
  volume: a large order fills over several bars (``partially_filled`` until
  done), as a real one does in a thin market. Alpaca's paper engine also fills
  partially (https://docs.alpaca.markets/docs/paper-trading, "partial fills");
- with ``cancel_delay_s`` set, a cancel is ``pending_cancel`` for that long (the
  order can still fill meanwhile, and its shares stay held), as Alpaca's cancels
  are asynchronous (https://docs.alpaca.markets/docs/orders-at-alpaca, "pending_cancel").

The account (cash, positions, open orders) persists in the database through
an optional :class:`PaperBook`, so a paper account survives restarts.
"""

from __future__ import annotations

import itertools
import sys
import threading
import uuid
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from loguru import logger

from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import Clock
from app.engine.types import (
    Account,
    Bar,
    BrokerKind,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
)


class PaperBook(Protocol):
    """Where a paper account is kept between runs (see ``storage.paper``)."""

    def load(self) -> tuple[float, dict[str, Position], dict[str, Order]] | None: ...

    def save(self, cash: float, positions: dict[str, Position], orders: dict[str, Order]) -> str | None:
        """Keep the account; returns where it went when not where it belongs (a fallback)."""


KEEP_FINISHED = 500  # finished orders remembered (a resubmitted id is still recognised), saved on each change


class SimulatedBroker(Broker):
    kind = BrokerKind.SIMULATED
    supports_stop_orders = True

    def __init__(
        self,
        clock: Clock,
        starting_cash: float = 100_000.0,
        slippage_bps: float = 0.0,
        commission_per_share: float = 0.0,
        commission_rate: float = 0.0,
        book: PaperBook | None = None,
        participation: float | None = None,
        cancel_delay_s: float = 0.0,
        sole_owner: bool = False,
        whole_cash_at_fill: bool = False,
    ) -> None:
        if participation is not None and not 0.0 < participation <= 1.0:
            raise ValueError(f"participation must be in (0, 1], not {participation}")
        self._clock = clock
        self._sole_owner = sole_owner  # only the engine trades here: :meth:`revision` may be trusted
        # textbook (--plain) backtests only: a market entry buys as many whole shares as the cash
        # pays for at the fill price, as backtesting.py sizes at the next open
        self._whole_cash = whole_cash_at_fill
        self._revisions: dict[str, int] = {}
        self._unsaved = ""  # why the paper account's last save failed ("" when saved)
        self._participation = participation
        self._cancel_delay = timedelta(seconds=cancel_delay_s)
        self._cancel_due: dict[str, datetime] = {}  # pending cancels, and when they land
        self._slip = slippage_bps / 10_000.0
        self._commission = commission_per_share
        self._commission_rate = commission_rate
        self._book = book
        self._lock = threading.RLock()
        self._prices: dict[str, float] = {}
        self._ids = (f"sim-{run}-{k}" for run in [uuid.uuid4().hex[:8]] for k in itertools.count(1))
        self._cash = starting_cash
        self._positions: dict[str, Position] = {}
        self._orders: dict[str, Order] = {}
        loaded = book.load() if book else None
        if loaded:
            self._cash, self._positions, self._orders = loaded
        self._open: dict[str, Order] = {}
        self._open_of: dict[str, dict[str, Order]] = {}  # the same, by symbol: a bar matches only its own
        for o in self._orders.values():
            self._index(o)
        for o in self._open.values():  # cancels pending when the app stopped land at once
            if o.status == OrderStatus.PENDING_CANCEL:
                self._cancel_due[o.client_order_id] = clock.now()
        self.fills: list[Fill] = []

    # ----------------------------------------------------------------- port
    def account(self) -> Account:
        with self._lock:
            equity = self._cash + sum(p.qty * self._mark(p) for p in self._positions.values())
            return Account(cash=self._cash, equity=equity, buying_power=max(self._cash, 0.0),
                           day_start_equity=equity)

    def positions(self) -> list[Position]:
        with self._lock:
            return [replace(p, last_price=self._mark(p)) for p in self._positions.values()]

    def position(self, symbol: str) -> Position | None:
        with self._lock:
            p = self._positions.get(symbol)
            return None if p is None else p.marked(self._mark(p))

    def open_orders(self) -> list[Order]:
        with self._lock:
            if self._cancel_due:  # slow cancels only: no clock read on every call otherwise
                self._settle_cancels(self._clock.now())
            return list(self._open.values())

    def submit(self, order: Order) -> Order:
        with self._lock:
            existing = self._orders.get(order.client_order_id)
            if existing is not None:
                return existing
            if order.qty <= 0:
                raise BrokerError(f"rejected: quantity {order.qty} must be positive", transient=False)
            if order.order_type == OrderType.LIMIT and not (order.limit_price and order.limit_price > 0):
                raise BrokerError("rejected: a limit order needs a limit price above 0", transient=False)
            if order.side == Side.BUY and order.order_type in (OrderType.MARKET, OrderType.LIMIT):
                price = self._prices.get(order.symbol)
                slip = 1 + self._slip
                if order.order_type == OrderType.LIMIT:  # "the order's limit price multiplied by the order's
                    price, slip = order.limit_price, 1.0  # quantity" (Alpaca, Placing Orders: Buying Power)
                if price is not None and order.qty * price * slip > self._cash + 1e-6:
                    raise BrokerError("rejected: insufficient buying power", transient=False)
            accepted = replace(order, status=OrderStatus.NEW,
                               broker_order_id=next(self._ids))
            self._set(accepted)
            self._persist()
            return accepted

    def get_order(self, client_order_id: str) -> Order | None:
        with self._lock:
            if self._cancel_due:  # slow cancels only: no clock read on every call otherwise
                self._settle_cancels(self._clock.now())
            return self._orders.get(client_order_id)

    def cancel(self, client_order_id: str) -> None:
        with self._lock:
            o = self._orders.get(client_order_id)
            if o is None or not o.status.is_open or o.status == OrderStatus.PENDING_CANCEL:
                return
            if self._cancel_delay:
                self._set(replace(o, status=OrderStatus.PENDING_CANCEL))
                self._cancel_due[client_order_id] = self._clock.now() + self._cancel_delay
            else:
                self._set(replace(o, status=OrderStatus.CANCELED))
            self._persist()

    def _settle_cancels(self, now: datetime) -> None:
        for coid, due in list(self._cancel_due.items()):
            if now >= due:
                del self._cancel_due[coid]
                o = self._orders[coid]
                if o.status == OrderStatus.PENDING_CANCEL:
                    self._set(replace(o, status=OrderStatus.CANCELED))
                    self._persist()

    def last_price(self, symbol: str) -> float | None:
        return self._prices.get(symbol)

    @property
    def cash(self) -> float:
        return self._cash

    def held(self, symbol: str) -> float:
        """Shares held now (cheap: for equity curves in backtests)."""
        p = self._positions.get(symbol)
        return p.qty if p is not None else 0.0

    def holdings(self) -> dict[str, float]:
        """Shares held now, by symbol (cheap: a portfolio backtest's equity curve)."""
        return {s: p.qty for s, p in self._positions.items()}

    def fill_stranded(self, priced: Collection[str], time: datetime) -> bool:
        """Held symbols with no price in ``priced`` (the day's last bar time, in a backtest or a
        replay) whose data stopped: their orders (the end-of-day sell) fill at the last price
        known, as the market would have filled them, so nothing is held overnight, or to the
        end of a run, for want of data. True when there was one."""
        stranded = [s for s, qty in self.holdings().items() if qty and s not in priced and self._prices.get(s)]
        for symbol in stranded:
            self.on_price(symbol, self._prices[symbol], time)
        return bool(stranded)

    # ------------------------------------------------------- market events
    def on_price(self, symbol: str, price: float, time: datetime, volume: float | None = None) -> list[Fill]:
        """A new trade print in a live simulation: fill what it reaches (at most ``participation``
        of ``volume``, where both are known)."""
        with self._lock:
            self._prices[symbol] = price
            return self._match(symbol, price, price, price, time, volume)

    def on_bar(self, bar: Bar) -> list[Fill]:
        """A new bar in a bar-by-bar run: market orders fill at its open, stops
        inside its range; then the bar's close becomes the mark."""
        symbol = bar.symbol
        if not self._open_of.get(symbol) and not self._cancel_due:  # most bars: nothing to match
            self._prices[symbol] = bar.close  # one dict store, atomic: no lock to take
            return []
        with self._lock:
            fills = self._match(symbol, bar.open, bar.high, bar.low, bar.time, bar.volume)
            self._prices[symbol] = bar.close
            return fills

    # ------------------------------------------------------------ internal
    def _match(self, symbol: str, open_: float, high: float, low: float, time: datetime,
               volume: float | None = None) -> list[Fill]:
        fills: list[Fill] = []
        if self._cancel_due:
            self._settle_cancels(time)
        mine = self._open_of.get(symbol)
        if not mine:
            return fills
        room = None if self._participation is None or volume is None else self._participation * volume
        for o in list(mine.values()):
            px = self._fill_price(o, open_, high, low)
            if px is None:
                continue
            if room is not None and room < 1.0:
                break  # the bar's share of volume is used up: the rest waits for the next one
            fill = self._execute(o, px, time, room)
            if fill is not None and room is not None:
                room -= fill.qty
            if fill:
                fills.append(fill)
        if fills:
            self._persist()
        return fills

    def _fill_price(self, o: Order, open_: float, high: float, low: float) -> float | None:
        if o.order_type == OrderType.MARKET:
            slip = self._slip if o.side == Side.BUY else -self._slip
            return open_ * (1 + slip)
        if o.order_type == OrderType.LIMIT:  # at the limit or better, never with slippage past it
            limit = o.limit_price or 0.0
            if o.side == Side.BUY and low <= limit:
                return min(open_ * (1 + self._slip), limit)
            if o.side == Side.SELL and high >= limit:
                return max(open_ * (1 - self._slip), limit)
            return None
        stop = o.stop_price or 0.0
        if o.side == Side.SELL and low <= stop:
            return min(open_, stop)
        if o.side == Side.BUY and high >= stop:
            return max(open_, stop)
        return None

    def _execute(self, o: Order, price: float, time: datetime, room: float | None = None) -> Fill | None:
        left = o.qty - o.filled_qty
        qty = left if room is None else min(left, float(int(room)))  # whole shares of the volume share
        pos = self._positions.get(o.symbol)
        held = pos.qty if pos else 0.0
        if o.side == Side.SELL and held > 0 and qty > held:
            qty = left = held  # never sell more than held by accident (a stop after a close)
        if o.side == Side.SELL and held <= 0 and o.order_type == OrderType.STOP:
            self._set(replace(o, status=OrderStatus.CANCELED, reason=o.reason + "; nothing held"))
            return None
        cut = ""
        size = o.qty  # the order's size as filled: a textbook entry's is set at the fill
        if o.side == Side.BUY and held >= 0:  # a cash account: a buy never costs more than the cash
            each = price * (1 + self._commission_rate) + self._commission
            if self._whole_cash and held == 0 and o.order_type == OrderType.MARKET and not o.filled_qty:
                whole = float(int(max(self._cash, 0.0) * (1 - sys.float_info.epsilon) / each))
                if whole >= 1.0:
                    size = qty = left = whole
            affordable = max(self._cash, 0.0) / each
            affordable = affordable if qty != int(qty) else float(int(affordable + 1e-9))  # whole shares stay whole
            if qty > affordable + 1e-9:  # sized on an earlier price (the decision bar's close) than the fill
                if affordable < (1e-6 if qty != int(qty) else 1.0):
                    self._set(replace(o, qty=size,
                                      status=OrderStatus.REJECTED if not o.filled_qty else OrderStatus.CANCELED,
                                      reason=o.reason + "; insufficient buying power at the fill"))
                    return None
                qty, cut = affordable, "; the rest cancelled: more than the cash at the fill"
        commission = qty * self._commission + qty * price * self._commission_rate
        signed = qty if o.side == Side.BUY else -qty
        self._cash -= signed * price + commission
        new_qty = held + signed
        if abs(new_qty) < 1e-9:
            self._positions.pop(o.symbol, None)
        elif pos is None or (held > 0) != (new_qty > 0):
            self._positions[o.symbol] = Position(o.symbol, new_qty, price, price, time)
        elif abs(new_qty) > abs(held):
            avg = (pos.avg_price * held + price * signed) / new_qty
            self._positions[o.symbol] = replace(pos, qty=new_qty, avg_price=avg, last_price=price)
        else:
            self._positions[o.symbol] = replace(pos, qty=new_qty, last_price=price)
        filled = o.filled_qty + qty
        avg = (float(o.filled_avg_price or 0.0) * o.filled_qty + price * qty) / filled
        done = qty >= left - 1e-9
        partly = OrderStatus.PENDING_CANCEL if o.status == OrderStatus.PENDING_CANCEL else OrderStatus.PARTIALLY_FILLED
        if cut:  # filled as far as the cash goes; like Alpaca's canceled-after-a-partial-fill
            self._set(replace(o, qty=size, status=OrderStatus.CANCELED, filled_qty=filled, filled_avg_price=avg,
                              filled_at=time, reason=o.reason + cut))
        else:
            self._set(replace(o, qty=size, status=OrderStatus.FILLED if done else partly, filled_qty=filled,
                              filled_avg_price=avg, filled_at=time))
        fill = Fill(o.client_order_id, o.symbol, o.side, qty, price, time, commission)
        self.fills.append(fill)
        return fill

    def revision(self, symbol: str) -> int | None:
        """Bumped by every change of one of ``symbol``'s orders (a fill, which moves the position,
        included); None while a cancel is pending (it lands with the clock, unasked) or when
        others may trade here."""
        return self._revisions.get(symbol, 0) if self._sole_owner and not self._cancel_due else None

    def _set(self, o: Order) -> None:
        self._revisions[o.symbol] = self._revisions.get(o.symbol, 0) + 1
        self._orders[o.client_order_id] = o
        self._index(o)

    def _index(self, o: Order) -> None:
        if o.status.is_open:
            self._open[o.client_order_id] = o
            self._open_of.setdefault(o.symbol, {})[o.client_order_id] = o
        else:
            self._open.pop(o.client_order_id, None)
            self._open_of.get(o.symbol, {}).pop(o.client_order_id, None)

    def _mark(self, p: Position) -> float:
        return self._prices.get(p.symbol, p.last_price)

    def _forget_old(self) -> None:
        """Keep the open orders and the latest KEEP_FINISHED finished ones (what the paper book
        keeps on disk too): an account trading for weeks must not carry, and save, every order
        it ever had. Amortised: done when twice that many have gathered."""
        if len(self._orders) - len(self._open) <= 2 * KEEP_FINISHED:
            return
        finished = [k for k, o in self._orders.items() if not o.status.is_open]
        for k in finished[:-KEEP_FINISHED]:
            del self._orders[k]

    def _persist(self) -> None:
        """The paper account to its book on disk. A refused save leaves the account as it is
        in memory (an order in flight must not break halfway); the engine's record failing
        with it stops new positions."""
        self._forget_old()
        if self._book is None:
            return
        try:
            kept = self._book.save(self._cash, dict(self._positions), dict(self._orders))
        except Exception as exc:  # noqa: BLE001 - a full or read-only disk: said, never raised into an order
            if not self._unsaved.startswith("unsaved"):
                logger.critical("The paper account could not be saved anywhere ({}); it goes on in memory", exc)
            self._unsaved = f"unsaved: {exc}"
        else:
            if kept and not self._unsaved:  # the database refused; the account is in a file beside it
                logger.error("The paper account could not be saved to the database: {}", kept)
            self._unsaved = kept or ""
