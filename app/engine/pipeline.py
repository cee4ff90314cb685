"""One symbol's way from closed bars to signals: its history, its model, its signal.

A pipeline knows nothing of orders, positions or money: it hands each signal to
the portfolio-wide :class:`app.engine.core.ExecutionCore`, which decides what,
if anything, is traded. The bot keeps one per symbol of the watchlist.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from loguru import logger

from app.engine.events import AlertEvent, EventBus, PredictionEvent
from app.engine.history import History
from app.engine.records import Recorder
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, Side, TradingSignal

_NO_CLOSES = np.empty(0)  # for a model that does not read them (a backtest's precomputed answers)


def model_label(model: SignalModel) -> str:
    """What the desk calls a model: the rules model is the fallback when none is trained (or
    the trained one has no demonstrated edge: its label says so)."""
    return model.label or ("rules fallback" if model.name == "rules" else model.name)


class SignalPipeline:
    def __init__(self, symbol: str, model: SignalModel, records: Recorder, bus: EventBus) -> None:
        self.symbol = symbol
        self.model = model
        self.records = records
        self.bus = bus
        self.history = History()

    @property
    def model_label(self) -> str:
        return model_label(self.model)

    def predict(self, bar: Bar, now: datetime) -> ModelOutput | None:
        """The model's call on the history up to ``bar`` (just remembered), recorded and shown;
        None when the model has none yet, or failed (said, never raised: exits must go on)."""
        hist, model = self.history, self.model
        try:
            closes = hist.closes() if model.reads_closes else _NO_CLOSES
            out = model.predict(closes, hist.bars) if model.wants_bars else model.predict(closes)  # (older: closes)
        except Exception as exc:  # noqa: BLE001 - a broken model must not stop the exits
            logger.exception("Model {} failed on {}", self.model.name, self.symbol)
            self.bus.publish(AlertEvent("error", f"model failed on {self.symbol}: {exc}"))
            return None
        if out is None:
            return None
        self.records.prediction(bar.symbol, bar.time, out, now)
        if self.bus.active:
            label = ("rules fallback" if out.version.startswith("rules") and self.model.name != "rules"
                     else self.model_label)
            self.bus.publish(PredictionEvent(bar.symbol, bar.time, out.p_up, out.confidence, out.votes, label))
        return out

    @staticmethod
    def signal(bar: Bar, out: ModelOutput, now: datetime, bar_delta: timedelta) -> TradingSignal:
        """The signal a model's call makes, good until the end of the next bar."""
        side = Side.BUY if out.long_only or out.p_up > 0.5 else Side.SELL
        expires = bar.time + 2 * bar_delta
        t = bar.time  # %-formatted at once: a third of strftime's time, on every trade of a backtest
        sid = "%s-%04d%02d%02dT%02d%02d-%s" % (  # noqa: UP031 - one C call; format specs cost twice
            bar.symbol, t.year, t.month, t.day, t.hour, t.minute, side.value)
        return TradingSignal(bar.symbol, side, round(out.confidence, 4), bar.close, now, expires,
                             out.reasons, out.votes, sid, out.expected_bps)
