"""What the chart shows for each symbol of the watchlist, so switching symbols is instant.

The engine reports every symbol's bars, P(up), signals, fills and stops; the chart
shows one symbol at a time. :class:`ChartBook` keeps each symbol's recent share of
them (bounded) and the latest price of each, and hands the chart the chosen
symbol's: on a switch it rebuilds the chart from that symbol's own record, so
one symbol's markers never land on another's candles.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime

from app.engine.types import Bar, Position
from app.widgets.chart import CandleChart

KEEP_BARS = 10_000  # per symbol: about 128 sessions of 5-minute bars
KEEP_PREDICTIONS = 5_000
KEEP_MARKERS = 500


class ChartBook:
    def __init__(self, chart: CandleChart, symbol: str) -> None:
        self.chart = chart
        self.symbol = symbol
        self.bars: dict[str, deque[Bar]] = {}
        self.predictions: dict[str, deque[tuple[datetime, float]]] = {}
        self.markers: dict[str, dict[str, tuple[str, datetime, float, str]]] = {}
        self.stops: dict[str, list[tuple[float, bool]]] = {}
        self.prices: dict[str, float] = {}  # each symbol's latest price (closed or forming bar)
        chart.symbol_label.setText(symbol)

    # ------------------------------------------------------------ inputs
    def set_history(self, bars: Iterable[Bar]) -> None:
        for b in bars:
            self._keep(b)
        self.chart.set_history(list(self.bars.get(self.symbol, ())))

    def add_bars(self, bars: Sequence[Bar]) -> None:
        for b in bars:
            self._keep(b)
        mine = tuple(b for b in bars if b.symbol == self.symbol)
        if mine:
            self.chart.add_bars(mine)

    def forming(self, bar: Bar) -> None:
        self.prices[bar.symbol] = bar.close
        if bar.symbol == self.symbol:
            self.chart.set_forming(bar)
            self.chart.set_last_price(bar.close)  # the tag says the latest trade, as the watchlist does

    def prediction(self, symbol: str, time: datetime, p_up: float) -> None:
        self.predictions.setdefault(symbol, deque(maxlen=KEEP_PREDICTIONS)).append((time, p_up))
        if symbol == self.symbol:
            self.chart.add_prediction(time, p_up)

    def marker(self, symbol: str, time: datetime, price: float, kind: str, key: str = "") -> None:
        """A signal (``key``: its id, so a later status replaces it) or a fill on ``symbol``."""
        marks = self.markers.setdefault(symbol, {})
        key = key or f"{time.isoformat()}-{kind}-{price}"
        marks.pop(key, None)
        marks[key] = (key, time, price, kind)
        while len(marks) > KEEP_MARKERS:
            marks.pop(next(iter(marks)))
        if symbol == self.symbol:
            self.chart.add_signal_marker(time, price, kind, key=key)

    def positions(self, positions: Sequence[Position]) -> None:
        self.stops = {}
        for p in positions:
            if p.stop_price:
                self.stops.setdefault(p.symbol, []).append((p.stop_price, p.trailing_active))
        self.chart.set_stops(self.stops.get(self.symbol, []))

    # ------------------------------------------------------------ the switch
    def select(self, symbol: str) -> None:
        """Chart ``symbol`` from its own record: candles, P(up), markers, stops."""
        if symbol == self.symbol:
            return
        self.symbol = symbol
        self.chart.symbol_label.setText(symbol)
        self.chart.set_history(list(self.bars.get(symbol, ())))
        if symbol in self.prices:
            self.chart.set_last_price(self.prices[symbol])
        self.chart.set_annotations(list(self.predictions.get(symbol, ())),
                                   list(self.markers.get(symbol, {}).values()))
        self.chart.set_stops(self.stops.get(symbol, []))

    def _keep(self, b: Bar) -> None:
        kept = self.bars.setdefault(b.symbol, deque(maxlen=KEEP_BARS))
        if kept and b.time <= kept[-1].time:
            return  # a bar already kept (the history of a symbol added twice)
        kept.append(b)
        self.prices[b.symbol] = b.close
