"""Model features from clean bars, strictly causal.

A feature at bar t may use bars up to and including t and nothing later:
one peek at the future makes a backtest look brilliant and a live model lose
money. Every indicator here is a trailing rolling window or a forward
exponential average (``ta`` with ``fillna=False``, so warm-up rows stay NaN
instead of being back-filled), and a test rewrites every bar after t and
checks that rows up to t do not change. Prices are expressed relative to the
close so the same model works on a $10 and a $500 stock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator
from ta.trend import MACD
from ta.volatility import BollingerBands

from app.engine.clock import NY

RETURN_WINDOWS: tuple[int, ...] = (1, 3, 5, 10, 20)
BASE_FEATURES: list[str] = [
    "rsi_14",
    "macd", "macd_signal", "macd_hist",
    "bb_pctb", "bb_width",
    "sma_20_rel", "sma_50_rel", "ema_12_rel", "ema_26_rel",
    "atr_14_rel",
    "volume_z_20",
    *[f"logret_{n}" for n in RETURN_WINDOWS],
]
TIME_FEATURES: list[str] = ["session_frac", "tod_sin", "tod_cos", "day_of_week"]
FEATURE_COLUMNS: list[str] = BASE_FEATURES + TIME_FEATURES
WARMUP_BARS = 50  # the longest window (SMA 50): earlier rows have NaNs
_OPEN_MINUTE = 9 * 60 + 30
_SESSION_MINUTES = 390.0


def feature_columns(intraday: bool) -> list[str]:
    return FEATURE_COLUMNS if intraday else BASE_FEATURES


def compute_features(frame: pd.DataFrame, intraday: bool) -> pd.DataFrame:
    """One row of features per bar, same index as ``frame``; warm-up rows hold NaN."""
    close = frame["close"].astype("float64")
    high = frame["high"].astype("float64")
    low = frame["low"].astype("float64")
    volume = frame["volume"].astype("float64")
    out: dict[str, pd.Series | np.ndarray] = {}

    out["rsi_14"] = RSIIndicator(close, window=14, fillna=False).rsi() / 100.0
    macd = MACD(close, window_slow=26, window_fast=12, window_sign=9, fillna=False)
    # MACD is in price units; dividing by the close makes it comparable across stocks
    out["macd"] = macd.macd() / close
    out["macd_signal"] = macd.macd_signal() / close
    out["macd_hist"] = macd.macd_diff() / close
    bb = BollingerBands(close, window=20, window_dev=2, fillna=False)
    out["bb_pctb"] = bb.bollinger_pband()
    out["bb_width"] = bb.bollinger_wband() / 100.0
    out["sma_20_rel"] = close / close.rolling(20, min_periods=20).mean() - 1.0
    out["sma_50_rel"] = close / close.rolling(50, min_periods=50).mean() - 1.0
    out["ema_12_rel"] = close / close.ewm(span=12, min_periods=12, adjust=False).mean() - 1.0
    out["ema_26_rel"] = close / close.ewm(span=26, min_periods=26, adjust=False).mean() - 1.0
    out["atr_14_rel"] = wilder_atr(high, low, close, 14) / close
    out["volume_z_20"] = _zscore(volume, 20)
    logc = np.log(close)
    for n in RETURN_WINDOWS:
        out[f"logret_{n}"] = logc - logc.shift(n)
    if intraday:
        out.update(_time_features(pd.DatetimeIndex(frame.index)))
    result = pd.DataFrame(out, index=frame.index)
    result = result.replace([np.inf, -np.inf], np.nan)
    return result[feature_columns(intraday)].astype("float64")


def wilder_atr(high: pd.Series, low: pd.Series, close: pd.Series, window: int = 14) -> pd.Series:
    """ATR exactly as ``ta.volatility.AverageTrueRange`` defines it, vectorised.

    ``ta``'s version runs a Python loop over ``Series.iloc`` (seconds for 100k
    bars) and writes 0 into its warm-up rows; this is the same recursion (seed
    with the mean of the first ``window`` true ranges, then Wilder smoothing)
    as one exponential average, with NaN warm-up rows.
    """
    prev = close.shift(1)
    tr = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1)
    seeded = tr.copy()
    if len(tr) < window:
        return pd.Series(np.nan, index=close.index)
    seeded.iloc[: window - 1] = np.nan
    seeded.iloc[window - 1] = tr.iloc[:window].mean()
    return seeded.ewm(alpha=1.0 / window, adjust=False, ignore_na=True).mean()


def _zscore(s: pd.Series, window: int) -> pd.Series:
    mean = s.rolling(window, min_periods=window).mean()
    std = s.rolling(window, min_periods=window).std(ddof=0)
    z = (s - mean) / std
    return z.where(~(std == 0), 0.0)  # a flat window: nothing unusual about this bar


def _time_features(idx: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    ny = idx.tz_convert(NY) if idx.tz is not None else idx.tz_localize("UTC").tz_convert(NY)
    minute = (ny.hour * 60 + ny.minute).to_numpy(dtype="float64")
    frac = (minute - _OPEN_MINUTE) / _SESSION_MINUTES
    day = 2 * np.pi * minute / 1440.0
    return {
        "session_frac": frac,
        "tod_sin": np.sin(day),
        "tod_cos": np.cos(day),
        "day_of_week": ny.day_of_week.to_numpy(dtype="float64") / 4.0,
    }


@dataclass
class StandardScalerFit:
    """Per-column mean and standard deviation, fit on TRAINING ROWS ONLY.

    Fitting on the whole history would leak the test period's level and
    spread into training. Fit on the training slice, save it with the model
    (``to_dict``), and apply the same numbers to validation and live bars.
    """

    columns: list[str]
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)

    @classmethod
    def fit(cls, train: pd.DataFrame, columns: list[str] | None = None) -> StandardScalerFit:
        cols = list(columns or train.columns)
        values = train[cols].to_numpy(dtype="float64")
        if not len(values):
            raise ValueError("cannot fit a scaler on zero training rows")
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(cols, np.nan_to_num(mean), std)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        values = (frame[self.columns].to_numpy(dtype="float64") - self.mean) / self.std
        return pd.DataFrame(values, index=frame.index, columns=self.columns)

    def to_dict(self) -> dict[str, list[float] | list[str]]:
        return {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> StandardScalerFit:  # type: ignore[type-arg]
        return cls(list(d["columns"]), np.asarray(d["mean"], dtype="float64"),
                   np.asarray(d["std"], dtype="float64"))
