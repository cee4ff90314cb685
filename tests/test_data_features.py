"""Features are causal, correct against ``ta``, and fast enough for 100k bars."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic
from ta.momentum import RSIIndicator
from ta.volatility import AverageTrueRange

from app.engine.data.csv_import import read_csv
from app.engine.data.features import (
    BASE_FEATURES,
    FEATURE_COLUMNS,
    StandardScalerFit,
    compute_features,
    wilder_atr,
)


@pytest.mark.parametrize("intraday", [True, False])
def test_rows_up_to_t_ignore_every_later_bar(intraday: bool) -> None:
    frame = synthetic(600)
    before = compute_features(frame, intraday)
    rng = np.random.default_rng(99)
    for t in (0, 13, 60, 333, 598):
        changed = frame.copy()
        later = changed.index > changed.index[t]
        for col in ("open", "high", "low", "close", "volume"):
            changed.loc[later, col] = changed.loc[later, col] * rng.uniform(0.5, 2.0, later.sum())
        after = compute_features(changed, intraday)
        assert np.array_equal(before.iloc[: t + 1].to_numpy(), after.iloc[: t + 1].to_numpy(),
                              equal_nan=True), f"a feature at or before bar {t} saw later bars"
        assert not np.array_equal(before.iloc[t + 1:].to_numpy(), after.iloc[t + 1:].to_numpy(),
                                  equal_nan=True)
        # and the same rows come out when the later bars do not exist at all
        cut = compute_features(frame.iloc[: t + 1], intraday)
        assert np.array_equal(before.iloc[: t + 1].to_numpy(), cut.to_numpy(), equal_nan=True)


def test_columns_and_warmup() -> None:
    f = compute_features(synthetic(300), intraday=True)
    assert list(f.columns) == FEATURE_COLUMNS
    assert list(compute_features(synthetic(300), intraday=False).columns) == BASE_FEATURES
    assert f["sma_50_rel"].iloc[:49].isna().all() and f["sma_50_rel"].iloc[49:].notna().all()
    assert f.iloc[60:].notna().all().all()  # nothing missing once the longest window is full
    assert f["rsi_14"].between(0, 1).iloc[20:].all()


def test_values_match_ta_and_definitions() -> None:
    frame = synthetic(400)
    f = compute_features(frame, intraday=False)
    rsi = RSIIndicator(frame["close"], 14, fillna=False).rsi() / 100
    assert np.allclose(f["rsi_14"], rsi, equal_nan=True)
    atr = AverageTrueRange(frame["high"], frame["low"], frame["close"], 14).average_true_range()
    assert np.allclose(wilder_atr(frame["high"], frame["low"], frame["close"]).iloc[13:], atr.iloc[13:])
    sma20 = frame["close"].iloc[80:100].mean()
    assert f["sma_20_rel"].iloc[99] == pytest.approx(frame["close"].iloc[99] / sma20 - 1)
    assert f["logret_5"].iloc[99] == pytest.approx(np.log(frame["close"].iloc[99] / frame["close"].iloc[94]))


def test_time_features_follow_new_york_clock() -> None:
    frame = synthetic(3, start="2025-12-23 14:30")  # 09:30 ET on a Tuesday
    f = compute_features(frame, intraday=True)
    assert f["session_frac"].iloc[0] == pytest.approx(0.0)
    assert f["day_of_week"].iloc[0] == pytest.approx(0.25)


def test_flat_volume_gives_zero_zscore() -> None:
    frame = synthetic(40)
    frame["volume"] = 500.0
    assert (compute_features(frame, False)["volume_z_20"].iloc[19:] == 0).all()


def test_scaler_uses_training_rows_only() -> None:
    f = compute_features(synthetic(500), intraday=False).dropna()
    train, test = f.iloc[:300], f.iloc[300:]
    scaler = StandardScalerFit.fit(train)
    z = scaler.transform(train)
    assert np.allclose(z.mean(), 0, atol=1e-9)
    shifted = test + 1000.0  # a test period nothing like training must not move the scaler
    assert np.array_equal(StandardScalerFit.fit(train).mean, scaler.mean)
    assert (scaler.transform(shifted).mean() > 10).all()
    again = StandardScalerFit.from_dict(scaler.to_dict())
    assert np.array_equal(again.transform(test).to_numpy(), scaler.transform(test).to_numpy())


def test_100k_rows_under_two_seconds() -> None:
    frame = synthetic(100_000)
    t0 = time.perf_counter()
    f = compute_features(frame, intraday=True)
    elapsed = time.perf_counter() - t0
    assert len(f) == 100_000
    assert elapsed < 2.0, f"features for 100k bars took {elapsed:.2f} s"


def test_real_daily_file_has_no_infinities(shared_data: Path) -> None:
    r = read_csv(shared_data / "daily" / "NVDA_1d_2020-01-02_2026-02-13_yf_adjusted.csv")
    f = compute_features(r.frame.sort_index(), intraday=False)
    assert np.isfinite(f.iloc[60:].to_numpy()).all()
