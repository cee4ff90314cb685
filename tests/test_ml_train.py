"""Walk-forward training: purged folds, honest metrics, nested calibration, cancelling."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from app.engine.clock import NY
from app.engine.data.frame import make_frame
from app.engine.ml.dataset import build_dataset, load_csv_bars
from app.engine.ml.ensemble import Ensemble
from app.engine.ml.metrics import classification_metrics, reliability_table
from app.engine.ml.models import Model, MomentumModel, TrainingCancelled
from app.engine.ml.train import TrainConfig, fold_edges, purged_labels, train, walk_forward
from app.engine.settings import Settings

SETTINGS = Settings(timeframe="1d")


def daily_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2021-01-04", periods=n).tz_localize(NY).tz_convert("UTC")
    close = 20 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = np.r_[20.0, close[:-1]]  # each day moves from the last close: a trade's day has a result
    high, low = np.maximum(open_, close) * 1.005, np.minimum(open_, close) * 0.995
    return make_frame(idx, open_, high, low, close, np.full(n, 1e6))


class Recorder(Model):
    """Remembers what it was trained on; predicts a constant."""

    name = "recorder"
    seen: ClassVar[list[tuple[int, int]]] = []  # shared by every instance: the test reads it after training

    def fit(self, X, y, *, progress=None):
        labelled = np.flatnonzero(np.isfinite(y))
        Recorder.seen.append((len(X), int(labelled[-1])))
        return self

    def predict_proba(self, X):
        return np.full(len(X), 0.55)


class Peeker(Model):
    """Reads the label smuggled into column 0: the signal a metric must notice."""

    name = "peeker"

    def fit(self, X, y, *, progress=None):
        return self

    def predict_proba(self, X):
        return 0.5 + 0.3 * (2 * X[:, 0] - 1)


def test_folds_tile_the_history_after_the_first_window() -> None:
    edges = fold_edges(1000, 4, 0.5)
    assert edges[0][0] == 500 and edges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(edges))
    with pytest.raises(ValueError):
        fold_edges(10, 20, 0.5)


def test_purge_blanks_labels_that_read_prices_in_the_test_fold_and_the_embargo_before_it() -> None:
    ds = build_dataset(daily_frame(60), "1d")  # a daily trade lasts until its stops end it
    got = purged_labels(ds, 40)
    reads_in = (ds.exit_pos[:40] >= 40) | (ds.exit_pos[:40] < 0)
    assert len(got) == 40 and reads_in[:39].any() and reads_in[39], "some trades before the block end inside it"
    assert np.array_equal(np.isnan(got), reads_in), "exactly those are purged"
    embargoed = purged_labels(ds, 40, embargo=4)
    assert np.isnan(embargoed[36:]).all() and np.array_equal(np.isnan(embargoed[:36]), reads_in[:36])


def test_no_fold_trains_on_a_label_that_overlaps_its_test_block() -> None:
    ds = build_dataset(daily_frame(), "1d", horizon=5)
    Recorder.seen = []
    cfg = TrainConfig(timeframe="1d", horizon=5, folds=3)
    report = walk_forward(ds, SETTINGS, cfg, factory=lambda cols, h: Ensemble(
        cols, {"random_forest": Recorder(cols)}, {"random_forest": 1.0}))
    edges = fold_edges(len(ds), 3, 0.5)
    assert [n for n, _ in Recorder.seen] == [a for a, _ in edges]  # never a row of the test block
    assert report.embargo == 4  # 1% of 400 bars
    for (a, _), (_, last) in zip(edges, Recorder.seen):
        assert ds.exit_pos[last] < a and last < a - report.embargo  # no trade reads into the block
    assert len(report.oof) == len(ds) - edges[0][0]


def test_metrics_notice_real_signal_and_calibration_is_out_of_sample() -> None:
    ds = build_dataset(daily_frame(600), "1d")
    leaked = np.where(np.isfinite(ds.y), ds.y, 0.5)
    ds = replace(ds, X=np.column_stack([leaked, ds.X[:, 1:]]))
    cfg = TrainConfig(timeframe="1d", folds=4, min_calibration=20)  # a fold holds ~35 primary-rule buys
    report = walk_forward(ds, SETTINGS, cfg, factory=lambda cols, h: Ensemble(
        cols, {"random_forest": Peeker(cols), "momentum": MomentumModel(cols)},
        {"random_forest": 1.0, "momentum": 0.0}))
    ens = report.overall["ensemble"]
    assert ens["accuracy"] == 1.0 and ens["roc_auc"] == 1.0
    # P is the chance a buy makes money: the 0.2s of the losers are no call, not a confident "down"
    assert ens["at_70"]["count"] == round(ens["n"] * ens["up_rate"]) < ens["n"]
    assert ens["at_70"]["hit_rate"] == 1.0 and ens["at_80"]["hit_rate"] == 1.0
    first = report.folds[0]["metrics"]
    assert first["ensemble_calibrated"]["n"] == 0  # no earlier folds to calibrate on
    later = report.folds[2]["metrics"]["ensemble_calibrated"]  # fold 1 alone holds too few of the rule's buys
    assert later["n"] > 0 and later["accuracy"] == 1.0
    assert report.calibration["a"] > 1  # 0.8 was underconfident for a perfect signal
    assert report.overall["momentum"]["n"] == ens["n"]
    assert report.overall["always_up"]["balanced_accuracy"] == 0.5
    assert any("reliability" in line for line in report.lines())


def test_always_up_baseline_scores_the_up_rate() -> None:
    y = np.array([1, 1, 1, 0.0])
    m = classification_metrics(y, np.full(4, 0.45), decision=np.ones(4))
    assert m["accuracy"] == 0.75 and m["at_70"]["count"] == 0
    assert m["brier"] == pytest.approx(np.mean((0.45 - y) ** 2))
    rows = reliability_table(y, np.array([0.05, 0.15, 0.95, 0.95]))
    assert sum(r["n"] for r in rows) == 4 and rows[9]["observed"] == 0.5


def test_training_can_be_cancelled_from_the_progress_callback() -> None:
    calls: list[float] = []

    def progress(fraction: float, message: str) -> bool:
        calls.append(fraction)
        return len(calls) < 3

    with pytest.raises(TrainingCancelled):
        train(daily_frame(), SETTINGS, TrainConfig(timeframe="1d", folds=3), progress,
              factory=lambda cols, h: Ensemble(cols, {"momentum": MomentumModel(cols)}, {"momentum": 1}))
    assert len(calls) == 3 and calls == sorted(calls)


def test_train_returns_the_final_model_calibrated_on_out_of_fold_bars() -> None:
    seen: list[float] = []
    result = train(daily_frame(), SETTINGS, TrainConfig(timeframe="1d", folds=3, min_calibration=50),
                   lambda f, m: seen.append(f) or True,
                   factory=lambda cols, h: Ensemble(cols, {"momentum": MomentumModel(cols)}, {"momentum": 1}))
    assert result.ensemble.calibrator is not None
    assert result.ensemble.calibrator.n == result.report.overall["ensemble"]["n"]
    assert result.info["horizon"] > 1 and 380 < result.info["labelled"] < 400  # the last trades end after the data
    assert seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.realdata
def test_real_pltr_five_minute_labels(shared_data) -> None:
    frame = load_csv_bars(shared_data / "PLTR_5m_2025-12-23_2026-03-20.csv", "5m")
    ds = build_dataset(frame, "5m")
    assert len(ds.columns) == 26 and ds.horizon <= 76  # 21 indicators and 5 of market context; no trade
    # outlives its session
    # per session: no entry signal with 15 minutes or less to go (the 15:40 .. 15:55 bars)
    assert len(ds) - ds.labelled == pytest.approx(60 * 4, abs=12)
    assert 0.3 < np.nanmean(ds.y) < 0.6 and 0.3 < ds.primary.mean() < 0.7
