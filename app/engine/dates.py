"""How the user said slashed dates in CSV files read (``--dayfirst``, ``--monthfirst``).

One process-wide choice rather than an argument threaded through every reader: the
command line sets it once, and every CSV read honours it, on any thread (the window
imports files on its engine thread). Kept free of pandas: the window's start-up imports it.
"""

from __future__ import annotations


class DateOrder:
    """``"dmy"`` or ``"mdy"`` when the user said how 04/03/2025 reads; ``""`` to infer it."""

    def __init__(self) -> None:
        self._order = ""

    def get(self) -> str:
        return self._order

    def set(self, order: str) -> None:
        if order not in ("", "dmy", "mdy"):
            raise ValueError(f"date order {order!r}: 'dmy', 'mdy' or '' (infer)")
        self._order = order


DATE_ORDER = DateOrder()
