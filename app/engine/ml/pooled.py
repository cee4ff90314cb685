"""One model over a watchlist: trained on every symbol's trades, judged overall, per symbol
and across symbols.

A single stock's few thousand noisy trades rarely show an edge; pooling the watchlist gives
the models more of them (the features are scale-free: returns, ratios and oscillators, so a
$20 and a $400 stock read alike). The walk-forward cuts every symbol at the same times (see
:func:`app.engine.ml.train.walk_forward_sets`), so no block learns from another symbol's
future either.

The verdicts:

* **pooled**: the edge gate on every out-of-sample trade of every symbol;
* **per symbol**: the same gate on that symbol's trades alone. A symbol's copy of the model
  trades only when both grant an edge: a model that earns its keep on NVDA has not shown
  anything about QQQ;
* **across symbols**: at each bar time with trades of at least three symbols, Spearman's
  correlation of the model's P with the trades' returns; the mean over times is the
  cross-sectional rank IC, with a block-bootstrap interval over times (does the model rank
  the day's candidates, not merely the days?).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.engine.data.market import market_returns
from app.engine.ml.dataset import Dataset, build_dataset
from app.engine.ml.edge import EdgeVerdict, assess, repeated_share
from app.engine.ml.ensemble import Ensemble
from app.engine.ml.labels import LABELS, PRIMARY_RULE, TradeRules
from app.engine.ml.models import ProgressFn
from app.engine.ml.train import (
    EnsembleFactory,
    TrainConfig,
    WalkForwardReport,
    build_ensemble,
    fold_edges,
    payoff,
    scaled_progress,
    stack,
    walk_forward_sets,
)

if TYPE_CHECKING:
    from app.engine.settings import Settings

MIN_CROSS_SECTION = 3  # symbols with a trade at one bar time for a rank across them
MIN_SHARED = 0.5  # of a symbol's bar times, at least this share must be the other symbols' too
MAX_SAME_MOVES = 0.5  # two symbols making identical moves on more of their shared bars: one is a copy
SEED = 20_240_602


@dataclass
class PooledResult:
    ensemble: Ensemble
    report: WalkForwardReport
    verdict: EdgeVerdict  # on every symbol's trades
    per_symbol: dict[str, EdgeVerdict]
    cross_sectional: dict[str, Any]
    info: dict[str, Any]  # what every symbol's copy of the bundle keeps (its own verdict added by info_for)
    payoffs: dict[str, dict[str, float] | None]  # each symbol's own mean winning and losing trade

    def info_for(self, symbol: str) -> dict[str, Any]:
        """The metadata of ``symbol``'s copy: it trades only when the pooled and its own
        out-of-sample numbers both grant an edge; the saved numbers are its own, so a
        hand-edited verdict is caught against them (see :func:`edge.recheck`)."""
        own = self.per_symbol[symbol]
        edge, reason = own.edge, own.reason
        if not self.verdict.edge:
            edge, reason = False, f"the pooled model has no demonstrated edge: {self.verdict.reason}"
        elif not own.edge:
            reason = f"on {symbol}'s own trades: {own.reason}"
        return {**self.info, "symbol": symbol, "edge": edge, "edge_reason": reason, "payoff": self.payoffs[symbol],
                "out_of_sample": own.out_of_sample, "pooled": self.verdict.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {**self.verdict.to_dict(), "cross_sectional": self.cross_sectional,
                "per_symbol": {s: {"edge": (i := self.info_for(s))["edge"], "edge_reason": i["edge_reason"],
                                   "out_of_sample": v.out_of_sample} for s, v in self.per_symbol.items()}}


def train_pooled(frames: dict[str, pd.DataFrame], settings: Settings, config: TrainConfig,
                 progress: ProgressFn | None = None, factory: EnsembleFactory | None = None) -> PooledResult:
    """The walk-forward over every symbol's bars, then one ensemble on all of them, its
    weights and calibration fit on the out-of-fold trades."""
    make = factory or (lambda cols, h: build_ensemble(settings, config, cols, h))
    check_watchlist(frames)
    rules = TradeRules.from_settings(settings, config.horizon)
    market = market_returns({s: f["close"] for s, f in frames.items()})  # the watchlist is the market
    sets = {s: build_dataset(f, config.timeframe, config.horizon, rules, market) for s, f in frames.items()}
    for s, d in sets.items():
        if int((np.isfinite(d.y) & d.primary).sum()) < 30:
            raise ValueError(f"{s}: fewer than 30 labelled buys of the primary rule: too few to learn from")
    times = pd.DatetimeIndex(np.unique(np.concatenate([d.index.as_unit("ns").asi8 for d in sets.values()])),
                             tz="UTC")
    cuts = [(times[a], times[b] if b < len(times) else None)
            for a, b in fold_edges(len(times), config.folds, config.first_train_frac)]
    total = sum(len(d) for d in sets.values())
    split = 1 - 1 / (config.folds + 1)
    report = walk_forward_sets(sets, cuts, settings, config, scaled_progress(progress, 0.0, split, ""), make)
    ens = make(next(iter(sets.values())).columns, report.horizon)
    X, y, primary, ret, starts = stack(sets, {s: len(d) for s, d in sets.items()}, dict.fromkeys(sets, 0),
                                       ens.lookback)
    ens.fit(X, y, progress=scaled_progress(progress, split, 1.0, "final model: "), segments=starts)
    ens.weights = {k: w for k, w in report.weights.items() if k in ens.components} or ens.weights
    ens.calibrator = report.calibrator
    oof = report.oof
    firsts = {s: int(d.index.searchsorted(cuts[0][0])) for s, d in sets.items()}
    repeats = {s: repeated_share(d.close, firsts[s], others=[(o.close, firsts[k]) for k, o in sets.items() if k != s])
               for s, d in sets.items()}  # a symbol made of another's copied stretch scores on memory too
    threshold = settings.approval_threshold

    def judge(rows: pd.DataFrame, symbol: str | None) -> EdgeVerdict:
        d = sets[symbol] if symbol is not None else None
        rep = repeats[symbol] if symbol is not None else max(repeats.values())
        # pooled rows interleave the symbols bar time by bar time: a block must span a hold's bar times
        # for every symbol, or the same-time correlation across them narrows the intervals
        hold = d.typical_hold if d is not None else max(x.typical_hold for x in sets.values()) * len(sets)
        return assess(rows, ens.calibrator, threshold=threshold, cost_bps=_cost(sets, d), horizon=hold,
                      repeated=rep)

    verdict = judge(oof, None)
    per_symbol = {s: judge(oof[oof["symbol"] == s], s) for s in sets}
    pay = payoff(ret, y, primary)
    payoffs = {s: _bps(payoff(d.ret, d.y, d.primary)) for s, d in sets.items()}
    info = {"symbols": list(sets), "market": list(sets), "timeframe": config.timeframe, "horizon": report.horizon,
            "labels": LABELS,
            "primary_rule": PRIMARY_RULE, "trade_rules": rules.to_dict(),
            "payoff": _bps(pay),
            "weights": dict(ens.weights), "embargo_bars": report.embargo, "features": list(ens.columns),
            "bars": total, "labelled": int(sum(d.labelled for d in sets.values())),
            "train_start": str(times[0].isoformat()), "train_end": str(times[-1].isoformat()),
            "last_label": _last_label(sets), "skipped": dict(ens.skipped)}
    if progress is not None:
        progress(1.0, "done")
    return PooledResult(ens, report, verdict, per_symbol, cross_sectional_ic(oof), info, payoffs)


def check_watchlist(frames: dict[str, pd.DataFrame], min_shared: float = MIN_SHARED,
                    max_same: float = MAX_SAME_MOVES) -> None:
    """Refuses a watchlist that cannot be learned as one: a symbol whose bars share too few
    times with the others' (the market each symbol is read against would be itself, and a
    fold could train on one symbol's year and test on another's), or two symbols whose
    bars make the same moves (one file under two names: every trade counted twice, and the
    copy's verdict and payoff measured on the other's prices)."""
    closes = {s: f["close"].astype("float64") for s, f in frames.items()}
    for s, c in closes.items():
        others = pd.DatetimeIndex(np.unique(np.concatenate(
            [o.index.as_unit("ns").asi8 for k, o in closes.items() if k != s])), tz="UTC")
        shared = float(c.index.isin(others).mean()) if len(c) else 0.0
        if shared < min_shared:
            raise ValueError(f"{s}'s bars ({c.index[0]:%Y-%m-%d} .. {c.index[-1]:%Y-%m-%d}) share {shared:.0%} of "
                             "their times with the other symbols': a watchlist model learns from the same times "
                             "(give files that cover the same dates)")
    moves = {s: np.log(c).diff() for s, c in closes.items()}
    names = list(moves)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = pd.concat([moves[a], moves[b]], axis=1, join="inner").dropna()
            both = both[(both.iloc[:, 0] != 0) | (both.iloc[:, 1] != 0)]  # a flat bar in both says nothing
            if len(both) < 20:
                continue
            same = float(np.isclose(both.iloc[:, 0], both.iloc[:, 1], rtol=1e-6, atol=1e-12).mean())
            if same > max_same:
                raise ValueError(f"{b}'s bars make the same moves as {a}'s on {same:.0%} of the bar times they "
                                 "share: the same data under two names? Each symbol needs its own bars")


def cross_sectional_ic(oof: pd.DataFrame, resamples: int = 400) -> dict[str, Any]:
    """The mean, over bar times with trades of at least ``MIN_CROSS_SECTION`` symbols, of
    Spearman's correlation of the raw P with the trades' returns; a 95% interval from a
    moving-block bootstrap over those times."""
    rows = oof[oof["primary"] & np.isfinite(oof["y"]) & np.isfinite(oof["ensemble"]) & np.isfinite(oof["ret"])]
    ics = []
    for _, g in rows.groupby(level=0):
        if len(g) >= MIN_CROSS_SECTION and g["ensemble"].nunique() > 1 and g["ret"].nunique() > 1:
            ics.append(float(g["ensemble"].rank().corr(g["ret"].rank())))
    out: dict[str, Any] = {"times": len(ics), "min_symbols": MIN_CROSS_SECTION, "rank_ic": None,
                           "rank_ic_ci": [None, None]}
    if not ics:
        return out
    values = np.array(ics)
    out["rank_ic"] = round(float(values.mean()), 4)
    block = max(1, int(math.sqrt(len(values))))
    if len(values) >= 2 * block:
        rng = np.random.default_rng(SEED)
        starts = rng.integers(0, len(values) - block + 1, size=(resamples, math.ceil(len(values) / block)))
        means = [values[(row[:, None] + np.arange(block)).ravel()[: len(values)]].mean() for row in starts]
        lo, hi = np.percentile(means, [2.5, 97.5])
        out["rank_ic_ci"] = [round(float(lo), 4), round(float(hi), 4)]
    return out


def _bps(pay: tuple[float, float] | None) -> dict[str, float] | None:
    """A symbol's expected return is stated from its own trades: the pooled mean would lend
    one stock another's wins and losses."""
    return {"win_bps": round(pay[0] * 1e4, 2), "loss_bps": round(pay[1] * 1e4, 2)} if pay else None


def _cost(sets: dict[str, Dataset], d: Dataset | None) -> float:
    """The round trip's cost in bps: the symbol's own, or the mean over the symbols."""
    if d is not None:
        return d.rules.cost_bps
    return round(float(np.mean([x.rules.cost_bps for x in sets.values()])), 2)


def _last_label(sets: dict[str, Dataset]) -> str:
    last = [d.index[np.flatnonzero(np.isfinite(d.y))[-1]] for d in sets.values() if np.isfinite(d.y).any()]
    return max(last).isoformat() if last else ""

