"""Model strategies for backtests, computed for every bar in one vectorised pass.

The features are strictly causal (a test rewrites later bars and checks no
earlier row changes), so P(up) computed for all bars at once is exactly what
the live model would have said at each bar's close. The bot then trades on
it bar by bar through the usual signal, risk and order code.

The ensemble comes two ways: the saved, pre-trained bundle (its notes flag a
window that overlaps its training data), or walked forward, retrained every
N bars on the bars before each block only, so every P(up) is out of sample.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.engine.backtest.config import STRATEGIES, BacktestCancelled, check_retrain_every
from app.engine.data.features import FEATURE_COLUMNS, compute_features
from app.engine.data.frame import bars_to_frame, is_intraday
from app.engine.ml.artifacts import ArtifactError, load_bundle
from app.engine.ml.dataset import build_dataset
from app.engine.ml.live import edge_of, market_note, predict_frame
from app.engine.ml.models import MomentumModel, ProgressFn, TrainingCancelled
from app.engine.ml.train import TrainConfig, WalkForwardReport, walk_forward
from app.engine.paths import model_dir
from app.engine.settings import Settings
from app.engine.strategy.base import SignalModel
from app.engine.strategy.precomputed import PrecomputedModel
from app.engine.strategy.rules import RulesModel
from app.engine.strategy.sma_cross import SmaCrossModel
from app.engine.types import Bar

# The first walk-forward model is trained on max(N, this many) bars: fewer
# leave the LSTM and the forest too few labelled rows to learn anything.
MIN_FIRST_TRAIN_BARS = 500


UNCALIBRATED_MOMENTUM = ("momentum is UNCALIBRATED: its P(up) is a squash of past returns, not a measured "
                         "frequency, so its 0.70 and 0.80 are not 7 or 8 in 10 (the README's model tables)")


def momentum_model(bars: list[Bar], timeframe: str) -> PrecomputedModel:
    feats = compute_features(bars_to_frame(bars), is_intraday(timeframe))
    cols = [c for c in FEATURE_COLUMNS if c in feats.columns]
    p = MomentumModel(cols).predict_proba(feats[cols].to_numpy(dtype="float64"))
    return PrecomputedModel.from_probabilities("momentum", [b.time for b in bars], p, "momentum-v1")


def ensemble_model(bars: list[Bar], timeframe: str, symbol: str, models_dir: Path,
                   weights: dict[str, float]) -> tuple[PrecomputedModel, list[str]]:
    """The trained ensemble over ``bars``; notes say when the backtest overlaps
    the model's own training window (in-sample, not a test of anything)."""
    try:
        bundle = load_bundle(model_dir(models_dir, symbol, timeframe), symbol=symbol, timeframe=timeframe)
    except ArtifactError as exc:
        raise ValueError(str(exc)) from None
    frame = predict_frame(bundle, bars_to_frame(bars), weights)
    notes = [f"model trained on {bundle.meta.get('train_start', '?')[:10]} .. "
             f"{bundle.meta.get('train_end', '?')[:10]}"]
    if (note := market_note(bundle.meta.get("market") or [symbol], {symbol})) is not None:
        notes.append(f"{note} (this symbol alone in a backtest): its market features are not the ones it learned")
    no_edge = edge_of(bundle.meta)
    if no_edge:
        notes.append(f"NO DEMONSTRATED EDGE ({no_edge}): the live app never trades this model, it trades "
                     "its rules model")
    start, end = bundle.meta.get("train_start"), bundle.meta.get("train_end")
    if start and end and _utc(bars[0].time) <= _parse(end) and _utc(bars[-1].time) >= _parse(start):
        notes.append("IN-SAMPLE: this window overlaps the model's training data; the result says "
                     "nothing about future performance")
    times = [t.to_pydatetime() for t in frame.index]
    model = PrecomputedModel.from_trade_chances("ensemble", times, frame["p_up"].to_numpy(),
                                                frame["primary"].to_numpy(), frame["expected_bps"].to_numpy(),
                                                "ensemble")
    return model, notes


def walk_forward_ensemble_model(bars: list[Bar], timeframe: str, symbol: str, settings: Settings,
                                retrain_every: int, progress: ProgressFn | None = None,
                                overrides: dict[str, dict[str, Any]] | None = None,
                                ) -> tuple[PrecomputedModel, list[str]]:
    """The ensemble retrained every ``retrain_every`` bars (expanding window):
    the P(up) at each bar comes from a model that never saw that bar or a later
    one. Bars of the first training window get no P(up), so nothing trades
    there. ``progress(fraction, message)`` returning False cancels
    (:class:`~app.engine.backtest.config.BacktestCancelled`)."""
    if retrain_every < 1:
        raise ValueError(f"retrain_every must be a positive number of bars (got {retrain_every})")
    ds = build_dataset(bars_to_frame(bars), timeframe)
    first = max(retrain_every, MIN_FIRST_TRAIN_BARS)
    if len(ds) <= first:
        raise ValueError(f"walking forward every {retrain_every} bars needs more than {first} bars "
                         f"(the first training window); this window has {len(ds)}")
    config = TrainConfig(symbol=symbol, timeframe=timeframe, retrain_every=retrain_every,
                         first_train_bars=first, overrides=dict(overrides or {}))
    try:
        report = walk_forward(ds, settings, config, progress)
    except TrainingCancelled:
        raise BacktestCancelled("cancelled while training the walk-forward models") from None
    p_up, raw_bars = out_of_sample_p_up(report.oof)
    times = [t.to_pydatetime() for t in report.oof.index]
    model = PrecomputedModel.from_trade_chances("ensemble", times, p_up, report.oof["primary"].to_numpy(),
                                                report.oof["expected_bps"].to_numpy(), f"ensemble-wf{retrain_every}")
    return model, _walk_forward_notes(report, ds.index, retrain_every, first, raw_bars,
                                      config.min_calibration)


def out_of_sample_p_up(oof: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The nested-calibrated P(up) where there is one, else the raw ensemble (the
    first block has no earlier predictions to calibrate on); and how many bars
    fell back to the raw one."""
    cal = oof["ensemble_calibrated"].to_numpy(dtype="float64")
    raw = oof["ensemble"].to_numpy(dtype="float64")
    fallback = ~np.isfinite(cal) & np.isfinite(raw)
    return np.where(np.isfinite(cal), cal, raw), int(fallback.sum())


def _walk_forward_notes(report: WalkForwardReport, index: pd.DatetimeIndex, every: int, first: int,
                        raw_bars: int, min_calibration: int) -> list[str]:
    folds = report.folds
    retrains = f"{len(folds)} retrain{'s' if len(folds) != 1 else ''}"
    notes = [f"walk-forward: {retrains}, every {every} bars (expanding window); the first "
             f"model is trained on {str(index[0])[:10]} .. {str(index[first - 1])[:10]} ({first} bars), "
             f"which are not traded",
             f"each bar's P(trade profitable) comes from a model trained only on earlier bars (labels "
             f"purged where their trade reads into the block, embargo {report.embargo} bars); no saved "
             f"model is used",
             f"{len(report.oof):,} out-of-sample bars ({folds[0]['test_start'][:10]} .. "
             f"{folds[-1]['test_end'][:10]}), trained in {report.seconds:.1f} s"]
    if raw_bars:
        notes.append(f"{raw_bars:,} bars use the uncalibrated ensemble P: the first block has no "
                     f"calibrator yet (each block's Platt map is fit on the earlier blocks' "
                     f"out-of-sample predictions, {min_calibration} at least)")
    skipped: dict[str, int] = {}
    for f in folds:
        for name in f["skipped"]:
            skipped[name] = skipped.get(name, 0) + 1
    notes += [f"{name} could not be trained in {k} of {len(folds)} retrains and was left out there"
              for name, k in skipped.items()]
    return notes


def _parse(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def make_model(strategy: str, bars: list[Bar] | None = None, timeframe: str = "5m",
               symbol: str = "PLTR", models_dir: Path | None = None,
               settings: Settings | None = None, *, retrain_every: int = 0,
               progress: Callable[[float, str], bool] | None = None) -> tuple[SignalModel, list[str]]:
    """The strategy's model and notes for the report. Given ``bars``, ``sma_cross``,
    ``momentum`` and ``ensemble`` are computed for all of them at once (causal).
    ``retrain_every`` > 0 walks the ensemble forward instead of loading the saved
    one; ``progress(fraction, message)`` then follows its training."""
    check_retrain_every(retrain_every, strategy)
    if strategy == "momentum" and bars is not None:
        return momentum_model(bars, timeframe), [UNCALIBRATED_MOMENTUM]
    if strategy == "ensemble" and bars is not None:
        if retrain_every:
            return walk_forward_ensemble_model(bars, timeframe, symbol, settings or Settings(), retrain_every,
                                               progress)
        if models_dir is None:
            raise ValueError("the ensemble strategy needs a trained model (python main.py train ...)")
        return ensemble_model(bars, timeframe, symbol, models_dir, (settings or Settings()).ensemble_weights())
    if strategy == "sma_cross":
        return (SmaCrossModel().precompute(bars) if bars is not None else SmaCrossModel()), []
    if strategy == "rules":
        return RulesModel(), []
    raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")


