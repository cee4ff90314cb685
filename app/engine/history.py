"""What the bot remembers of one symbol: its last closes and bars.

Closes live in a NumPy buffer twice the window, written in place; when it is
full the last window is copied to the front. Appending is O(1) amortised and
the model reads a view, so a cycle costs no copy of the history, which is what
lets a backtest push 100k+ bars per second through the live trading cycle.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from app.engine.types import Bar

HISTORY = 600  # bars a model can see


class History:
    __slots__ = ("_buf", "_n", "_read_only", "bars", "size")

    def __init__(self, size: int = HISTORY) -> None:
        if size < 1:
            raise ValueError("history size must be at least 1")
        self.size = size
        self.bars: deque[Bar] = deque(maxlen=size)
        self._buf = np.empty(2 * size)
        self._read_only = self._buf.view()  # what models see: the same memory, not writable
        self._read_only.flags.writeable = False
        self._n = 0

    def append(self, bar: Bar) -> None:
        n = self._n
        if n == 2 * self.size:
            self._buf[: self.size] = self._buf[self.size :]
            n = self.size
        self._buf[n] = bar.close
        self._n = n + 1
        self.bars.append(bar)

    def closes(self) -> np.ndarray:
        """The last ``size`` closes, oldest first: a read-only view, valid until the next append."""
        n = self._n
        return self._read_only[max(0, n - self.size) : n]

    def __len__(self) -> int:
        return min(self._n, self.size)
