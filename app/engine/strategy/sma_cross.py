"""The reference strategy: long-only 10/20 simple-moving-average crossover.

Enter at the next open after the fast average crosses above the slow one;
exit at the next open after it crosses below. It says P(up) = 1 on an upward
cross, 0 on a downward cross and 0.5 (no trade) otherwise, so it trades
through exactly the same signal, risk and order path as every other model.
It exists to check the engine against other backtesters bar for bar.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar

_UP = ModelOutput(1.0, (("sma_cross", 1.0),), ("fast SMA crossed above slow",), "sma-cross-v1")
_DOWN = ModelOutput(0.0, (("sma_cross", 0.0),), ("fast SMA crossed below slow",), "sma-cross-v1")
_FLAT = ModelOutput(0.5, (("sma_cross", 0.5),), ("no cross",), "sma-cross-v1")


class SmaCrossModel(SignalModel):
    name = "sma_cross"

    def __init__(self, fast: int = 10, slow: int = 20) -> None:
        if not 1 <= fast < slow:
            raise ValueError("need 1 <= fast < slow")
        self.fast, self.slow = fast, slow
        self.min_bars = slow + 1

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if len(closes) < self.min_bars:
            return None
        w = closes[-self.slow - 1 :]
        prev_diff = w[-self.fast - 1 : -1].mean() - w[:-1].mean()
        diff = w[-self.fast :].mean() - w[1:].mean()
        if prev_diff < 0 < diff:  # strict, like backtesting.lib.crossover
            return _UP
        if prev_diff > 0 > diff:
            return _DOWN
        return _FLAT
