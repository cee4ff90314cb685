"""The rule-based stand-in: a moving-average crossover turned into a probability.

P(up) is a logistic squash of the fast/slow SMA spread measured in units of
recent volatility, so a fresh, strong cross gives a confident signal and a
flat market gives ~0.5. It is transparent, not predictive: the GUI labels it
"rules fallback" whenever it is the model in charge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar


class RulesModel(SignalModel):
    name = "rules"

    def __init__(self, fast: int = 10, slow: int = 20, gain: float = 1.6) -> None:
        if not 1 < fast < slow:
            raise ValueError("need 1 < fast < slow")
        self.fast, self.slow, self.gain = fast, slow, gain
        self.min_bars = slow + 1

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if len(closes) < self.min_bars:
            return None
        window = closes[-self.slow - 1 :]
        fast = float(window[-self.fast :].mean())
        slow = float(window[-self.slow :].mean())
        rets = np.diff(np.log(window))
        vol = float(rets.std()) or 1e-9
        z = (fast / slow - 1.0) / (vol * math.sqrt(self.fast))
        z = max(-50.0, min(50.0, z))  # a perfectly smooth trend has ~zero volatility
        p_up = 1.0 / (1.0 + math.exp(-self.gain * z))
        p_up = min(max(p_up, 0.01), 0.99)
        trend = "above" if fast >= slow else "below"
        reason = f"SMA{self.fast} {fast:.2f} {trend} SMA{self.slow} {slow:.2f} ({z:+.2f} vol units)"
        return ModelOutput(p_up, (("rules", p_up),), (reason,), "rules-v1")
