"""A model whose answers were computed beforehand, for every bar at once.

Backtests use it for models that have a vectorised form (the SMA cross, the
momentum rule, the trained ensemble over causal features): the answer for a
bar is what the live model would say at that bar's close, looked up by the
bar's time, and the bot then trades on it through its usual cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar


class PrecomputedModel(SignalModel):
    wants_bars = True

    def __init__(self, name: str, outputs: dict[datetime, ModelOutput]) -> None:
        self.name = name
        self.min_bars = 1
        self._outputs = outputs

    @classmethod
    def from_probabilities(cls, name: str, p_up: dict[datetime, float], version: str) -> PrecomputedModel:
        """From P(up) per bar time; bars without a finite P(up) get no answer."""
        return cls(name, {t: ModelOutput(float(p), ((name, float(p)),), (f"{name} {p:.2f}",), version)
                          for t, p in p_up.items() if np.isfinite(p)})

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if not bars:
            return None
        return self._outputs.get(bars[-1].time)

    def __len__(self) -> int:
        return len(self._outputs)
