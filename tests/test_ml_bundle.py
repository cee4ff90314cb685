"""Saved models: round trip, damaged files, refused bundles, and the live adapter."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("AI_TRADER_TF_THREADS", "1")

import numpy as np
import pandas as pd
import pytest

from app.engine.clock import NY
from app.engine.data.frame import frame_to_bars, make_frame
from app.engine.ml.artifacts import (
    ArtifactError,
    load_bundle,
    save_bundle,
    sha256,
)
from app.engine.ml.dataset import build_dataset
from app.engine.ml.ensemble import PlattCalibrator
from app.engine.ml.factory import ModelFactory
from app.engine.ml.live import EnsembleSignalModel, load_signal_model, predict_frame
from app.engine.paths import AppPaths, model_dir
from app.engine.settings import Settings
from app.engine.strategy.rules import RulesModel

SETTINGS = Settings(timeframe="1d")
WEIGHTS = SETTINGS.ensemble_weights()


def daily_frame(n: int = 500, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2022-01-03", periods=n).tz_localize(NY).tz_convert("UTC")
    close = 30 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    return make_frame(idx, open_, high, low, close, rng.integers(1_000_000, 3_000_000, n))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, pd.DataFrame]:
    frame = daily_frame()
    ds = build_dataset(frame, "1d")
    ens = ModelFactory.build("ensemble", SETTINGS, lstm={"small": True},
                             random_forest={"n_estimators": 10}, hist_gb={"max_iter": 10})
    ens.fit(ds.X, ds.y)  # type: ignore[union-attr]
    ens.calibrator = PlattCalibrator(0.8, 0.05, 250)  # type: ignore[union-attr]
    info = {"symbol": "PLTR", "timeframe": "1d", "horizon": 1, "last_label": frame.index[-2].isoformat(),
            "edge": True, "edge_reason": "granted for these tests of loading", "labels": "trade",
            "payoff": {"win_bps": 150.0, "loss_bps": -120.0},
            "out_of_sample": {"repeated_share": 0.0, "rank_ic": 0.1, "rank_ic_ci": [0.05, 0.15], "trades": 40,
                              "expectancy_bps": 10.0, "rules_expectancy_bps": -1.0, "threshold": 0.7,
                              "rules": "momentum"}}
    folder = save_bundle(tmp_path_factory.mktemp("models") / "PLTR_1d", ens, info, {"note": "test"})  # type: ignore[arg-type]
    return folder, ens, frame


@pytest.fixture
def bundle(trained, tmp_path: Path) -> Path:
    dst = model_dir(tmp_path / "models", "PLTR", "1d")
    shutil.copytree(trained[0], dst)
    return dst


def rehash(folder: Path, name: str) -> None:
    """Record the file's current hash, as if it had been saved damaged."""
    meta = json.loads((folder / "metadata.json").read_text())
    for comp in meta["components"].values():
        if name in comp["files"]:
            comp["files"][name] = sha256(folder / name)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_round_trip_keeps_every_prediction(trained, bundle: Path) -> None:
    _, ens, frame = trained
    loaded = load_bundle(bundle, symbol="PLTR", timeframe="1d")
    assert set(loaded.components) == {"lstm", "random_forest", "hist_gb", "momentum"} and not loaded.problems
    meta = loaded.meta
    assert meta["features"] == build_dataset(frame, "1d").columns and meta["horizon"] == 1
    assert set(meta["components"]["lstm"]["files"]) == {"lstm.keras", "lstm_scaler.joblib"}
    assert meta["versions"]["scikit-learn"] and meta["metrics"] == {"note": "test"}
    preds = predict_frame(loaded, frame, WEIGHTS)
    ours = ens.predict_proba(build_dataset(frame, "1d").X)
    assert np.allclose(preds["p_up"].to_numpy(), ours[np.isfinite(ours)], atol=1e-12)
    # the chance the primary rule's long makes money: a buy where the rule calls one and it is
    # above one half, else nothing (the model never sells)
    assert (preds["confidence"] == preds["p_up"]).all() and set(preds["signal"]) <= {"BUY", "HOLD"}
    buys = preds["signal"] == "BUY"
    assert buys.any() and (preds["primary"][buys] & (preds["p_up"][buys] > 0.5)).all()


def test_changed_file_is_left_out_without_being_unpickled(bundle: Path) -> None:
    with open(bundle / "random_forest.joblib", "ab") as f:
        f.write(b"tampered")
    loaded = load_bundle(bundle)
    assert "random_forest" not in loaded.components
    assert "sha256 mismatch" in loaded.problems["random_forest"]


def test_corrupt_keras_file_leaves_out_the_lstm_only(bundle: Path, trained) -> None:
    (bundle / "lstm.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    rehash(bundle, "lstm.keras")
    loaded = load_bundle(bundle)
    assert set(loaded.components) == {"random_forest", "hist_gb", "momentum"}
    assert "unreadable" in loaded.problems["lstm"]
    out = EnsembleSignalModel(loaded, WEIGHTS).predict(np.array([1.0]), frame_to_bars(trained[2], "PLTR"))
    assert out is not None and [k for k, _ in out.votes] == ["random_forest", "hist_gb", "momentum"]
    assert any(r.startswith("lstm left out") for r in out.reasons)
    assert "weights renormalised: rf 0.37, gb 0.37, mom 0.25" in out.reasons


def test_truncated_joblib_is_a_clear_error(bundle: Path) -> None:
    data = (bundle / "random_forest.joblib").read_bytes()
    (bundle / "random_forest.joblib").write_bytes(data[: len(data) // 3])
    rehash(bundle, "random_forest.joblib")
    loaded = load_bundle(bundle)
    assert loaded.problems["random_forest"].startswith("random_forest file is unreadable (")


def test_feature_mismatch_refuses_the_bundle_and_falls_back_to_rules(bundle: Path) -> None:
    meta = json.loads((bundle / "metadata.json").read_text())
    meta["features"] = meta["features"][:-1] + ["logret_60"]
    (bundle / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"trained on other features.*rel_ret_6.*logret_60"):
        load_bundle(bundle)
    model, notes = load_signal_model(AppPaths(bundle.parent.parent), SETTINGS)
    assert isinstance(model, RulesModel) and "other features" in notes[0]


def test_a_model_of_the_next_close_saved_before_trade_labels_never_trades(bundle: Path) -> None:
    """Its P(up) is not the chance the bot's trade makes money: the edge it was granted was
    judged on another question."""
    meta = json.loads((bundle / "metadata.json").read_text())
    del meta["labels"]
    (bundle / "metadata.json").write_text(json.dumps(meta))
    model, notes = load_signal_model(AppPaths(bundle.parent.parent), SETTINGS)
    assert isinstance(model, RulesModel) and "saved before trade labels" in notes[0]


def test_a_model_without_a_payoff_states_no_expected_return_and_never_trades(bundle: Path) -> None:
    meta = json.loads((bundle / "metadata.json").read_text())
    (bundle / "metadata.json").write_text(json.dumps({**meta, "payoff": None}))
    model, notes = load_signal_model(AppPaths(bundle.parent.parent), SETTINGS)
    assert isinstance(model, RulesModel) and "payoff" in notes[0]


def test_damaged_metadata_or_calibrator_refuses_the_bundle(bundle: Path) -> None:
    (bundle / "calibrator.joblib").write_bytes(b"\x80\x04")
    with pytest.raises(ArtifactError, match="calibrator"):
        load_bundle(bundle)
    (bundle / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_bundle(bundle)


def test_no_model_at_all_means_the_rules_model(tmp_path: Path) -> None:
    model, notes = load_signal_model(AppPaths(tmp_path), Settings())
    assert isinstance(model, RulesModel) and "no trained model" in notes[0]


def test_load_signal_model_picks_the_settings_bundle(bundle: Path) -> None:
    model, notes = load_signal_model(AppPaths(bundle.parent.parent), SETTINGS)
    assert isinstance(model, EnsembleSignalModel) and notes == []
    model.update_settings(SETTINGS.updated(weight_lstm=0.0, weight_rf=0.5, weight_momentum=0.5))
    assert model.weights == {"lstm": 0.0, "random_forest": 0.5, "hist_gb": 0.3, "momentum": 0.5}
    with pytest.raises(ArtifactError, match="for 1d bars, not 5m"):
        load_bundle(bundle, timeframe="5m")


# ---------------------------------------------------------------- live adapter
@pytest.fixture
def live(bundle: Path) -> EnsembleSignalModel:
    return EnsembleSignalModel(load_bundle(bundle), WEIGHTS)


def test_live_prediction_matches_the_batch_prediction(live: EnsembleSignalModel, trained) -> None:
    frame = trained[2]
    bars = frame_to_bars(frame, "PLTR")
    closes = frame["close"].to_numpy()
    batch = predict_frame(live.bundle, frame, WEIGHTS)
    for t in (len(bars) - 30, len(bars) - 1):
        out = live.predict(closes[: t + 1], bars[: t + 1])
        assert out is not None and out.version.startswith("ensemble-")
        assert out.p_up == pytest.approx(batch["p_up"].iloc[t - len(bars)], abs=1e-6)
        assert [k for k, _ in out.votes] == ["lstm", "random_forest", "hist_gb", "momentum"]
        assert out.long_only and out.tradeable == bool(batch["primary"].iloc[t - len(bars)])
        assert out.expected_bps == pytest.approx(150 * out.p_up - 120 * (1 - out.p_up), abs=0.01)
        assert out.expected_bps == pytest.approx(batch["expected_bps"].iloc[t - len(bars)], abs=0.01)
    assert out.reasons[0].startswith("primary rule: SMA10") and "calibrated on 250" in out.reasons[1]
    assert out.confidence == out.p_up, "the chance the trade makes money, not max(p, 1 - p)"


def test_live_features_with_the_desk_market_are_the_rows_a_pooled_model_trained_on(live: EnsembleSignalModel,
                                                                                     trained) -> None:
    """A watchlist model learned its market features from every symbol's bars; live, the desk's
    tape (fed by the bot) must give the same rows, not the symbol's own moves."""
    from app.engine.data.market import MarketTape, market_returns
    from app.engine.ml.live import BarWindow

    pltr, other = trained[2], daily_frame(seed=11)
    market = market_returns({"PLTR": pltr["close"], "MSFT": other["close"]})
    want = build_dataset(pltr, "1d", market=market).X
    tape = MarketTape()
    for k in range(len(pltr)):
        for symbol, f in (("PLTR", pltr), ("MSFT", other)):
            tape.record(frame_to_bars(f.iloc[k:k + 1], symbol)[0])
    window = BarWindow()
    window.update(frame_to_bars(pltr, "PLTR"))
    alone = live.features(window.rows())
    live.bind_market(tape)
    np.testing.assert_allclose(live.features(window.rows()), alone, rtol=1e-9, atol=1e-12,
                               err_msg="a model that learned alone reads its own moves, whatever else trades")
    live.market = ["PLTR", "MSFT"]  # as a watchlist model of the two saves it
    got = live.features(window.rows())
    np.testing.assert_allclose(got, want[-live.need:], rtol=1e-6, atol=1e-9)
    ctx = slice(-5, None)
    assert not np.allclose(alone[:, ctx], want[-live.need:, ctx]), "its own moves are not the market's"
    assert live.market_note() is None
    live.market = ["PLTR", "MSFT", "NVDA"]  # NVDA is not on this desk: the market cannot be read
    bars = frame_to_bars(pltr, "PLTR")
    out = live.predict(pltr["close"].to_numpy(), bars)
    assert out is not None and not out.tradeable and any("NVDA has no bars here: not traded" in r for r in out.reasons)


def test_live_adapter_falls_back_to_rules_and_says_why(live: EnsembleSignalModel, trained) -> None:
    frame = trained[2]
    bars = frame_to_bars(frame, "PLTR")
    closes = frame["close"].to_numpy()
    no_bars = live.predict(closes)
    assert no_bars is not None
    assert no_bars.reasons[0] == "rules fallback: the ensemble was given no OHLCV bars"
    assert no_bars.version == "rules-v1"
    short = live.predict(closes[:40], bars[:40])
    assert short is not None and "warming up" in short.reasons[0]
    other = live.predict(closes, frame_to_bars(frame, "MSFT"))
    assert other is not None and "trained on PLTR, not MSFT" in other.reasons[0]


def test_stale_components_are_left_out(bundle: Path, trained) -> None:
    frame = trained[2].copy()
    frame.index = frame.index + timedelta(days=400)
    live = EnsembleSignalModel(load_bundle(bundle), WEIGHTS)
    out = live.predict(frame["close"].to_numpy(), frame_to_bars(frame, "PLTR"))
    assert out is not None and out.reasons[0].startswith("rules fallback: no ensemble component")
    assert "stale (trained until" in out.reasons[0]


def test_a_model_judged_under_other_exits_or_threshold_does_not_trade_until_retrained(bundle: Path,
                                                                                        trained) -> None:
    """From a review: a tighter stop or a lower approval threshold is not what the verdict
    measured; the model says so and asks for nothing until it is trained again."""
    from app.engine.ml.labels import TradeRules

    meta = json.loads((bundle / "metadata.json").read_text())
    meta["trade_rules"] = TradeRules.from_settings(SETTINGS).to_dict()
    (bundle / "metadata.json").write_text(json.dumps(meta))
    paths = AppPaths(bundle.parents[1])
    model, notes = load_signal_model(paths, SETTINGS)
    assert isinstance(model, EnsembleSignalModel) and model.settings_note is None
    frame = trained[2]
    bars, closes = frame_to_bars(frame, "PLTR"), frame["close"].to_numpy()
    for changed, said in ((SETTINGS.updated(stop_loss_pct=0.02), "stop_pct 0.03 -> 0.02"),
                          (SETTINGS.updated(approval_threshold=0.6), "approval threshold of 0.7, now 0.6")):
        model.update_settings(changed)
        out = model.predict(closes, bars)
        assert out is not None and not out.tradeable and any(said in r for r in out.reasons), out.reasons
        again, notes = load_signal_model(paths, changed)
        assert any("does not trade" in n and said in n for n in notes), notes
    model.update_settings(SETTINGS)
    assert model.settings_note is None
