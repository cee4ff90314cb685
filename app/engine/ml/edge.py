"""Does a trained model have an edge a trader can act on? Its own out-of-sample numbers say.

Every figure here comes from the walk-forward's out-of-fold bars (see :mod:`train`): the
model never saw them, and only the primary rule's buys count (the trades the model is asked
about; see :mod:`labels`). A model is granted an edge only when all of these hold:

* its calibration map is not flat: a Platt slope near 0 states the base rate on every bar,
  a constant that must never trade;
* its rank information coefficient (Spearman's correlation of the raw ensemble P(profit)
  with the trade's return after costs) has a 95% interval above 0, from a moving-block
  bootstrap (blocks of at least the trades' reach, since neighbouring trades overlap);
* at least ``MIN_TRADES`` out-of-sample trades reach the approval threshold with a positive
  expected return after costs (P(profit) >= 0.70 by default), and those trades made money
  after costs on average;
* and more than the primary rule did alone, ungated, on the same bars.

A trade is counted as the desk would take it: one position per symbol at a time, so the
confident bars while a trade is still open are not trades of their own (:func:`taken`; a
review found 30 neighbouring bars of one afternoon passing for 30 trades).

Otherwise the verdict is ``edge: false`` with the first reason that failed, and the app
trades its rules model instead. The deflated Sharpe ratio (Bailey and Lopez de Prado,
"The Deflated Sharpe Ratio", 2014) of the gated trades is reported beside it: the
probability that their per-trade Sharpe ratio is above what the best of ``configs_tried``
configurations with no skill would show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.engine.ml.ensemble import PlattCalibrator
from app.engine.ml.metrics import expected_calibration_error

MIN_TRADES = 30  # gated out-of-sample trades below this are too few to judge
FLAT_SLOPE = 0.05  # a Platt slope at or below this maps every P(up) to about the base rate
RESAMPLES = 400
SEED = 20_240_601  # the bootstrap is pinned: the same model gets the same verdict every time
EULER_GAMMA = 0.5772156649015329
REPEAT_WINDOW = 10  # returns in a row that real prices never repeat exactly
MAX_REPEATED = 0.01
VERDICT_KEYS = ("repeated_share", "rank_ic", "rank_ic_ci", "trades", "expectancy_bps", "rules_expectancy_bps",
                "threshold", "rules")  # test sequences seen in training above this share: the file repeats itself


@dataclass(frozen=True)
class EdgeVerdict:
    edge: bool
    reason: str
    out_of_sample: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"edge": self.edge, "edge_reason": self.reason, "out_of_sample": self.out_of_sample}


def assess(oof: pd.DataFrame, calibrator: PlattCalibrator | None, *, threshold: float, cost_bps: float,
           horizon: int, configs_tried: int = 1, repeated: float = 0.0) -> EdgeVerdict:
    """The verdict on out-of-fold rows holding ``y`` (the trade ended profitable), ``ret`` (its
    return after costs), ``primary`` (the primary rule's buy), ``ensemble`` (raw P),
    ``ensemble_calibrated`` (nested, out-of-sample), ``expected_bps`` and ``always_up``. Every
    figure is on the primary rule's bars: the trades the model is asked about."""
    rng = np.random.default_rng(SEED)
    y, ret = oof["y"].to_numpy(dtype="float64"), oof["ret"].to_numpy(dtype="float64")
    raw = oof["ensemble"].to_numpy(dtype="float64")
    primary = oof["primary"].to_numpy(dtype=bool) if "primary" in oof else np.ones(len(oof), dtype=bool)
    ok = np.isfinite(y) & np.isfinite(ret) & np.isfinite(raw) & primary
    block = max(horizon, int(math.sqrt(max(ok.sum(), 1))))
    stats: dict[str, Any] = {"bars": int(ok.sum()), "bootstrap_block_bars": block, "cost_bps": cost_bps,
                             "threshold": threshold, "configs_tried": configs_tried,
                             "repeated_share": round(repeated, 4)}
    stats["auc"], stats["auc_ci"] = _with_interval(_auc, (y[ok], raw[ok]), block, rng)
    stats["ic"], stats["ic_ci"] = _with_interval(_ic, (raw[ok], ret[ok]), block, rng)
    stats["rank_ic"], stats["rank_ic_ci"] = _with_interval(_rank_ic, (raw[ok], ret[ok]), block, rng)

    cal = oof["ensemble_calibrated"].to_numpy(dtype="float64")
    rows = ok & np.isfinite(cal)  # fold 1 has no calibration of its own: left out
    base = oof["always_up"].to_numpy(dtype="float64")
    stats["calibrated_bars"] = int(rows.sum())
    stats["ece"] = expected_calibration_error(y[rows], cal[rows]) if rows.any() else None
    stats["ece_constant_baseline"] = expected_calibration_error(y[rows], base[rows]) if rows.any() else None
    for name, fn in (("brier", _brier), ("log_loss", _log_loss)):
        stats[name], stats[f"{name}_ci"] = _with_interval(fn, (y[rows], cal[rows]), block, rng)
        stats[f"{name}_constant_baseline"] = _round(fn(y[rows], base[rows]))
    net = ret * 1e4  # the labels' returns are after costs already
    expected = oof["expected_bps"].to_numpy(dtype="float64") if "expected_bps" in oof else net * np.nan
    # the trades the desk could have taken: one position per symbol at a time, so a run of
    # confident bars while a trade is open is one trade, not thirty
    gated = taken(oof, rows & (cal >= threshold) & (expected > 0))
    stats["gated_bars"] = int((rows & (cal >= threshold) & (expected > 0)).sum())
    stats["trades"] = int(gated.sum())
    stats["expectancy_bps"] = _mean(net[gated])
    stats["expected_bps_stated"] = _mean(expected[gated])
    ruled = taken(oof, rows)  # the primary rule alone, ungated, on the same bars
    stats["rules"] = "the primary rule, ungated (SMA10 above SMA20)"
    stats["rules_trades"] = int(ruled.sum())
    stats["rules_expectancy_bps"] = _mean(net[ruled])
    stats["deflated_sharpe"] = deflated_sharpe(net[gated], configs_tried)
    stats["calibration_slope"] = calibrator.a if calibrator is not None else None
    edge, reason = _verdict(stats, calibrator)
    return EdgeVerdict(edge, reason, stats)


def taken(oof: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    """The rows of ``mask`` the desk could trade, oldest first: a row's trade is taken when
    its symbol's previous taken trade has ended by then (``exit``, ns since the epoch; without
    it every row is its own trade)."""
    out = np.zeros(len(oof), dtype=bool)
    times = pd.DatetimeIndex(oof.index).as_unit("ns").asi8
    exits = oof["exit"].to_numpy(dtype="int64") if "exit" in oof else times
    symbols = oof["symbol"].to_numpy() if "symbol" in oof else np.zeros(len(oof), dtype=int)
    busy: dict[Any, int] = {}
    for i in np.flatnonzero(mask):
        if times[i] >= busy.get(symbols[i], np.iinfo("int64").min):
            out[i] = True
            busy[symbols[i]] = int(exits[i])
    return out


def recheck(meta: dict[str, Any]) -> str | None:
    """Why a saved ``edge: true`` is not borne out by the numbers saved beside it (a verdict
    edited by hand, or a file from elsewhere), or None when they grant it."""
    stats, cal = meta.get("out_of_sample"), meta.get("calibrator")
    if not isinstance(stats, dict) or not isinstance(cal, dict):
        return "its out-of-sample numbers are missing"
    pooled = meta.get("pooled")
    if "symbols" in meta and len(meta["symbols"]) > 1 and not isinstance(pooled, dict):
        return "the pooled verdict of its watchlist model is missing"
    try:
        calibrator = PlattCalibrator(float(cal["a"]), float(cal["b"]), int(cal.get("n", 0)))
        for numbers in [stats] + ([pooled["out_of_sample"]] if isinstance(pooled, dict) else []):
            missing = [k for k in VERDICT_KEYS if k not in numbers]
            if missing:
                return f"its out-of-sample numbers are incomplete (no {', '.join(missing)})"
            edge, reason = _verdict(numbers, calibrator)
            if not edge:
                return f"its saved numbers say otherwise: {reason}"
    except (KeyError, TypeError, ValueError) as exc:
        return f"its out-of-sample numbers cannot be read ({exc})"
    return None


def repeated_share(close: np.ndarray, first_test: int, window: int = REPEAT_WINDOW,
                   others: Sequence[tuple[np.ndarray, int]] = ()) -> float:
    """The share of test-block return sequences (``window`` returns, each in steps of a tenth
    of the series' own volatility) that already appear in the training bars before them,
    this series' or any of ``others`` (each ``(close, first_test)``: a watchlist's other
    symbols). Real prices never repeat ten returns; a file built from copies of one stretch
    does, scaled, jittered by a few hundredths of a volatility or given another symbol's
    name, and a model then scores on what it memorised, not on anything it could know."""
    r = _returns(close)
    sd = float(np.nanstd(r)) if len(r) else 0.0
    test_seqs, _ = _quantised(r, first_test, window, sd)
    if not test_seqs:
        return 0.0
    seen: set[bytes] = set()
    for c, first in ((close, first_test), *others):  # one scale for all: a copy matches step for step
        seen |= _quantised(_returns(c), first, window, sd)[1]
    return sum(1 for t in test_seqs if t in seen) / len(test_seqs)


def _returns(close: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.diff(np.log(np.asarray(close, dtype="float64"))))


def _quantised(r: np.ndarray, first_test: int, window: int, sd: float) -> tuple[list[bytes], set[bytes]]:
    """(the test windows from ``first_test`` on, the set of training windows before it) of log
    returns ``r`` in tenths of ``sd``; windows that never move (a halt, no trades) are left
    out: those repeat honestly."""
    if len(r) < 2 * window or not 0 < first_test <= len(r) + 1 or not sd > 0:
        return [], set()
    q = np.clip(np.round(np.nan_to_num(r / (0.1 * sd))), -10_000, 10_000).astype("int16")
    seqs = np.lib.stride_tricks.sliding_window_view(q, window)
    moving = np.abs(seqs).sum(axis=1) > 1
    train = {row.tobytes() for row, m in zip(seqs[: max(first_test - window, 0)], moving, strict=False) if m}
    test = [row.tobytes() for row, m in zip(seqs[first_test:], moving[first_test:], strict=True) if m]
    return test, train


def _verdict(s: dict[str, Any], calibrator: PlattCalibrator | None) -> tuple[bool, str]:
    if s.get("repeated_share", 0.0) > MAX_REPEATED:
        return False, (f"{s['repeated_share']:.0%} of its test bars repeat sequences of its training bars: it "
                       "scores on what it memorised (is the file made of copies?)")
    if calibrator is None:
        return False, "its P could not be calibrated (too few out-of-sample trades, or only one outcome)"
    if calibrator.a <= FLAT_SLOPE:
        return False, (f"its calibration is flat (slope {calibrator.a:.2f}): its P says nothing the base "
                       "rate does not")
    ic, (lo, hi) = s["rank_ic"], s["rank_ic_ci"]
    if ic is None or lo is None or lo <= 0:
        return False, f"rank IC {_f(ic)}, 95% interval [{_f(lo)}, {_f(hi)}] includes 0"
    trades, exp, rules = s["trades"], s["expectancy_bps"], s["rules_expectancy_bps"]
    pct = f"{s['threshold']:.0%}"
    if trades < MIN_TRADES:
        return False, (f"only {trades} out-of-sample trades reach P(profit) {pct} with a positive expected "
                       f"return (at least {MIN_TRADES} needed to judge)")
    if exp is None or exp <= 0:
        return False, f"its {trades} trades at P(profit) {pct} made {_f(exp, 1)} bps each after costs: no profit"
    if rules is not None and exp <= rules:
        return False, (f"its {trades} trades at P(profit) {pct} made {exp:+.1f} bps each after costs, no better "
                       f"than the rule without it ({s['rules']}: {rules:+.1f} bps)")
    return True, (f"rank IC {ic:.3f} [{lo:.3f}, {hi:.3f}]; {trades} trades at P(profit) {pct} made {exp:+.1f} bps "
                  f"each after costs, against {_f(rules, 1)} for the rule without it")


def deflated_sharpe(returns: np.ndarray, trials: int) -> float | None:
    """P(true Sharpe > the best of ``trials`` skill-less ones) for per-trade ``returns``,
    corrected for their skew and fat tails (Bailey and Lopez de Prado, 2014, eq. 2 and 9)."""
    from scipy.stats import kurtosis, norm, skew

    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 3 or float(r.std(ddof=1)) == 0.0:
        return None
    sr = float(r.mean() / r.std(ddof=1))
    g3, g4 = float(skew(r)), float(kurtosis(r, fisher=False))
    sr0 = 0.0
    if trials > 1:  # the expected best of ``trials`` Sharpe ratios of noise, each of variance 1/(n-1)
        sd = math.sqrt(1.0 / (n - 1))
        sr0 = sd * ((1 - EULER_GAMMA) * norm.ppf(1 - 1 / trials) + EULER_GAMMA * norm.ppf(1 - 1 / (trials * math.e)))
    denom = 1 - g3 * sr + (g4 - 1) / 4 * sr * sr
    if denom <= 0:
        return None
    return float(norm.cdf((sr - sr0) * math.sqrt(n - 1) / math.sqrt(denom)))


def _with_interval(stat: Any, arrays: tuple[np.ndarray, ...], block: int,
                   rng: np.random.Generator) -> tuple[float | None, list[float | None]]:
    """The statistic and its 95% moving-block bootstrap interval."""
    n = len(arrays[0])
    value = stat(*arrays) if n else None
    if value is None or n < 2 * block:
        return _round(value), [None, None]
    starts = rng.integers(0, n - block + 1, size=(RESAMPLES, math.ceil(n / block)))
    draws = []
    for row in starts:
        idx = (row[:, None] + np.arange(block)).ravel()[:n]
        got = stat(*(a[idx] for a in arrays))
        if got is not None:
            draws.append(got)
    if len(draws) < RESAMPLES // 2:
        return value, [None, None]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return _round(value), [round(float(lo), 4), round(float(hi), 4)]


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(np.unique(y)) < 2:
        return None
    ranks = pd.Series(p).rank().to_numpy()
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _ic(p: np.ndarray, r: np.ndarray) -> float | None:
    if len(p) < 2 or p.std() == 0 or r.std() == 0:
        return None
    return float(np.corrcoef(p, r)[0, 1])


def _brier(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(np.mean((p - y) ** 2)) if len(y) else None


def _log_loss(y: np.ndarray, p: np.ndarray) -> float | None:
    if not len(y):
        return None
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _rank_ic(p: np.ndarray, r: np.ndarray) -> float | None:
    a, b = pd.Series(p).rank().to_numpy(), pd.Series(r).rank().to_numpy()
    if a.std() == 0 or b.std() == 0:
        return None  # a constant P(up) ranks nothing
    return float(np.corrcoef(a, b)[0, 1])


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 2) if len(values) else None


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
