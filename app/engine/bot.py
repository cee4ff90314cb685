"""The trading bot: the portfolio-wide execution core, and one signal pipeline per symbol.

The same object runs the demo, live paper trading, replays and backtests; only
the clock, the broker and the recorder passed in differ. A closed bar goes to
its symbol's :class:`SignalPipeline` (history, model, signal), and the signal to
the :class:`ExecutionCore` (orders, positions, stops, the day); prices and the
clock go to the core alone.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from loguru import logger

from app.engine.broker.base import Broker
from app.engine.clock import Clock, MarketCalendar
from app.engine.core import ExecutionCore
from app.engine.data.market import MarketTape
from app.engine.events import AlertEvent, BarEvent, EventBus, StatusEvent
from app.engine.pipeline import SignalPipeline, model_label
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, EngineStatus, Side, TradingMode, TradingSignal, timeframe_of

_INF = math.inf
SPIKE_EXTREME = 10.0  # a price this many times off needs two confirmations


def valid_bar(b: Bar) -> bool:
    """Finite, positive prices and a finite, non-negative volume (NaN fails every comparison)."""
    return (0.0 < b.open < _INF and 0.0 < b.high < _INF and 0.0 < b.low < _INF and 0.0 < b.close < _INF
            and 0.0 <= b.volume < _INF)


class TradingBot:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        broker: Broker,
        model: SignalModel,
        records: Recorder,
        bus: EventBus | None = None,
        calendar: MarketCalendar | None = None,
        data_source: str = "simulated",
        sleep: Callable[[float], None] = _time.sleep,
        models: Callable[[str], SignalModel] | None = None,
    ) -> None:
        """``model`` serves every symbol unless ``models`` gives a symbol its own."""
        self.settings = settings
        self.clock = clock
        self.broker = broker
        self._model = model
        self.records = records
        self.bus = bus or EventBus()
        self.calendar = calendar  # None: no session rules (24h market, no EOD)
        self.data_source = data_source
        self.core = ExecutionCore(settings, clock, broker, records, self.bus, calendar, sleep)
        self.pipelines: dict[str, SignalPipeline] = {}
        self._models = models
        self.market = MarketTape()  # the watchlist's move per bar time: the models' market context
        self._market_read = False  # a model reads the tape: only then is every bar recorded on it
        self._bind(model)
        self.record_quiet_signals = True  # record signals below the approval threshold too
        self.removed: set[str] = set()  # taken off the watchlist while running: sells only, no entries
        self._suspect: dict[str, tuple[float, int]] = {}  # a price far off the last one, and its confirmations

    # ------------------------------------------------------------ lifecycle
    @property
    def bar_minutes(self) -> int:
        return timeframe_of(self.settings.timeframe).minutes

    @property
    def mode(self) -> TradingMode:
        return self.core.entries.mode

    @property
    def pending(self) -> dict[str, TradingSignal]:
        """Signals waiting for the user's approval, by signal id."""
        return self.core.pending

    @property
    def model(self) -> SignalModel:
        """The model every symbol without one of its own uses."""
        return self._model

    @model.setter
    def model(self, model: SignalModel) -> None:
        self._bind(model)
        for p in self.pipelines.values():
            if p.model is self._model:
                p.model = model
        self._model = model

    def pipeline(self, symbol: str) -> SignalPipeline:
        """``symbol``'s pipeline, made on its first bar."""
        p = self.pipelines.get(symbol)
        if p is None:
            model = self._models(symbol) if self._models is not None else self._model
            self._bind(model)
            p = self.pipelines[symbol] = SignalPipeline(symbol, model, self.records, self.bus)
        return p

    def _bind(self, model: SignalModel) -> None:
        if model.reads_market:
            model.bind_market(self.market)
            self._market_read = True

    def warm_up(self, bars: list[Bar]) -> None:
        """Feed history so the models have context; nothing is traded on it."""
        for b in filter(valid_bar, bars):
            self._remember(b)

    def start(self) -> None:
        self.core.start()
        self._publish_status()

    # --------------------------------------------------------- market input
    def on_bar_close(self, bar: Bar) -> ModelOutput | None:
        """Run the trading cycle for a bar that has just closed (one symbol: a backtest's and
        a one-symbol desk's case, kept free of the ranking's lists)."""
        pipeline = self._take(bar)
        if pipeline is None:
            return None
        self.core.before_signals()
        now = self.clock.now()
        out = pipeline.predict(bar, now)
        sig = self._signal(bar, pipeline, out, now)
        if sig is not None:
            self.core.submit(sig)
        self._publish_cycle()
        return out

    def on_bars_close(self, bars: Sequence[Bar]) -> list[ModelOutput | None]:
        """Run one trading cycle for bars of several symbols that closed together (one bar
        time of the watchlist): every model speaks first, then the signals go to the core
        ranked, exits first (they free room), then entries by confidence, so the strongest
        are sized against the position count, exposure and buying power still free.
        Returns each bar's model output (None: invalid bar, no call, or a failed model)."""
        taken = [(bar, self._take(bar)) for bar in bars]
        if all(p is None for _, p in taken):
            return [None] * len(bars)
        self.core.before_signals()
        now = self.clock.now()
        outs: list[ModelOutput | None] = []
        signals: list[tuple[TradingSignal, float]] = []  # with the model's unrounded confidence, to rank
        for bar, pipeline in taken:
            out = pipeline.predict(bar, now) if pipeline is not None else None
            outs.append(out)
            sig = self._signal(bar, pipeline, out, now) if pipeline is not None else None
            if sig is not None and out is not None:
                signals.append((sig, out.confidence))
        for sig, _ in sorted(signals, key=lambda sc: (sc[0].side != Side.SELL, -sc[1], sc[0].symbol)):
            self.core.submit(sig)
        self._publish_cycle()
        return outs

    def _take(self, bar: Bar) -> SignalPipeline | None:
        """A closed bar into its symbol's history (and on the screen); None for an invalid one."""
        if not valid_bar(bar):  # a NaN would reach the model's history, and stay there
            logger.warning("Ignoring invalid bar for {} at {}: {}", bar.symbol, bar.time, bar)
            return None
        if not self._plausible(bar.symbol, bar.close):
            return None
        pipeline = self._remember(bar)
        if self.bus.active:
            self.bus.publish(BarEvent(bar, closed=True))
        return pipeline

    def _signal(self, bar: Bar, pipeline: SignalPipeline, out: ModelOutput | None,
                now: datetime) -> TradingSignal | None:
        """The signal a model's call makes; none for a backtest's calls that could never trade
        (it keeps no record of them)."""
        if out is None or not out.tradeable:
            return None  # a meta-labelling model's primary rule calls no trade: nothing to ask
        if not self.record_quiet_signals and out.confidence < self.settings.approval_threshold:
            return None
        sig = pipeline.signal(bar, out, now, self.core.book.bar_delta)
        if sig.side == Side.BUY and bar.symbol in self.removed:
            return None  # off the watchlist: what it holds may still be sold, nothing more is bought
        return sig

    def _publish_cycle(self) -> None:
        if not self.bus.active:  # a backtest's bus has no listener: nothing to build, on every bar
            return
        self.core.book.publish_portfolio()
        self._publish_status()

    def _remember(self, bar: Bar) -> SignalPipeline:
        pipeline = self.pipelines.get(bar.symbol) or self.pipeline(bar.symbol)  # a bar's hot path
        pipeline.history.append(bar)
        if self._market_read:  # a backtest of the rules model pays nothing for it
            self.market.record(bar)
        book = self.core.book
        book.last_prices[bar.symbol] = bar.close
        book.last_bar_end[bar.symbol] = bar.time + book.bar_delta
        return pipeline

    def on_price(self, symbol: str, price: float) -> None:
        """A new price between bars (the latest trade): re-price, then the clock's checks."""
        self.on_prices({symbol: price})

    def on_prices(self, prices: Mapping[str, float]) -> None:
        """New prices between bars (the latest trades of the watchlist): re-price them all,
        then the clock's checks once (they run on time even when every price was refused)."""
        for symbol, price in prices.items():
            if not (math.isfinite(price) and price > 0):
                logger.warning("Ignoring invalid price {} for {}", price, symbol)
                continue
            if self._plausible(symbol, price):
                self.core.book.last_prices[symbol] = price
        self.on_clock()

    def _plausible(self, symbol: str, price: float) -> bool:
        """False for a price more than ``bad_print_factor`` times off the last one known (3x by
        default), until later prices
        near it confirm it: a bad print (0.0001, 9,999,999) must not "hit" a stop or set a
        trailing stop in the millions, while a real gap is confirmed by the next price. A jump
        beyond SPIKE_EXTREME (no listed stock moves 10x between two prices) needs two more:
        bad prints come in pairs too."""
        last = self.core.book.last_prices.get(symbol)
        spike = self.settings.bad_print_factor
        if last is None or 1.0 / spike <= price / last <= spike:
            if self._suspect:  # rare: a price held back earlier
                self._suspect.pop(symbol, None)
            return True
        seen = self._suspect.get(symbol)
        jump = max(price / last, last / price)
        if seen is not None and 0.9 <= price / seen[0] <= 1.1:
            if seen[1] + 1 >= (2 if jump >= SPIKE_EXTREME else 1):
                logger.warning("{}: {} confirmed after a jump from {}", symbol, price, last)
                self._suspect.pop(symbol)
                return True
            self._suspect[symbol] = (seen[0], seen[1] + 1)
            return False
        if seen is None:
            msg = f"{symbol}: ignoring a price of {price:g} ({price / last:.3g}x the last, {last:g}) until confirmed"
            logger.warning(msg)
            self.bus.publish(AlertEvent("warning", msg))
        self._suspect[symbol] = (price, 0)
        return False

    def on_clock(self) -> None:
        """The checks that run on time, new data or not (see :meth:`ExecutionCore.on_clock`)."""
        self.core.on_clock()
        self.core.book.publish_portfolio()
        self._publish_status()

    def on_trade_updates(self) -> None:
        """The broker pushed order reports (a fill, a cancel): acted on now."""
        if self.core.on_trade_updates():
            self.core.book.publish_portfolio()
            self._publish_status()

    # -------------------------------------------------------- user commands
    def approve(self, signal_id: str) -> str:
        return self.core.approve(signal_id)

    def reject(self, signal_id: str) -> None:
        self.core.reject(signal_id)

    def set_mode(self, mode: TradingMode) -> None:
        self.core.set_mode(mode)
        self._publish_status()

    def update_settings(self, settings: Settings) -> None:
        now_watched = set(settings.watchlist)
        self.removed = (self.removed | (set(self.settings.watchlist) - now_watched)) - now_watched
        self.settings = settings
        self.core.update_settings(settings)
        for m in {id(m): m for m in [self.model, *(p.model for p in self.pipelines.values())]}.values():
            if hasattr(m, "update_settings"):  # new ensemble weights take effect now
                m.update_settings(settings)
        self._publish_status()

    def flatten_all(self, reason: str = "flatten all") -> list[str]:
        return self.core.flatten_all(reason)

    def close_position(self, symbol: str) -> str:
        return self.core.close_position(symbol)

    def move_stop(self, symbol: str, stop: float, looser_ok: bool = False) -> str:
        """A stop dragged on the chart: below the market, and looser than the initial stop only when
        the user confirmed; what happened, in words."""
        out = self.core.move_stop(symbol, stop, looser_ok)
        self._publish_cycle()
        return out

    def manual_order(self, symbol: str, side: Side, qty: float | None = None, amount: float | None = None,
                     limit: float | None = None) -> str:
        """The order ticket: a buy of ``qty`` shares or ``amount`` dollars, at market or at a
        ``limit``, or a sell of the holding, through the same risk rules as every entry; what
        happened, in words."""
        out = self.core.manual_order(symbol, side, qty, amount, limit)
        self._publish_cycle()
        return out

    def adopt(self, symbol: str) -> str:
        return self.core.adopt(symbol)

    # ------------------------------------------------------------ status
    def data_stale(self, symbol: str | None = None) -> bool:
        return self.core.book.data_stale(symbol)

    def status(self) -> EngineStatus:
        now = self.clock.now()
        is_open, change = True, None
        if self.calendar is not None:
            is_open = self.calendar.is_open(now)
            change = self.calendar.next_change(now)
        model = model_label(self.model)
        day = self.core.day
        return EngineStatus(
            mode=self.mode, broker=self.broker.kind, data_source=self.data_source, market_open=is_open,
            now=now, next_change=change, connected=self.core.connected, data_stale=self.data_stale(),
            circuit_breaker=day.breaker, model=model, round_trips_today=day.round_trips,
        )

    def _publish_status(self) -> None:
        if self.bus.active:
            self.bus.publish(StatusEvent(self.status()))
