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
from datetime import UTC
from typing import Any

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


def compute_features_tail(data: pd.DataFrame | np.ndarray, intraday: bool, rows: int) -> np.ndarray:
    """``compute_features(frame, intraday).to_numpy()[-rows:]`` in NumPy, for the live path.

    ``data`` is a clean frame or an ``(n, 6)`` array of rows (epoch seconds,
    open, high, low, close, volume), oldest first. The exponential averages
    (RSI, MACD, EMA, ATR) still run over every one of the ``n`` bars, so they
    start where ``compute_features`` starts them; the rolling windows, returns
    and clock features are computed for the newest ``rows`` only. Same values
    as the pandas path to float rounding (~1e-15 relative), in a fraction of
    the time (no DataFrame is built): a bar's features still read only bars
    up to its own. Inputs with a missing or infinite price or volume take the
    pandas path, so NaN handling is exactly ``compute_features``'.
    A near-flat 20-bar window (a halted or untraded stretch) also takes the
    pandas path: there pandas' running variance keeps a rounding residual
    instead of 0, and the live features must stay the ones the model knows.
    """
    frame = data if isinstance(data, pd.DataFrame) else None
    if isinstance(data, pd.DataFrame):
        idx = pd.DatetimeIndex(data.index)
        if idx.tz is None:
            idx = idx.tz_localize("UTC")
        secs = idx.as_unit("ns").asi8 // 1_000_000_000
        cols = [data[c].to_numpy(dtype="float64") for c in ("high", "low", "close", "volume")]
        high, low, close, volume = cols
    else:
        a = np.asarray(data, dtype="float64").reshape(-1, 6)
        secs = a[:, 0].astype("int64")
        high, low, close, volume = a[:, 2], a[:, 3], a[:, 4], a[:, 5]
    n = len(close)
    k = max(0, min(int(rows), n))
    names = feature_columns(intraday)
    if k == 0:
        return np.empty((0, len(names)))
    if not (np.isfinite(high).all() and np.isfinite(low).all() and np.isfinite(close).all()
            and np.isfinite(volume).all()):
        return _tail_via_pandas(frame, secs, high, low, close, volume, intraday, k)
    mean20, std20 = _rolling_mean_std(close, 20, k)
    vmean, vstd = _rolling_mean_std(volume, 20, k)
    if _near_flat(mean20, std20) or _near_flat(vmean, vstd):
        return _tail_via_pandas(frame, secs, high, low, close, volume, intraday, k)
    out = np.empty((k, len(names)))
    col = {c: i for i, c in enumerate(names)}
    c_tail = close[n - k:]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # RSI (ta): Wilder averages of the up and down moves; the first bar's move is 0
        diff = np.empty(n)
        diff[0] = 0.0
        np.subtract(close[1:], close[:-1], out=diff[1:])
        up = np.where(diff > 0, diff, 0.0)
        down = -np.where(diff < 0, diff, 0.0)
        ema_up = _ewm_tail(up, 1 / 14, 0, 14, k)
        ema_dn = _ewm_tail(down, 1 / 14, 0, 14, k)
        rsi = np.where(ema_dn == 0, 100, 100 - (100 / (1 + ema_up / ema_dn)))
        out[:, col["rsi_14"]] = rsi / 100.0
        # MACD (ta) and the EMAs: span-n averages from the first bar, n bars to warm up
        fast_full = _ewm_full(close, _span_alpha(12), 0)
        slow_full = _ewm_full(close, _span_alpha(26), 0)
        macd_full = fast_full - slow_full  # NaN-free: warm-up masking below
        signal = _ewm_tail(macd_full, _span_alpha(9), 25, 9, k) if n > 25 else np.full(k, np.nan)
        fast, slow = _warm(fast_full, 12, k), _warm(slow_full, 26, k)
        macd = fast - slow
        out[:, col["macd"]] = macd / c_tail
        out[:, col["macd_signal"]] = signal / c_tail
        out[:, col["macd_hist"]] = (macd - signal) / c_tail
        # Bollinger (20, 2) and the simple averages
        hband, lband = mean20 + 2 * std20, mean20 - 2 * std20
        width = hband - lband
        out[:, col["bb_pctb"]] = (c_tail - lband) / np.where(hband != lband, width, np.nan)
        out[:, col["bb_width"]] = ((width / mean20) * 100) / 100.0
        out[:, col["sma_20_rel"]] = c_tail / mean20 - 1.0
        mean50, _ = _rolling_mean_std(close, 50, k, std=False)
        out[:, col["sma_50_rel"]] = c_tail / mean50 - 1.0
        out[:, col["ema_12_rel"]] = c_tail / fast - 1.0
        out[:, col["ema_26_rel"]] = c_tail / slow - 1.0
        # ATR: true range, seeded with the mean of the first 14, then Wilder smoothing
        if n >= 14:
            tr = high - low
            prev = close[:-1]
            tr[1:] = np.maximum(np.maximum(tr[1:], np.abs(high[1:] - prev)), np.abs(low[1:] - prev))
            seeded = tr.copy()
            seeded[13] = tr[:14].mean()
            atr = _ewm_tail(seeded, 1.0 / 14, 13, 1, k)
        else:
            atr = np.full(k, np.nan)
        out[:, col["atr_14_rel"]] = atr / c_tail
        z = (volume[n - k:] - vmean) / vstd
        out[:, col["volume_z_20"]] = np.where(vstd == 0, 0.0, z)
        logc = np.log(close[max(0, n - k - max(RETURN_WINDOWS)):])
        for w in RETURN_WINDOWS:
            r = np.full(k, np.nan)
            m = min(k, n - w)  # tail rows that have a bar w earlier
            if m > 0:
                r[k - m:] = logc[len(logc) - m:] - logc[len(logc) - m - w: len(logc) - w]
            out[:, col[f"logret_{w}"]] = r
        if intraday:
            for name, v in _time_features_secs(secs[n - k:]).items():
                out[:, col[name]] = v
    out[np.isinf(out)] = np.nan
    return out


def _tail_via_pandas(frame: pd.DataFrame | None, secs: np.ndarray, high: np.ndarray,
                     low: np.ndarray, close: np.ndarray, volume: np.ndarray, intraday: bool,
                     k: int) -> np.ndarray:
    """The newest ``k`` rows the exact way: ``compute_features`` on the whole input."""
    if frame is not None:
        return np.asarray(compute_features(frame, intraday).to_numpy(dtype="float64")[-k:])
    idx = pd.DatetimeIndex(pd.to_datetime(secs, unit="s", utc=True))
    frame = pd.DataFrame({"open": close, "high": high, "low": low, "close": close,
                          "volume": volume}, index=idx)
    return np.asarray(compute_features(frame, intraday).to_numpy(dtype="float64")[-k:])


def _span_alpha(span: int) -> float:
    return 2.0 / (span + 1.0)


def _pandas_alpha(alpha: float) -> float:
    """The smoothing factor pandas actually uses: it goes through the centre of mass."""
    return 1.0 / (1.0 + (1 - alpha) / alpha)


def _ewm_full(x: np.ndarray, alpha: float, start: int) -> np.ndarray:
    """``Series.ewm(alpha, adjust=False).mean()`` of a NaN-free ``x[start:]``
    (NaN before ``start``): y[start] = x[start], y = (1 - a) y + a x."""
    from scipy.signal import lfilter

    a = _pandas_alpha(alpha)
    y = np.full(len(x), np.nan)
    if start >= len(x):
        return y
    y[start] = x[start]
    if len(x) > start + 1:
        y[start + 1:], _ = lfilter([a], [1.0, -(1.0 - a)], x[start + 1:], zi=[(1.0 - a) * x[start]])
    return y


def _ewm_tail(x: np.ndarray, alpha: float, start: int, min_periods: int, k: int) -> np.ndarray:
    """The newest ``k`` values of :func:`_ewm_full`, NaN where fewer than
    ``min_periods`` observations (counted from ``start``) have been seen."""
    return _warm(_ewm_full(x, alpha, start), start + min_periods, k)


def _warm(y: np.ndarray, ready: int, k: int) -> np.ndarray:
    """``y[-k:]`` with rows before index ``ready - 1`` set to NaN."""
    n = len(y)
    t = y[n - k:].copy()
    cut = ready - 1 - (n - k)  # tail positions before the first ready row
    if cut > 0:
        t[:cut] = np.nan
    return t


def _rolling_mean_std(x: np.ndarray, window: int, k: int, std: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and population std over ``window`` bars for the newest
    ``k`` rows (NaN while the window is not full)."""
    n = len(x)
    mean = np.full(k, np.nan)
    sd = np.full(k, np.nan)
    m = min(k, n - window + 1)  # tail rows with a full window
    if m <= 0:
        return mean, sd
    seg = x[n - m - window + 1:]
    win = np.lib.stride_tricks.sliding_window_view(seg, window)
    mean[k - m:] = win.mean(axis=1)
    if std:
        sd[k - m:] = win.std(axis=1)
    return mean, sd


def _near_flat(mean: np.ndarray, std: np.ndarray, rel: float = 1e-4) -> bool:
    """Whether a window's spread is under ``rel`` of its level (or both are 0)."""
    with np.errstate(invalid="ignore"):
        return bool(np.any(std <= rel * np.abs(mean)))


def _time_features_secs(secs: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`_time_features` from epoch seconds, without a DatetimeIndex:
    one UTC offset lookup when the rows share it (no DST change among them)."""
    from datetime import datetime

    def offset(s: int) -> int:
        offset = datetime.fromtimestamp(int(s), UTC).astimezone(NY).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    first, last = offset(secs[0]), offset(secs[-1])
    if first == last and int(secs[-1]) - int(secs[0]) < 30 * 86400:
        offs = np.full(len(secs), first, dtype="int64")
    else:
        offs = np.array([offset(s) for s in secs], dtype="int64")
    local = secs.astype("int64") + offs
    minute = ((local // 60) % 1440).astype("float64")
    dow = ((local // 86400 + 3) % 7).astype("float64")  # 1970-01-01 was a Thursday (Monday = 0)
    frac = (minute - _OPEN_MINUTE) / _SESSION_MINUTES
    day = 2 * np.pi * minute / 1440.0
    return {"session_frac": frac, "tod_sin": np.sin(day), "tod_cos": np.cos(day),
            "day_of_week": dow / 4.0}


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
    def from_dict(cls, d: dict[str, list[Any]]) -> StandardScalerFit:
        return cls(list(d["columns"]), np.asarray(d["mean"], dtype="float64"),
                   np.asarray(d["std"], dtype="float64"))
