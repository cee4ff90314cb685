"""The Model port and its implementations: momentum, random forest, LSTM, ensemble, factory."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("AI_TRADER_TF_THREADS", "1")

import numpy as np
import pandas as pd
import pytest

from app.engine.clock import NY
from app.engine.data.frame import make_frame
from app.engine.ml.dataset import build_dataset
from app.engine.ml.ensemble import Ensemble, PlattCalibrator, combine, combine_one
from app.engine.ml.factory import ModelFactory
from app.engine.ml.metrics import expected_calibration_error
from app.engine.ml.models import (
    HistGradientBoostingModel,
    Model,
    MomentumModel,
    RandomForestModel,
    TrainingCancelled,
)
from app.engine.settings import Settings
from app.engine.strategy.rules import RulesModel


def daily_frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2021-01-04", periods=n).tz_localize(NY).tz_convert("UTC")
    close = 20 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n)))
    return make_frame(idx, open_, high, low, close, rng.integers(1_000_000, 5_000_000, n))


@pytest.fixture(scope="module")
def daily():
    return build_dataset(daily_frame(), "1d")


# ---------------------------------------------------------------- momentum
def test_momentum_is_a_transparent_squash_of_volatility_scaled_returns(daily) -> None:
    m = MomentumModel(daily.columns)
    X = np.zeros((3, len(daily.columns)))
    X[:, daily.columns.index("atr_14_rel")] = 0.02
    for k in (5, 10, 20):
        X[0, daily.columns.index(f"logret_{k}")] = 0.05
        X[2, daily.columns.index(f"logret_{k}")] = -0.05
    p = m.predict_proba(X)
    assert p[0] > 0.5 and p[1] == pytest.approx(0.5) and p[2] == pytest.approx(1 - p[0])
    assert m.predict_last(X[:1]) == pytest.approx(p[0])
    assert "vol units" in m.describe(p[0])
    X[1, daily.columns.index("atr_14_rel")] = np.nan
    assert np.isnan(m.predict_proba(X)[1])


def test_momentum_refuses_a_feature_list_without_returns() -> None:
    with pytest.raises(ValueError, match="logret_5"):
        MomentumModel(["rsi_14", "atr_14_rel"])


# ---------------------------------------------------------------- forest
def test_forest_live_walk_matches_sklearn_exactly(daily) -> None:
    rf = RandomForestModel(daily.columns, n_estimators=15, seed=3).fit(daily.X, daily.y)
    batch = rf.predict_proba(daily.X)
    assert np.isnan(batch[:50]).all() and np.isfinite(batch[60:]).all()
    for t in (60, 200, len(daily) - 1):
        assert rf.predict_last(daily.X[: t + 1]) == pytest.approx(batch[t], abs=1e-12)


def test_forest_rows_carry_their_lags(daily) -> None:
    rf = RandomForestModel(daily.columns, lags=(1, 3))
    D = rf.design(daily.X)
    f = len(daily.columns)
    assert np.array_equal(D[100, f:2 * f], daily.X[99]) and np.array_equal(D[100, 2 * f:], daily.X[97])
    assert rf.lookback == 4


def test_forest_is_seeded(daily) -> None:
    a = RandomForestModel(daily.columns, n_estimators=10, seed=1).fit(daily.X, daily.y)
    b = RandomForestModel(daily.columns, n_estimators=10, seed=1).fit(daily.X, daily.y)
    assert np.array_equal(a.predict_proba(daily.X), b.predict_proba(daily.X), equal_nan=True)


# ---------------------------------------------------------------- ensemble
def test_missing_component_is_left_out_and_weights_renormalised() -> None:
    parts = {"lstm": np.array([0.9, np.nan]), "random_forest": np.array([0.6, 0.6]),
             "momentum": np.array([0.3, 0.3])}
    w = {"lstm": 0.5, "random_forest": 0.3, "momentum": 0.2}
    p = combine(parts, w)
    assert p[0] == pytest.approx(0.5 * 0.9 + 0.3 * 0.6 + 0.2 * 0.3)
    assert p[1] == pytest.approx((0.3 * 0.6 + 0.2 * 0.3) / 0.5)
    one, used = combine_one({"random_forest": 0.6, "momentum": 0.3, "lstm": float("nan")}, w)
    assert one == pytest.approx(p[1]) and used == pytest.approx({"random_forest": 0.6, "momentum": 0.4})
    assert combine_one({"lstm": float("nan")}, w) == (None, {})


def test_platt_calibration_repairs_overconfidence() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.05, 0.95, 4000)
    truth = 0.5 + (raw - 0.5) / 3  # the model says 0.95 when it is really 0.65
    y = (rng.uniform(size=raw.size) < truth).astype(float)
    cal = PlattCalibrator.fit(raw, y)
    assert 0 < cal.a < 1
    assert expected_calibration_error(y, cal.apply(raw)) < expected_calibration_error(y, raw) / 3
    assert cal.apply_one(0.95) == pytest.approx(cal.apply(np.array([0.95]))[0])
    assert PlattCalibrator.from_dict(cal.to_dict()) == cal


def test_platt_never_inverts_a_model_it_finds_useless() -> None:
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.3, 0.7, 500)
    y = (raw < 0.5).astype(float)  # perfectly contrarian on this sample
    cal = PlattCalibrator.fit(raw, y)
    assert cal.a == 0.0 and cal.apply_one(0.9) == pytest.approx(y.mean())


class _Fixed(Model):
    name = "fixed"

    def __init__(self, columns, value: float, fail: bool = False) -> None:
        super().__init__(columns)
        self.value, self.fail = value, fail

    def fit(self, X, y, *, progress=None):
        if self.fail:
            raise ValueError("not enough data")
        return self

    def predict_proba(self, X):
        return np.full(len(X), self.value)


def test_ensemble_drops_a_component_that_cannot_train() -> None:
    ens = Ensemble(["a"], {"lstm": _Fixed(["a"], 0.9, fail=True), "momentum": _Fixed(["a"], 0.6)},
                   {"lstm": 0.5, "momentum": 0.5})
    ens.fit(np.zeros((5, 1)), np.zeros(5))
    assert ens.skipped == {"lstm": "not enough data"}
    assert ens.predict_proba(np.zeros((2, 1))) == pytest.approx([0.6, 0.6])


def test_factory_builds_every_named_model() -> None:
    s = Settings(timeframe="1d")
    assert isinstance(ModelFactory.build("momentum", s), MomentumModel)
    assert isinstance(ModelFactory.build("random_forest", s), RandomForestModel)
    assert isinstance(ModelFactory.build("rules", s), RulesModel)
    lstm = ModelFactory.build("lstm", Settings())
    # its validation tail is purged by a session's bars: a 5-minute trade can last until the close
    assert lstm.name == "lstm" and lstm.lookback == 60 and lstm.horizon == 78  # type: ignore[attr-defined]
    assert isinstance(ModelFactory.build("hist_gb", s), HistGradientBoostingModel)
    ens = ModelFactory.build("ensemble", s)
    assert isinstance(ens, Ensemble) and set(ens.components) == {"lstm", "random_forest", "hist_gb", "momentum"}
    assert ens.weights == {"lstm": 0.5, "random_forest": 0.3, "hist_gb": 0.3, "momentum": 0.2}
    with pytest.raises(ValueError, match="unknown model"):
        ModelFactory.build("oracle", s)


def test_importing_the_ml_package_does_not_import_tensorflow() -> None:
    code = ("import sys, app.engine.ml.models, app.engine.ml.lstm, app.engine.ml.live, "
            "app.cli.ml, app.engine.ml.train, app.engine.ml.artifacts; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- LSTM
@pytest.fixture(scope="module")
def lstm(daily):
    from app.engine.ml.lstm import LSTMModel

    return LSTMModel(daily.columns, horizon=1, small=True, seed=7).fit(daily.X, daily.y)


def test_numpy_forward_matches_keras(lstm, daily) -> None:
    from app.engine.ml.lstm import valid_ends

    Xs = lstm.scale(daily.X)
    ends = valid_ends(Xs, lstm.seq_len)
    windows = Xs[ends[:, None] - lstm.seq_len + 1 + np.arange(lstm.seq_len)]
    keras_p = np.asarray(lstm.keras_model(windows, training=False))[:, 0]
    ours = lstm.predict_proba(daily.X)
    assert np.abs(ours[ends] - keras_p).max() < 1e-5
    assert np.isnan(ours[: ends[0]]).all()
    assert lstm.predict_last(daily.X) == pytest.approx(keras_p[-1], abs=1e-5)


def test_lstm_validates_on_the_last_slice_and_is_reproducible(lstm, daily) -> None:
    from app.engine.ml.lstm import LSTMModel

    assert "val_loss" in lstm.history and 1 <= len(lstm.history["loss"]) <= 3
    again = LSTMModel(daily.columns, horizon=1, small=True, seed=7).fit(daily.X, daily.y)
    assert np.allclose(again.predict_proba(daily.X), lstm.predict_proba(daily.X), atol=1e-6,
                       equal_nan=True)


def test_lstm_prediction_ignores_bars_after_it(lstm, daily) -> None:
    full = lstm.predict_proba(daily.X)
    cut = lstm.predict_proba(daily.X[:300])
    assert np.array_equal(cut, full[:300], equal_nan=True)


def test_lstm_training_can_be_cancelled(daily) -> None:
    from app.engine.ml.lstm import LSTMModel

    calls: list[str] = []
    with pytest.raises(TrainingCancelled):
        LSTMModel(daily.columns, horizon=1, small=True).fit(
            daily.X, daily.y, progress=lambda f, msg: bool(calls.append(msg)))
    assert calls and "epoch 1" in calls[0]


def test_a_watchlist_lstm_stops_early_on_every_symbols_newest_bars(daily) -> None:
    """Stacked symbols: early stopping must watch each symbol's newest sequences, not the last
    symbol's tail alone (it would tune the model to one stock)."""
    from app.engine.ml.lstm import LSTMModel

    X = np.vstack([daily.X, daily.X])
    first = np.where(np.isfinite(daily.y), 0.0, np.nan)  # symbol A's trades all lost, B's all won
    y = np.concatenate([first, np.where(np.isfinite(daily.y), 1.0, np.nan)])
    seen: dict[str, np.ndarray] = {}

    def capture(xt, yt, xv, yv, progress) -> None:  # type: ignore[no-untyped-def]
        seen.update(train=yt, val=yv)

    for segments in (None, [0, len(daily.X)]):
        lstm = LSTMModel(daily.columns, horizon=1, small=True)
        lstm._train_keras = capture  # type: ignore[method-assign]
        lstm.fit(X, y, segments=segments)
        if segments is None:
            assert set(seen["val"]) == {1.0}, "without segments only the last symbol validates"
        else:
            assert set(seen["val"]) == {0.0, 1.0} and set(seen["train"]) == {0.0, 1.0}
            share = float(np.mean(seen["val"] == 0.0))
            assert 0.4 < share < 0.6, "each symbol gives its own newest 15%"
