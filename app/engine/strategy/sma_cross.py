"""The reference strategy: long-only 10/20 simple-moving-average crossover.

Enter at the next open after the fast average crosses above the slow one;
exit at the next open after it crosses below. It says P(up) = 1 on an upward
cross, 0 on a downward cross and 0.5 (no trade) otherwise, so it trades
through exactly the same signal, risk and order path as every other model.
It exists to check the engine against other backtesters bar for bar.

Live, :meth:`SmaCrossModel.predict` reads the closes so far; a backtest asks
:meth:`SmaCrossModel.precompute` for every bar at once. Both run the same
arithmetic (:func:`sma`, summed in a fixed order), so they agree to the bit,
and each bar's answer uses only closes up to that bar.

Ties are ties. When the two averages are equal (a flat stretch of 20 equal
closes, or any window where they coincide), float sums still differ in the
last bits (±4e-14 at $100), and a strict comparison of those bits once made
false crossovers: 2,733 trades on a year of SPY minutes against
backtesting.py's 2,728, whose pandas rolling mean gives an exact 0 there. A
difference within :data:`TIE` of the price is a tie, and a tie is not a cross.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.strategy.precomputed import PrecomputedModel
from app.engine.types import Bar

_UP = ModelOutput(1.0, (("sma_cross", 1.0),), ("fast SMA crossed above slow",), "sma-cross-v1")
_DOWN = ModelOutput(0.0, (("sma_cross", 0.0),), ("fast SMA crossed below slow",), "sma-cross-v1")
TIE = 1e-9  # a difference of the averages below this fraction of the price is a tie: float noise
# is ~1e-15 of it, while cent prices give real differences of at least 0.01 / 20 (5e-6 of $100)

_FLAT = ModelOutput(0.5, (("sma_cross", 0.5),), ("no cross",), "sma-cross-v1")


def sma(closes: np.ndarray, n: int) -> np.ndarray:
    """Mean of every window of ``n`` closes, one per window end. Summed left to right
    within each window, so a window's value never depends on how long the array is."""
    m = len(closes) - n + 1
    if m <= 0:
        return np.empty(0)
    total = closes[:m].astype("float64", copy=True)
    for k in range(1, n):
        total += closes[k : k + m]
    return total / n


class SmaCrossModel(SignalModel):
    name = "sma_cross"

    def __init__(self, fast: int = 10, slow: int = 20) -> None:
        if not 1 <= fast < slow:
            raise ValueError("need 1 <= fast < slow")
        self.fast, self.slow = fast, slow
        self.min_bars = slow + 1

    def crosses(self, closes: np.ndarray) -> np.ndarray:
        """+1 (up), -1 (down) or 0 for each close from the ``min_bars``-th on
        (strict, like ``backtesting.lib.crossover``: from below to above; a tie is neither)."""
        closes = np.asarray(closes, dtype="float64")
        slow = sma(closes, self.slow)
        diff = sma(closes, self.fast)[self.slow - self.fast :] - slow
        diff[np.abs(diff) <= TIE * np.abs(slow)] = 0.0
        prev, cur = diff[:-1], diff[1:]
        return np.where((prev < 0) & (cur > 0), 1, np.where((prev > 0) & (cur < 0), -1, 0))

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if len(closes) < self.min_bars:
            return None
        return _OUTPUT[int(self.crosses(closes[-self.min_bars :])[-1])]

    def precompute(self, bars: Sequence[Bar]) -> PrecomputedModel:
        """Every bar's answer in one vectorised pass (what ``predict`` says at each close)."""
        closes = np.fromiter((b.close for b in bars), dtype="float64", count=len(bars))
        outputs = [None] * (self.min_bars - 1) + [_OUTPUT[c] for c in self.crosses(closes).tolist()]
        return PrecomputedModel(self.name, [b.time for b in bars], outputs[: len(bars)])


_OUTPUT = {1: _UP, -1: _DOWN, 0: _FLAT}
