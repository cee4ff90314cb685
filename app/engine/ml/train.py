"""Training with an honest estimate of how good the result is.

Expanding-window walk-forward: the bars are cut into a first training window
(half the history by default) and ``folds`` test blocks after it. For each
block the ensemble is trained on everything before it, less a purge of
``horizon`` bars whose labels would read prices inside the block, and then
predicts the block it has never seen. Every number reported comes from those
out-of-fold (OOF) predictions, next to two baselines: always-up (stating the
training window's up rate) and momentum alone.

Calibration is nested the same way: fold k is calibrated by a Platt map fit
on the OOF predictions of folds 1..k-1 only, so the "calibrated" metrics are
out-of-sample too (fold 1 has none); the labels of fold k-1's last
``horizon`` bars read closes inside fold k, so they are purged from its
calibration set as they are from its training set. The model that is saved is
trained on all bars; its calibrator is fit on all OOF predictions.

With ``retrain_every`` set, the blocks are cut every N bars instead of into
``folds`` equal parts: a backtest's walk-forward model is retrained that
often (see :func:`app.engine.backtest.strategies.walk_forward_ensemble_model`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.engine.ml.dataset import Dataset, build_dataset
from app.engine.ml.edge import EdgeVerdict, assess, repeated_share
from app.engine.ml.ensemble import Ensemble, PlattCalibrator, combine, fit_weights
from app.engine.ml.factory import ModelFactory
from app.engine.ml.labels import LABELS, PRIMARY_RULE, TradeRules
from app.engine.ml.metrics import (
    classification_metrics,
    expected_calibration_error,
    fmt,
    reliability_table,
)
from app.engine.ml.models import COMPONENTS, ProgressFn, TrainingCancelled
from app.engine.types import timeframe_of

if TYPE_CHECKING:
    from app.engine.settings import Settings

REPORTED: tuple[str, ...] = (*COMPONENTS, "ensemble", "ensemble_calibrated", "always_up")
EnsembleFactory = Callable[[list[str], int], Ensemble]  # (feature columns, horizon) -> untrained
EMBARGO_SHARE = 0.01
LSTM_STRIDE_SECONDS = 15 * 60
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {"lstm": {"small": True},
                                              "random_forest": {"n_estimators": 20},
                                              "hist_gb": {"max_iter": 30}}


@dataclass
class TrainConfig:
    symbol: str = "PLTR"
    timeframe: str = "5m"
    horizon: int | None = None  # None: the timeframe's default (see dataset.py)
    folds: int = 5
    first_train_frac: float = 0.5
    retrain_every: int | None = None  # None: ``folds`` equal blocks; N: a new block every N bars
    first_train_bars: int | None = None  # the first training window in bars (None: first_train_frac)
    min_calibration: int = 100  # OOF samples a calibrator needs
    embargo: int | None = None  # bars left out before each test block (None: 1% of the bars)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-component constructor args
    jobs: int = 1  # cores the forest grows its trees on (the desk keeps one for the GUI)


@dataclass
class WalkForwardReport:
    horizon: int
    folds: list[dict[str, Any]]
    overall: dict[str, dict[str, Any]]
    calibration: dict[str, Any]
    oof: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    embargo: int = 0
    weights: dict[str, float] = field(default_factory=dict)  # chosen on the whole out-of-fold record
    calibrator: PlattCalibrator | None = None  # fit with those weights: the saved model's map

    def to_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "purge_bars": self.horizon, "embargo_bars": self.embargo,
                "folds": self.folds,
                "overall": self.overall, "calibration": self.calibration,
                "seconds": round(self.seconds, 2)}

    def lines(self) -> list[str]:
        out = [f"walk-forward: {len(self.folds)} folds, expanding window, labels purged where "
               f"their trade reads into a test block, embargo {self.embargo} bars, {len(self.oof)} "
               f"out-of-sample bars, {int(self.oof['primary'].sum())} of them the primary rule's buys"]
        for f in self.folds:
            ens, up = f["metrics"]["ensemble"], f["metrics"]["always_up"]
            out.append(f"  fold {f['fold']}: train {f['train_start'][:10]}..{f['train_end'][:10]} "
                       f"({f['train_labels']} labels), test {f['test_start'][:16]}..{f['test_end'][:16]}: "
                       f"ensemble acc {fmt(ens.get('accuracy'))} auc {fmt(ens.get('roc_auc'))}, "
                       f"always-up acc {fmt(up.get('accuracy'))}")
        out.append(f"  {'model':<20} {'n':>5} {'acc':>6} {'bal':>6} {'auc':>6} {'brier':>6} "
                   f"{'logloss':>7}  {'>=0.70 n/hit':>13}  {'>=0.80 n/hit':>13}")
        for name in REPORTED:
            m = self.overall.get(name) or {}
            if not m.get("n"):
                continue
            gates = [f"{m[k]['count']:>5}/{fmt(m[k]['hit_rate'], 2):>6}" for k in ("at_70", "at_80")]
            out.append(f"  {name:<20} {m['n']:>5} {fmt(m['accuracy']):>6} "
                       f"{fmt(m['balanced_accuracy']):>6} {fmt(m['roc_auc']):>6} {fmt(m['brier']):>6} "
                       f"{fmt(m['log_loss']):>7}  {gates[0]:>13}  {gates[1]:>13}")
        c = self.calibration
        out.append(f"  calibration ({c['method']}): ECE raw {fmt(c['ece_raw'])}, walk-forward "
                   f"calibrated {fmt(c['ece_walk_forward'])}, final map a={fmt(c.get('a'))} "
                   f"b={fmt(c.get('b'))} on {c.get('n', 0)} OOF bars")
        out.append("  reliability (walk-forward calibrated): P(up) bin -> bars, stated, observed")
        for r in c["reliability"]:
            if r["n"]:
                out.append(f"    {r['lo']:.1f}-{r['hi']:.1f}: {r['n']:>5}  {fmt(r['mean_p'])}  "
                           f"{fmt(r['observed'])}")
        return out


@dataclass
class TrainResult:
    ensemble: Ensemble
    report: WalkForwardReport
    info: dict[str, Any]  # what the bundle's metadata keeps, the edge verdict included
    verdict: EdgeVerdict


def fold_edges(n: int, folds: int, first_train_frac: float) -> list[tuple[int, int]]:
    """[start, end) bar positions of each test block."""
    if folds < 1:
        raise ValueError("need at least one fold")
    first = int(round(n * first_train_frac))
    if not 0 < first < n - folds:
        raise ValueError(f"{n:,} bars leave no room for {folds} test folds after the first training window")
    edges = np.linspace(first, n, folds + 1).round().astype(int)
    return list(itertools.pairwise(edges.tolist()))


def every_n_edges(n: int, every: int, first: int) -> list[tuple[int, int]]:
    """Test blocks of ``every`` bars after a first training window of ``first``
    bars; the last block holds what is left (it may be shorter)."""
    if every < 1:
        raise ValueError("retrain_every must be at least one bar")
    if not 0 < first < n:
        raise ValueError(f"{n} bars leave nothing to test after a first training window of {first}")
    return [(a, min(a + every, n)) for a in range(first, n, every)]


def block_edges(n: int, config: TrainConfig) -> list[tuple[int, int]]:
    """The walk-forward test blocks ``config`` asks for: ``folds`` equal blocks
    after ``first_train_frac`` of the bars, or one every ``retrain_every`` bars."""
    if config.retrain_every is None:
        return fold_edges(n, config.folds, config.first_train_frac)
    first = config.first_train_bars or int(round(n * config.first_train_frac))
    return every_n_edges(n, config.retrain_every, first)


def purged_labels(ds: Dataset, test_start: int, embargo: int = 0) -> np.ndarray:
    """Training labels for a block starting at ``test_start``: a label whose trade ends at or
    after the block's first bar reads prices inside it and is blanked (the purge), and so are
    the ``embargo`` labels before the block (features of neighbouring bars are correlated)."""
    out = np.asarray(ds.y[:test_start], dtype="float64").copy()
    out[ds.exit_pos[:test_start] >= test_start] = np.nan
    if embargo > 0:
        out[max(0, test_start - embargo):] = np.nan
    return out


def embargo_bars(n: int) -> int:
    """Lopez de Prado's rule of thumb: about 1% of the bars."""
    return int(math.ceil(EMBARGO_SHARE * n))


def payoff(ret: np.ndarray, y: np.ndarray, primary: np.ndarray) -> tuple[float, float] | None:
    """(the mean return of the primary rule's winning trades, of its losing ones) among the
    labelled rows given; None when either kind is missing."""
    ok = np.isfinite(y) & np.isfinite(ret) & primary
    wins, losses = ret[ok & (y == 1)], ret[ok & (y == 0)]
    if not len(wins) or not len(losses):
        return None
    return float(wins.mean()), float(losses.mean())


def expected_bps(p: np.ndarray, pay: tuple[float, float] | None) -> np.ndarray:
    """A trade's expected return after costs, in bps, from its calibrated P(profitable) and the
    mean winning and losing trade: p * win + (1 - p) * loss."""
    p = np.asarray(p, dtype="float64")
    if pay is None:
        return np.full(len(p), np.nan)
    return (p * pay[0] + (1 - p) * pay[1]) * 1e4


def build_ensemble(settings: Settings, config: TrainConfig, columns: list[str], horizon: int) -> Ensemble:
    overrides = dict(config.overrides)
    overrides["lstm"] = {"stride": lstm_stride(config.timeframe), **overrides.get("lstm", {})}
    overrides["random_forest"] = {"n_jobs": config.jobs, **overrides.get("random_forest", {})}
    model = ModelFactory.build("ensemble", settings, columns=columns, horizon=horizon, **overrides)
    assert isinstance(model, Ensemble)
    return model


def lstm_stride(timeframe: str) -> int:
    """Bars between the LSTM's training sequences: 15 minutes' worth intraday, every bar on
    longer bars."""
    tf = timeframe_of(timeframe)
    return max(1, LSTM_STRIDE_SECONDS // tf.seconds) if tf.intraday else 1


def walk_forward(ds: Dataset, settings: Settings, config: TrainConfig,
                 progress: ProgressFn | None = None,
                 factory: EnsembleFactory | None = None) -> WalkForwardReport:
    """Out-of-fold predictions and metrics for one symbol; ``factory`` builds each fold's
    fresh, untrained ensemble (default: the settings' ensemble)."""
    cuts = [(ds.index[a], ds.index[b] if b < len(ds) else None) for a, b in block_edges(len(ds), config)]
    return walk_forward_sets({config.symbol: ds}, cuts, settings, config, progress, factory)


def walk_forward_sets(sets: dict[str, Dataset], cuts: list[tuple[pd.Timestamp, pd.Timestamp | None]],
                      settings: Settings, config: TrainConfig, progress: ProgressFn | None = None,
                      factory: EnsembleFactory | None = None) -> WalkForwardReport:
    """The walk-forward over one or several symbols' datasets, cut at the same times: each
    block's model is trained on every symbol's bars before the cut (purged, embargoed) and
    predicts every symbol's bars up to the next. Its ensemble weights, calibration and payoff
    come from earlier blocks only."""
    make = factory or (lambda cols, h: build_ensemble(settings, config, cols, h))
    started = time.perf_counter()
    first = next(iter(sets.values()))
    horizon = max(d.horizon for d in sets.values())
    embargo = {s: embargo_bars(len(d)) if config.embargo is None else config.embargo for s, d in sets.items()}
    spans = [{s: _span(d, ta, tb) for s, d in sets.items()} for ta, tb in cuts]
    work = np.array([sum(a for a, _ in sp.values()) for sp in spans], dtype=float)
    done = np.concatenate([[0.0], np.cumsum(work)]) / work.sum()
    blocks: list[pd.DataFrame] = []
    folds: list[dict[str, Any]] = []
    for k, (sp, (ta, _)) in enumerate(zip(spans, cuts, strict=True)):
        sub = scaled_progress(progress, done[k], done[k + 1], f"fold {k + 1}/{len(cuts)}: ")
        ens = make(first.columns, horizon)
        X, y_train, primary, ret, starts = stack(sets, {s: a for s, (a, _) in sp.items()}, embargo, ens.lookback)
        ens.fit(X, y_train, progress=sub, segments=starts)
        block = pd.concat([_predicted(ens, s, d, *sp[s]) for s, d in sets.items() if sp[s][1] > sp[s][0]])
        block = block.sort_index(kind="stable")
        seen = _seen(blocks, ta.value)
        weights = (learn_weights(seen, ens.weights, config) if seen is not None else None) or ens.weights
        block["ensemble"] = combine({c: block[c].to_numpy() for c in ens.components}, weights)
        block["always_up"] = float(np.nanmean(y_train[primary])) if primary.any() else np.nan
        nested = fit_calibrator(seen, config, weights) if seen is not None else None
        block["ensemble_calibrated"] = nested.apply(block["ensemble"].to_numpy()) if nested else np.nan
        block["expected_bps"] = _expected(block, sets, sp, embargo, payoff(ret, y_train, primary))
        block["fold"] = k + 1
        blocks.append(block)
        folds.append({"fold": k + 1, "train_start": str(min(d.index[0] for d in sets.values())),
                      "train_end": str(max(d.index[a - 1] for s, d in sets.items() if (a := sp[s][0]) > 0)),
                      "test_start": str(block.index[0]), "test_end": str(block.index[-1]),
                      "train_labels": int(np.isfinite(y_train).sum()), "skipped": dict(ens.skipped),
                      "weights": dict(weights), "metrics": _score(block)})
    oof = pd.concat(blocks)
    final_weights = learn_weights(oof, ens.weights, config) or ens.weights
    final = fit_calibrator(oof, config, final_weights)  # the saved model's: same weights, same map
    cand = oof[oof["primary"]]
    cal = {"method": "platt", "ece_raw": expected_calibration_error(cand["y"], cand["ensemble"]),
           "ece_walk_forward": expected_calibration_error(cand["y"], cand["ensemble_calibrated"]),
           "reliability": reliability_table(cand["y"], cand["ensemble_calibrated"]),
           "reliability_raw": reliability_table(cand["y"], cand["ensemble"]),
           **(final.to_dict() if final else {"note": "too few out-of-fold bars to calibrate"})}
    if final is not None:
        in_sample = final.apply(cand["ensemble"].to_numpy())
        cal["ece_final_in_sample"] = expected_calibration_error(cand["y"], in_sample)
    return WalkForwardReport(horizon, folds, _score(oof), cal, oof, time.perf_counter() - started,
                             max(embargo.values()), final_weights, final)


def _expected(block: pd.DataFrame, sets: dict[str, Dataset], spans: dict[str, tuple[int, int]],
              embargo: dict[str, int], pooled: tuple[float, float] | None) -> np.ndarray:
    """Each row's expected return in bps from its own symbol's training trades (the pooled
    ones where a symbol has no winner or no loser yet), as the symbol's saved model states it."""
    p = block["ensemble_calibrated"].to_numpy(dtype="float64")
    out = np.full(len(block), np.nan)
    symbols = block["symbol"].to_numpy()
    for s, d in sets.items():
        a = spans[s][0]
        own = payoff(d.ret[:a], purged_labels(d, a, embargo[s]), d.primary[:a]) or pooled
        rows = symbols == s
        out[rows] = expected_bps(p[rows], own)
    return out


def _span(ds: Dataset, start: pd.Timestamp, end: pd.Timestamp | None) -> tuple[int, int]:
    """[a, b): the positions of ``ds``'s bars from ``start`` up to ``end`` (None: the last)."""
    a = int(ds.index.searchsorted(start))
    return a, len(ds) if end is None else int(ds.index.searchsorted(end))


def stack(sets: dict[str, Dataset], upto: dict[str, int], embargo: dict[str, int],
          lookback: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Every symbol's rows before its cut, one after another, as (X, purged labels, primary,
    returns, where each symbol's rows start). The first ``lookback - 1`` labels of each symbol
    after the first are blanked, so no sequence or lag a model reads spans two symbols."""
    Xs, ys, prims, rets = [], [], [], []
    starts = [0]
    for k, (s, d) in enumerate(sets.items()):
        a = upto[s]
        y = purged_labels(d, a, embargo[s])
        if k:
            y[: lookback - 1] = np.nan
        Xs.append(d.X[:a])
        ys.append(y)
        prims.append(d.primary[:a])
        rets.append(d.ret[:a])
        starts.append(starts[-1] + a)
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(prims), np.concatenate(rets), starts[:-1]


def _predicted(ens: Ensemble, symbol: str, ds: Dataset, a: int, b: int) -> pd.DataFrame:
    """One symbol's test rows [a, b): its labels and every component's P, read with the
    history before ``a`` as context."""
    ctx = max(0, a - ens.lookback + 1)
    parts = {name: p[a - ctx:] for name, p in ens.predict_parts(ds.X[ctx:b]).items()}
    ends = ds.index.as_unit("ns").asi8
    exit_ns = np.where(ds.exit_pos[a:b] >= 0, ends[np.maximum(ds.exit_pos[a:b], 0)], np.iinfo("int64").max)
    block = pd.DataFrame({"symbol": symbol, "y": ds.y[a:b], "ret": ds.ret[a:b], "primary": ds.primary[a:b],
                          "exit": exit_ns}, index=ds.index[a:b])
    for name in COMPONENTS:
        block[name] = parts.get(name, np.full(b - a, np.nan))
    return block


def _seen(previous: list[pd.DataFrame], start: int) -> pd.DataFrame | None:
    """The earlier blocks' out-of-sample rows for the block starting at ``start`` (ns since
    the epoch), less the labels whose trade ends inside it (they read its prices); None
    before the first."""
    if not previous:
        return None
    seen = pd.concat(previous)
    seen.loc[seen["exit"].to_numpy() >= start, "y"] = np.nan
    return seen


def learn_weights(oof: pd.DataFrame, prior: dict[str, float], config: TrainConfig) -> dict[str, float] | None:
    """The components' weights by out-of-sample log loss on the primary rule's bars."""
    cand = oof[oof["primary"]]
    parts = {k: cand[k].to_numpy(dtype="float64") for k in prior if k in cand}
    return fit_weights(parts, cand["y"].to_numpy(dtype="float64"), prior, config.min_calibration)


def fit_calibrator(oof: pd.DataFrame, config: TrainConfig,
                   weights: dict[str, float] | None = None) -> PlattCalibrator | None:
    """A Platt map of the ensemble's raw P on the primary rule's bars (those it is used on);
    with ``weights``, of the components recombined with them."""
    cand = oof[oof["primary"]]
    raw = combine({k: cand[k].to_numpy(dtype="float64") for k in weights if k in cand}, weights) \
        if weights else cand["ensemble"].to_numpy(dtype="float64")
    y = cand["y"].to_numpy(dtype="float64")
    ok = np.isfinite(y) & np.isfinite(raw)
    if ok.sum() < config.min_calibration:
        return None
    try:
        return PlattCalibrator.fit(raw[ok], y[ok])
    except ValueError:
        return None


def _score(block: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each model's metrics on the primary rule's bars (the trades it is asked about), every
    model on the same ones: those the calibrated ensemble answers, where it answers any (the
    first block has no calibration of its own). A P is the chance a buy makes money, so only
    P >= 0.70 counts as a confident call."""
    cand = block[block["primary"].to_numpy(dtype=bool)]
    calibrated = np.isfinite(cand["ensemble_calibrated"].to_numpy(dtype="float64"))
    if calibrated.any():
        cand = cand[calibrated]
    y = cand["y"].to_numpy()
    out = {}
    for name in REPORTED:
        p = cand[name].to_numpy(dtype="float64")
        decision = np.ones(len(p)) if name == "always_up" else None
        out[name] = classification_metrics(y, p, decision, long_only=decision is None)
    return out


def train(frame: pd.DataFrame, settings: Settings, config: TrainConfig,
          progress: ProgressFn | None = None, factory: EnsembleFactory | None = None) -> TrainResult:
    """Walk-forward evaluation, then the final ensemble on every bar, its weights and its
    calibration fit on the out-of-fold predictions.

    ``progress(fraction, message)`` is called throughout; returning False
    cancels (:class:`TrainingCancelled`) before anything is saved.
    """
    make = factory or (lambda cols, h: build_ensemble(settings, config, cols, h))
    started = time.perf_counter()
    rules = TradeRules.from_settings(settings, config.horizon)
    ds = build_dataset(frame, config.timeframe, config.horizon, rules)
    candidates = int((np.isfinite(ds.y) & ds.primary).sum())
    if ds.labelled < 200 or candidates < 100:
        raise ValueError(f"only {ds.labelled} labelled bars, {candidates} of them the primary rule's buys: "
                         "too few to train and test a model")
    n_wf = sum(a for a, _ in block_edges(len(ds), config))
    split = n_wf / (n_wf + len(ds))
    report = walk_forward(ds, settings, config, scaled_progress(progress, 0.0, split, ""), make)
    ens = make(ds.columns, ds.horizon)
    ens.fit(ds.X, ds.y, progress=scaled_progress(progress, split, 1.0, "final model: "))
    ens.weights = {k: w for k, w in report.weights.items() if k in ens.components} or ens.weights
    ens.calibrator = report.calibrator
    verdict = judge(report, ens.calibrator, ds, settings.approval_threshold)
    labelled = np.flatnonzero(np.isfinite(ds.y))
    pay = payoff(ds.ret, ds.y, ds.primary)
    info = {"symbol": config.symbol, "market": [config.symbol], "timeframe": config.timeframe, "horizon": ds.horizon,
            "labels": LABELS, "primary_rule": PRIMARY_RULE, "trade_rules": rules.to_dict(),
            "payoff": {"win_bps": round(pay[0] * 1e4, 2), "loss_bps": round(pay[1] * 1e4, 2)} if pay else None,
            "weights": dict(ens.weights), "embargo_bars": report.embargo,
            "features": list(ds.columns), "bars": len(ds), "labelled": ds.labelled,
            "train_start": ds.index[0].isoformat(), "train_end": ds.index[-1].isoformat(),
            "last_label": ds.index[labelled[-1]].isoformat(), "skipped": dict(ens.skipped),
            "seconds": round(time.perf_counter() - started, 2), **verdict.to_dict()}
    if progress is not None:
        progress(1.0, "done")
    return TrainResult(ens, report, info, verdict)


def judge(report: WalkForwardReport, calibrator: PlattCalibrator | None, ds: Dataset,
          threshold: float) -> EdgeVerdict:
    """The edge verdict at the user's approval threshold, on trades already net of the desk's
    costs (slippage both ways, and the commission per share as a share of the median price)."""
    first_test = int(ds.index.get_loc(report.oof.index[0])) if len(report.oof) else 0
    return assess(report.oof, calibrator, threshold=threshold,
                  cost_bps=ds.rules.cost_bps, horizon=ds.typical_hold, repeated=repeated_share(ds.close, first_test))


def scaled_progress(progress: ProgressFn | None, lo: float, hi: float, prefix: str) -> ProgressFn | None:
    """A progress callback mapped onto [lo, hi]; a False answer cancels by raising."""
    if progress is None:
        return None

    def call(fraction: float, message: str) -> bool:
        if not progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), prefix + message):
            raise TrainingCancelled("training cancelled")
        return True

    return call
