"""From clean bars to what the models learn from: features, the label and what it reads.

The label is the bot's own trade (see :mod:`app.engine.ml.labels`): ``y[t] = 1`` when a
long entered at the open after bar ``t`` and walked with the desk's stop, trailing stop,
take-profit and end-of-day flatten ended with a return above its costs. ``ret`` keeps that
return, ``exit_pos`` the bar it ended in, and ``primary`` whether the transparent primary
rule (10-bar SMA above 20-bar) called a buy at ``t``: the models meta-label that rule, so
their calibrated probability is "how often such a trade made money". Intraday labels
never cross the session's close; daily bars hold from the next open to that day's close.

``horizon`` is how far any label reads past its bar (the purge the walk-forward needs);
``train --horizon N`` adds a time stop of N bars to the trades, for research: the desk
holds to its exits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from app.engine.data.features import compute_features, feature_columns
from app.engine.data.frame import DataError, check_timeframe, is_intraday
from app.engine.data.market import CONTEXT_FEATURES, context_features, market_returns
from app.engine.data.service import read_clean
from app.engine.ml.labels import TradeRules, primary_signal, trade_outcomes
from app.engine.types import timeframe_of

SESSION_SECONDS = int(6.5 * 3600)  # a regular NYSE session


def session_reach(timeframe: str) -> int:
    """The most bars a label can read ahead before the data says: a regular session's bars
    intraday (trades are flattened by its close), one bar on daily and longer bars."""
    seconds = check_timeframe(timeframe)
    return max(1, SESSION_SECONDS // seconds) if timeframe_of(timeframe).intraday else 1


def feature_list(timeframe: str) -> list[str]:
    """The columns a model reads at this timeframe: the symbol's own indicators, then the
    market context (see :mod:`app.engine.data.market`)."""

    return list(feature_columns(is_intraday(timeframe))) + CONTEXT_FEATURES


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
    horizon: int  # the most bars a label reads past its own (the purge)
    timeframe: str
    ret: np.ndarray  # the labelled trade's return after costs (a fraction; NaN where unknown)
    exit_pos: np.ndarray  # the bar each labelled trade ended in (-1 where unknown)
    primary: np.ndarray  # the primary rule calls a buy at this bar's close
    rules: TradeRules

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labelled(self) -> int:
        return int(np.isfinite(self.y).sum())

    @property
    def typical_hold(self) -> int:
        """Bars the 90th percentile of trades lasts: how far neighbouring labels overlap (the
        bootstrap's block; the purge uses each trade's own end)."""
        done = np.flatnonzero(self.exit_pos >= 0)
        return max(1, int(np.percentile(self.exit_pos[done] - done, 90))) if len(done) else 1


def build_dataset(frame: pd.DataFrame, timeframe: str, horizon: int | None = None,
                  rules: TradeRules | None = None, market: pd.Series | None = None) -> Dataset:
    """Features (strictly causal, from the data layer) and trade labels for a clean frame;
    ``rules`` default to the desk's default exits and costs. ``market`` is the market's 1-bar
    return by bar time (:func:`market_returns` over the watchlist); by default the frame is its
    own market."""
    if horizon is not None and horizon < 1:
        raise ValueError("a time stop must be at least one bar")
    intraday = is_intraday(timeframe)
    rules = rules or TradeRules(max_bars=horizon)
    if horizon is not None and rules.max_bars != horizon:
        rules = replace(rules, max_bars=horizon)
    columns = feature_list(timeframe)
    X = model_features(frame, intraday, market)
    close = frame["close"].to_numpy(dtype="float64")
    out = trade_outcomes(frame, intraday, rules)
    return Dataset(pd.DatetimeIndex(frame.index), X, out.win, close,
                   columns, out.reach, timeframe, out.ret, out.exit_pos, primary_signal(close), rules)


def model_features(frame: pd.DataFrame, intraday: bool, market: pd.Series | None = None) -> np.ndarray:
    """Every bar's :func:`feature_list` row: the indicators, then the market context (``market``
    by bar time; the frame's own returns when None)."""
    own = compute_features(frame, intraday)[feature_columns(intraday)].to_numpy(dtype="float64")
    close = frame["close"].astype("float64")
    if market is None:
        market = market_returns({"": close})
    mkt = market.reindex(frame.index).to_numpy(dtype="float64")
    return np.hstack([own, context_features(close.to_numpy(), mkt)])


def load_csv_bars(path: str | Path, timeframe: str, symbol: str | None = None) -> pd.DataFrame:
    """Read and clean a CSV of bars; a file holding another timeframe is refused
    with a message that says which one it holds. ``symbol`` picks one stock's rows
    from a file with a symbol column (a model is trained on one stock)."""

    frame = read_clean(path, timeframe, symbol=symbol)[1].frame
    if frame.empty:
        raise DataError(f"{Path(path).name} has no usable bars after cleaning")
    return frame
