"""A model whose answers were computed beforehand, for every bar at once.

Backtests use it for models that have a vectorised form (the SMA cross, the
momentum rule, the trained ensemble over causal features): the answer for a
bar is what the live model would say at that bar's close, looked up by the
bar's time, and the bot then trades on it through its usual cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar


class PrecomputedModel(SignalModel):
    wants_bars = True
    reads_closes = False  # the answer is found by the last bar's time: the closes array is not built

    def __init__(self, name: str, times: Sequence[datetime], outputs: Sequence[ModelOutput | None]) -> None:
        if len(times) != len(outputs):
            raise ValueError(f"{len(times)} bar times for {len(outputs)} answers")
        self.name = name
        self.min_bars = 1
        self._times = list(times)
        self._outputs = list(outputs)
        self._cursor = 0  # bars come in order: the next answer is usually the one after the last
        self._index: dict[datetime, int] | None = None

    @classmethod
    def from_probabilities(cls, name: str, times: Sequence[datetime], p_up: Sequence[float] | np.ndarray,
                           version: str) -> PrecomputedModel:
        """From P(up) per bar; a bar without a finite P(up) gets no answer."""
        return cls(name, times, [ModelOutput(float(p), ((name, float(p)),), (f"{name} {p:.2f}",), version)
                                 if np.isfinite(p) else None for p in p_up])

    @classmethod
    def from_trade_chances(cls, name: str, times: Sequence[datetime], p: Sequence[float] | np.ndarray,
                           primary: Sequence[bool] | np.ndarray, expected_bps: Sequence[float] | np.ndarray,
                           version: str) -> PrecomputedModel:
        """From a meta-labelling model's P(the primary rule's long ends profitable) per bar: a
        buy or nothing, and only where the rule calls a buy (see :class:`ModelOutput`)."""
        outs: list[ModelOutput | None] = []
        for q, fires, e in zip(p, primary, expected_bps, strict=True):
            if not np.isfinite(q):
                outs.append(None)
                continue
            exp = float(e) if np.isfinite(e) else None
            said = f"{name} P(trade profitable) {q:.2f}" + (f", expected {exp:+.1f} bps" if exp is not None else "")
            outs.append(ModelOutput(float(q), ((name, float(q)),), (said,), version, long_only=True,
                                    tradeable=bool(fires), expected_bps=exp))
        return cls(name, times, outs)

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if not bars:
            return None
        t = bars[-1].time
        i = self._cursor
        if i < len(self._times) and self._times[i] == t:
            self._cursor = i + 1
            return self._outputs[i]
        if self._index is None:
            self._index = {when: k for k, when in enumerate(self._times)}
        k = self._index.get(t)
        if k is None:
            return None
        self._cursor = k + 1
        return self._outputs[k]

    def answered(self) -> int:
        """How many bars have an answer."""
        return sum(o is not None for o in self._outputs)
