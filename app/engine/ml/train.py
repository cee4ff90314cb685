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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.engine.ml.dataset import Dataset, build_dataset
from app.engine.ml.edge import EdgeVerdict, assess, forward_returns, repeated_share
from app.engine.ml.ensemble import Ensemble, PlattCalibrator, combine
from app.engine.ml.factory import ModelFactory
from app.engine.ml.metrics import (
    classification_metrics,
    expected_calibration_error,
    fmt,
    reliability_table,
)
from app.engine.ml.models import COMPONENTS, ProgressFn, TrainingCancelled

if TYPE_CHECKING:
    from app.engine.settings import Settings

REPORTED: tuple[str, ...] = (*COMPONENTS, "ensemble", "ensemble_calibrated", "always_up")
EnsembleFactory = Callable[[list[str], int], Ensemble]  # (feature columns, horizon) -> untrained
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {"lstm": {"small": True},
                                              "random_forest": {"n_estimators": 20}}


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
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-component constructor args


@dataclass
class WalkForwardReport:
    horizon: int
    folds: list[dict[str, Any]]
    overall: dict[str, dict[str, Any]]
    calibration: dict[str, Any]
    oof: pd.DataFrame = field(repr=False)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "purge_bars": self.horizon, "folds": self.folds,
                "overall": self.overall, "calibration": self.calibration,
                "seconds": round(self.seconds, 2)}

    def lines(self) -> list[str]:
        out = [f"walk-forward: {len(self.folds)} folds, expanding window, purge {self.horizon} bars, "
               f"{len(self.oof)} out-of-sample bars"]
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
        raise ValueError("first_train_frac leaves no room for the test folds")
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


def purged_labels(y: np.ndarray, test_start: int, horizon: int) -> np.ndarray:
    """Training labels for a block starting at ``test_start``: those that read a
    close inside the block (the last ``horizon`` before it) are blanked."""
    out = np.asarray(y[:test_start], dtype="float64").copy()
    out[max(0, test_start - horizon):] = np.nan
    return out


def build_ensemble(settings: Settings, config: TrainConfig, columns: list[str], horizon: int) -> Ensemble:
    model = ModelFactory.build("ensemble", settings, columns=columns, horizon=horizon,
                               **config.overrides)
    assert isinstance(model, Ensemble)
    return model


def walk_forward(ds: Dataset, settings: Settings, config: TrainConfig,
                 progress: ProgressFn | None = None,
                 factory: EnsembleFactory | None = None) -> WalkForwardReport:
    """Out-of-fold predictions and metrics; ``factory`` builds each fold's fresh,
    untrained ensemble (default: the settings' ensemble)."""
    make = factory or (lambda cols, h: build_ensemble(settings, config, cols, h))
    started = time.perf_counter()
    edges = block_edges(len(ds), config)
    h = ds.horizon
    work = np.array([a for a, _ in edges], dtype=float)
    done = np.concatenate([[0.0], np.cumsum(work)]) / work.sum()
    blocks: list[pd.DataFrame] = []
    folds: list[dict[str, Any]] = []
    fwd = forward_returns(ds.close, h, ds.y)
    for k, (a, b) in enumerate(edges):
        sub = _scaled(progress, done[k], done[k + 1], f"fold {k + 1}/{len(edges)}: ")
        y_train = purged_labels(ds.y, a, h)
        ens = make(ds.columns, h)
        ens.fit(ds.X[:a], y_train, progress=sub)
        ctx = max(0, a - ens.lookback + 1)
        parts = {name: p[a - ctx:] for name, p in ens.predict_parts(ds.X[ctx:b]).items()}
        block = pd.DataFrame({"y": ds.y[a:b], "ret": fwd[a:b]}, index=ds.index[a:b])
        for name in COMPONENTS:
            block[name] = parts.get(name, np.full(b - a, np.nan))
        block["ensemble"] = combine(parts, ens.weights)
        block["always_up"] = float(np.nanmean(y_train))
        block["ensemble_calibrated"] = _nested_calibration(blocks, block["ensemble"], config, h)
        block["fold"] = k + 1
        blocks.append(block)
        folds.append({"fold": k + 1, "train_start": str(ds.index[0]), "train_end": str(ds.index[a - 1]),
                      "test_start": str(ds.index[a]), "test_end": str(ds.index[b - 1]),
                      "train_labels": int(np.isfinite(y_train).sum()), "skipped": dict(ens.skipped),
                      "metrics": _score(block)})
    oof = pd.concat(blocks)
    final = fit_calibrator(oof, config)
    cal = {"method": "platt", "ece_raw": expected_calibration_error(oof["y"], oof["ensemble"]),
           "ece_walk_forward": expected_calibration_error(oof["y"], oof["ensemble_calibrated"]),
           "reliability": reliability_table(oof["y"], oof["ensemble_calibrated"]),
           "reliability_raw": reliability_table(oof["y"], oof["ensemble"]),
           **(final.to_dict() if final else {"note": "too few out-of-fold bars to calibrate"})}
    if final is not None:
        in_sample = final.apply(oof["ensemble"].to_numpy())
        cal["ece_final_in_sample"] = expected_calibration_error(oof["y"], in_sample)
    return WalkForwardReport(h, folds, _score(oof), cal, oof, time.perf_counter() - started)


def _nested_calibration(previous: list[pd.DataFrame], raw: pd.Series, config: TrainConfig,
                        horizon: int) -> np.ndarray:
    """This block's P(up) through a Platt map fit on the earlier blocks only; their
    last ``horizon`` labels read closes inside this block and are purged."""
    if not previous:
        return np.full(len(raw), np.nan)
    seen = pd.concat(previous)
    seen["y"] = purged_labels(seen["y"].to_numpy(), len(seen), horizon)
    cal = fit_calibrator(seen, config)
    return cal.apply(raw.to_numpy()) if cal is not None else np.full(len(raw), np.nan)


def fit_calibrator(oof: pd.DataFrame, config: TrainConfig) -> PlattCalibrator | None:
    ok = np.isfinite(oof["y"]) & np.isfinite(oof["ensemble"])
    if ok.sum() < config.min_calibration:
        return None
    try:
        return PlattCalibrator.fit(oof["ensemble"][ok].to_numpy(), oof["y"][ok].to_numpy())
    except ValueError:
        return None


def _score(block: pd.DataFrame) -> dict[str, dict[str, Any]]:
    y = block["y"].to_numpy()
    out = {}
    for name in REPORTED:
        p = block[name].to_numpy(dtype="float64")
        decision = np.ones(len(p)) if name == "always_up" else None
        out[name] = classification_metrics(y, p, decision)
    return out


def train(frame: pd.DataFrame, settings: Settings, config: TrainConfig,
          progress: ProgressFn | None = None, factory: EnsembleFactory | None = None) -> TrainResult:
    """Walk-forward evaluation, then the final ensemble on every bar, calibrated on the OOF.

    ``progress(fraction, message)`` is called throughout; returning False
    cancels (:class:`TrainingCancelled`) before anything is saved.
    """
    make = factory or (lambda cols, h: build_ensemble(settings, config, cols, h))
    started = time.perf_counter()
    ds = build_dataset(frame, config.timeframe, config.horizon)
    if ds.labelled < 200:
        raise ValueError(f"only {ds.labelled} labelled bars: too few to train and test a model")
    n_wf = sum(a for a, _ in block_edges(len(ds), config))
    split = n_wf / (n_wf + len(ds))
    report = walk_forward(ds, settings, config, _scaled(progress, 0.0, split, ""), make)
    ens = make(ds.columns, ds.horizon)
    ens.fit(ds.X, ds.y, progress=_scaled(progress, split, 1.0, "final model: "))
    ens.calibrator = fit_calibrator(report.oof, config)
    verdict = judge(report, ens.calibrator, settings, ds)
    labelled = np.flatnonzero(np.isfinite(ds.y))
    info = {"symbol": config.symbol, "timeframe": config.timeframe, "horizon": ds.horizon,
            "features": list(ds.columns), "bars": len(ds), "labelled": ds.labelled,
            "train_start": ds.index[0].isoformat(), "train_end": ds.index[-1].isoformat(),
            "last_label": ds.index[labelled[-1]].isoformat(), "skipped": dict(ens.skipped),
            "seconds": round(time.perf_counter() - started, 2), **verdict.to_dict()}
    if progress is not None:
        progress(1.0, "done")
    return TrainResult(ens, report, info, verdict)


def judge(report: WalkForwardReport, calibrator: PlattCalibrator | None, settings: Settings,
          ds: Dataset) -> EdgeVerdict:
    """The edge verdict at the user's approval threshold and costs: slippage both ways, and
    the commission per share as a share of the median price."""
    price = float(np.nanmedian(ds.close)) if len(ds) else 0.0
    commission = 2 * settings.commission_per_share / price * 1e4 if price > 0 else 0.0
    first_test = int(ds.index.get_loc(report.oof.index[0])) if len(report.oof) else 0
    return assess(report.oof, calibrator, threshold=settings.approval_threshold,
                  cost_bps=round(2 * settings.slippage_bps + commission, 2), horizon=ds.horizon,
                  repeated=repeated_share(ds.close, first_test))


def _scaled(progress: ProgressFn | None, lo: float, hi: float, prefix: str) -> ProgressFn | None:
    """A progress callback mapped onto [lo, hi]; a False answer cancels by raising."""
    if progress is None:
        return None

    def call(fraction: float, message: str) -> bool:
        if not progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), prefix + message):
            raise TrainingCancelled("training cancelled")
        return True

    return call
