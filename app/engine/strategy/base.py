"""The Model port as the trading cycle sees it."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from app.engine.types import Bar

if TYPE_CHECKING:
    from app.engine.data.market import MarketTape


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """A model's call at a bar's close. The rules and momentum models state P(up), the chance
    the price rises (a SELL below 0.5). The trained ensemble meta-labels a primary rule: its
    ``p_up`` is the chance that the rule's long, entered now, ends profitable after costs
    (``long_only``: it is a buy or nothing), ``tradeable`` says whether the rule calls a buy
    at all, and ``expected_bps`` is that trade's expected return after costs."""

    p_up: float
    votes: tuple[tuple[str, float], ...]
    reasons: tuple[str, ...]
    version: str
    long_only: bool = False
    tradeable: bool = True
    expected_bps: float | None = None
    confidence: float = field(init=False, repr=False, compare=False)  # read on every bar: computed once

    def __post_init__(self) -> None:
        p = self.p_up
        object.__setattr__(self, "confidence", p if self.long_only or p >= 0.5 else 1.0 - p)


class SignalModel(abc.ABC):
    name: str = "model"
    label: str = ""  # what the desk calls it, when not its name (see pipeline.model_label)
    min_bars: int = 1
    wants_bars: bool = False  # True: predict() also needs the OHLCV bars (the trained ensemble)
    reads_closes: bool = True  # False: predict() looks its answer up by the last bar (precomputed)
    reads_market: bool = False  # True: bind_market() keeps the desk's market tape (the trained ensemble)

    def bind_market(self, tape: MarketTape) -> None:
        """The desk's market tape (see :mod:`app.engine.data.market`), for a model that
        ``reads_market``; the bot fills the tape only while one does."""
        return None

    @abc.abstractmethod
    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        """P(up) from the closes so far (oldest first), or None without enough history.
        ``bars`` (the same history as OHLCV) is given only to models that want it."""
