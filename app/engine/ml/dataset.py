"""From clean bars to what the models learn from: features, the label and its horizon.

The label
---------
``y[t] = 1`` when the close ``h`` bars after bar ``t`` is strictly above the
close of bar ``t`` (a tie counts as "not up"), so the models' P(up) is
exactly the probability the bot acts on. The last ``h`` bars have no label
yet (NaN). On intraday bars a label whose horizon crosses the session close
is NaN too: the bot flattens before the close, so an overnight gap is a move
it can never hold and must not learn from.

The horizon
-----------
* ``5m``: **6 bars (30 minutes)**. On the PLTR 5-minute history the next-bar
  move is ~37 bps (one standard deviation) and dominated by bid-ask bounce and
  order-flow noise; 30 minutes roughly triples the typical move (~90 bps),
  so a correct call clears the simulated round-trip cost (2 x 2 bps) many
  times over. It also stays well inside a 78-bar session (only the last six
  bars of a day lose their label), fits between the 3 % initial stop and the
  end-of-day flatten, and still leaves ~4,400 labelled bars in 60 sessions.
  Longer horizons (1-2 hours) overlap more (fewer independent labels) and
  need wider purge gaps in walk-forward testing.
* ``1d``: **1 bar** (tomorrow's close). The bot re-decides on every bar, and
  with ~1,400 daily bars a longer, overlapping label would leave few
  independent samples.
* ``1m``/``15m``: 30 minutes as well (30 and 2 bars); ``1h``: one bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from app.engine.clock import NY
from app.engine.data.features import compute_features, feature_columns
from app.engine.data.frame import DataError, check_timeframe, is_intraday
from app.engine.data.service import read_clean
from app.engine.types import timeframe_of

HORIZON_SECONDS = 30 * 60  # intraday labels look 30 minutes ahead (README: the label)


def default_horizon(timeframe: str) -> int:
    seconds = check_timeframe(timeframe)
    return max(1, HORIZON_SECONDS // seconds) if timeframe_of(timeframe).intraday else 1


def feature_list(timeframe: str) -> list[str]:
    """The feature columns the data layer computes for this timeframe (a copy)."""

    return list(feature_columns(is_intraday(timeframe)))


def make_labels(close: np.ndarray, horizon: int, index: pd.DatetimeIndex | None = None,
                intraday: bool = False) -> np.ndarray:
    """1.0 / 0.0 for "the close ``horizon`` bars ahead is above this close", NaN
    where that close is not known yet or (intraday) lies in another session."""
    if horizon < 1:
        raise ValueError("horizon must be at least one bar")
    close = np.asarray(close, dtype="float64")
    n = len(close)
    y = np.full(n, np.nan)
    if n <= horizon:
        return y
    y[: n - horizon] = (close[horizon:] > close[: n - horizon]).astype("float64")
    if intraday and index is not None:
        days = pd.DatetimeIndex(index).tz_convert(NY).normalize().asi8
        crosses = days[horizon:] != days[: n - horizon]
        y[: n - horizon][crosses] = np.nan
    return y


@dataclass(frozen=True)
class Dataset:
    """Features and labels for every bar, aligned by row (oldest first).

    Rows are kept even where features are still warming up (NaN): the
    sequence model needs the bars in order, and each model decides which rows
    it can use. ``X`` is float64 with one column per ``columns`` entry.
    """

    index: pd.DatetimeIndex
    X: np.ndarray
    y: np.ndarray
    close: np.ndarray
    columns: list[str]
    horizon: int
    timeframe: str

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labelled(self) -> int:
        return int(np.isfinite(self.y).sum())


def build_dataset(frame: pd.DataFrame, timeframe: str, horizon: int | None = None) -> Dataset:
    """Features (strictly causal, from the data layer) and labels for a clean frame."""

    intraday = is_intraday(timeframe)
    h = horizon or default_horizon(timeframe)
    feats = compute_features(frame, intraday)
    columns = feature_list(timeframe)
    close = frame["close"].to_numpy(dtype="float64")
    index = pd.DatetimeIndex(frame.index)
    y = make_labels(close, h, index, intraday)
    return Dataset(index, feats[columns].to_numpy(dtype="float64"), y, close, columns, h, timeframe)


def load_csv_bars(path: str | Path, timeframe: str, symbol: str | None = None) -> pd.DataFrame:
    """Read and clean a CSV of bars; a file holding another timeframe is refused
    with a message that says which one it holds. ``symbol`` picks one stock's rows
    from a file with a symbol column (a model is trained on one stock)."""

    frame = read_clean(path, timeframe, symbol=symbol)[1].frame
    if frame.empty:
        raise DataError(f"{Path(path).name} has no usable bars after cleaning")
    return frame
