"""Walk-forward backtests: the model used at bar t was trained only on bars before t.

Training is the slow part, so the engine-level tests share one pair of runs
(small LSTM, 20 trees) over 16 simulated sessions: the real bars, and the
same bars with everything from a chosen bar on rewritten.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import simulated_sessions, write_bars_csv
from PySide6.QtCore import Qt

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.runner import run_backtest
from app.engine.backtest.strategies import MIN_FIRST_TRAIN_BARS, make_model, walk_forward_ensemble_model
from app.engine.ml.train import SMALL_OVERRIDES, TrainConfig, block_edges, every_n_edges, fold_edges
from app.engine.settings import MIN_RETRAIN_BARS, Settings, SettingsError
from app.engine.strategy.precomputed import PrecomputedModel
from app.engine.types import Bar

EVERY = 400  # 1,248 bars: first window 500, then blocks at 500 and 900
REWRITE_AT = 902  # inside the horizon (6 bars) of the second block's start: the calibration purge matters


def _sessions(n: int, seed: int = 8) -> list[Bar]:
    return simulated_sessions(n, seed)


def _rewrite_from(bars: list[Bar], start: int, factor: float) -> list[Bar]:
    """The same bars up to ``start``; from there on every price scaled (another future)."""
    return bars[:start] + [replace(b, open=b.open * factor, high=b.high * factor, low=b.low * factor,
                                   close=b.close * factor) for b in bars[start:]]


@dataclass
class Runs:
    bars: list[Bar]
    model: PrecomputedModel
    notes: list[str]
    rewritten: PrecomputedModel


@pytest.fixture(scope="module")
def runs() -> Runs:
    # Seed 8: the second block's calibrator has a positive slope, so its P(up) follows the
    # features. (A slope of 0, the calibrator's answer to no edge, gives every bar the base
    # rate, and the rewrite could change nothing there.)
    bars = _sessions(16, seed=8)
    closes = np.array([b.close for b in bars])
    # The labels of bars 896..899 read closes from 902 on: scale those so they flip.
    factor = 0.5 if (closes[REWRITE_AT:REWRITE_AT + 4] > closes[REWRITE_AT - 6:REWRITE_AT - 2]).any() else 2.0
    settings = Settings()
    model, notes = walk_forward_ensemble_model(bars, "5m", "PLTR", settings, EVERY, overrides=SMALL_OVERRIDES)
    rewritten, _ = walk_forward_ensemble_model(_rewrite_from(bars, REWRITE_AT, factor), "5m", "PLTR", settings,
                                               EVERY, overrides=SMALL_OVERRIDES)
    return Runs(bars, model, notes, rewritten)


def _p(model: PrecomputedModel, bars: list[Bar], i: int) -> float | None:
    out = model.predict(np.array([]), bars[: i + 1])
    return None if out is None else out.p_up


def test_a_bar_s_p_up_does_not_depend_on_that_bar_or_any_later_one(runs: Runs) -> None:
    bars = runs.bars
    before = [(_p(runs.model, bars, i), _p(runs.rewritten, bars, i)) for i in range(MIN_FIRST_TRAIN_BARS, REWRITE_AT)]
    assert all(a is not None for a, _ in before)
    assert [a for a, _ in before] == [b for _, b in before], "an earlier P(up) changed with the future"
    later = [i for i in range(REWRITE_AT, len(bars)) if _p(runs.model, bars, i) is not None]
    assert later, "the rewritten bars are predicted too"
    changed = [i for i in later if _p(runs.model, bars, i) != _p(runs.rewritten, bars, i)]  # looked up by time
    assert changed, "the test could not fail: the rewrite changed nothing"


def test_notes_count_the_retrains_and_say_the_model_never_saw_the_bar(runs: Runs) -> None:
    n = len(runs.bars)
    retrains = math.ceil((n - MIN_FIRST_TRAIN_BARS) / EVERY)
    text = "\n".join(runs.notes)
    assert f"walk-forward: {retrains} retrains, every {EVERY} bars" in text
    assert "each bar's P(trade profitable) comes from a model trained only on earlier bars (labels purged" in text
    assert f"{n - MIN_FIRST_TRAIN_BARS:,} out-of-sample bars" in text
    assert f"trained on {runs.bars[0].time:%Y-%m-%d} .. {runs.bars[MIN_FIRST_TRAIN_BARS - 1].time:%Y-%m-%d}" in text
    assert f"{EVERY} bars use the uncalibrated ensemble P: the first block has no calibrator yet" in text
    assert "IN-SAMPLE" not in text


def test_nothing_is_predicted_or_traded_in_the_first_training_window(runs: Runs) -> None:
    bars = runs.bars
    assert all(_p(runs.model, bars, i) is None for i in range(MIN_FIRST_TRAIN_BARS))
    eager = Settings(auto_threshold=0.55, approval_threshold=0.5)  # trade on weak signals too
    result = run_backtest(bars, BacktestConfig("PLTR", "5m", "ensemble", retrain_every=EVERY), eager,
                          model=runs.model)
    assert result.trades, "the test could not fail: no trade at all"
    # The first P(up) is at the close of bar 500; its order fills at the next bar's open.
    assert min(t.entry_time for t in result.trades) >= bars[MIN_FIRST_TRAIN_BARS + 1].time


def test_blocks_are_cut_every_n_bars_after_the_first_window() -> None:
    assert every_n_edges(1248, 400, 500) == [(500, 900), (900, 1248)]
    assert every_n_edges(1300, 400, 500) == [(500, 900), (900, 1300)]
    edges = block_edges(10_000, TrainConfig(retrain_every=700, first_train_frac=0.3))
    assert edges[0] == (3000, 3700) and edges[-1] == (9300, 10_000) and len(edges) == 10
    assert block_edges(1000, TrainConfig(folds=4)) == fold_edges(1000, 4, 0.5), "unchanged without it"
    with pytest.raises(ValueError, match="nothing to test"):
        every_n_edges(500, 100, 500)


def test_cli_walks_forward_without_a_saved_model(tmp_path: Path, app_home: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    csv = write_bars_csv(tmp_path / "pltr-5m.csv", _sessions(16, seed=5))
    out = tmp_path / "r.json"
    code = main(["--data-dir", str(app_home), "backtest", "--symbol", "PLTR", "--csv", str(csv), "--timeframe",
                 "5m", "--strategy", "ensemble", "--retrain-every", "1000", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    assert not any((app_home / "models").glob("**/*.keras")), "nothing saved"
    data = json.loads(out.read_text())
    assert data["config"]["retrain_every"] == 1000 and data["bars"] == 16 * 78
    notes = "\n".join(data["notes"])
    assert "walk-forward: 1 retrain, every 1000 bars" in notes and "248 out-of-sample bars" in notes
    assert "trained only on earlier bars" in notes and "IN-SAMPLE" not in notes
    assert "note: walk-forward: 1 retrain" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expected", [
    (["--retrain-every", "-5"], "N must be 0 (the saved model) or from 50"),
    (["--retrain-every", "10"], "N must be 0 (the saved model) or from 50"),
    (["--retrain-every", "200000"], "N must be 0"),
    (["--retrain-every", "500", "--strategy", "sma_cross"], "applies to the ensemble only, not to sma_cross"),
    (["--retrain-every", "2000", "--strategy", "ensemble"], "needs more than 2000 bars"),
])
def test_cli_refuses_a_bad_retrain_setting(tmp_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str],
                                           extra: list[str], expected: str) -> None:
    from app.main import main

    csv = write_bars_csv(tmp_path / "bars.csv", _sessions(3))
    code = main(["--data-dir", str(app_home), "backtest", "--csv", str(csv), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and expected in err and "Traceback" not in err


def test_the_engine_refuses_retraining_for_a_strategy_that_is_not_trained() -> None:
    bars = _sessions(2)
    with pytest.raises(ValueError, match="applies to the ensemble only"):
        run_backtest(bars, BacktestConfig(strategy="sma_cross", retrain_every=500))
    for bad in (-1, 10):  # the GUI's spin box can hold 1..49: the engine refuses them too
        with pytest.raises(ValueError, match="N must be 0"):
            make_model("ensemble", bars, retrain_every=bad)


def test_the_cli_defaults_to_the_saved_setting_for_the_ensemble_only(
        tmp_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    app_home.mkdir(parents=True, exist_ok=True)
    Settings(backtest_retrain_bars=2000).save(app_home / "settings.json")
    csv = write_bars_csv(tmp_path / "bars.csv", _sessions(3))
    base = ["--data-dir", str(app_home), "backtest", "--csv", str(csv)]
    assert main([*base, "--strategy", "ensemble"]) == 2
    assert "needs more than 2000 bars" in capsys.readouterr().err, "the saved N was used"
    assert main([*base, "--strategy", "sma_cross", "--plain"]) == 0, "the setting does not touch sma_cross"
    assert main([*base, "--strategy", "ensemble", "--retrain-every", "0"]) == 2
    assert "trained model" in capsys.readouterr().err, "0 on the command line: the saved model, of which none"


def test_the_setting_is_zero_or_a_bounded_number_of_bars() -> None:
    assert Settings().backtest_retrain_bars == 0
    assert Settings(backtest_retrain_bars=MIN_RETRAIN_BARS).backtest_retrain_bars == 50
    assert Settings().updated(backtest_retrain_bars="2000").backtest_retrain_bars == 2000
    for bad, reason in ((10, "must be 0 (the saved model) or at least 50"), (-1, "below the minimum"),
                        (100_001, "above the maximum"), (2.5, "not a whole number")):
        with pytest.raises(SettingsError) as err:
            Settings(backtest_retrain_bars=bad)
        assert err.value.name == "backtest_retrain_bars" and reason in str(err.value)
    assert Settings.from_dict({"backtest_retrain_bars": 700}).backtest_retrain_bars == 700


def test_the_tab_offers_retraining_for_the_ensemble_only(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app.widgets.backtest_tab import BacktestTab

    tab = BacktestTab("PLTR", "5m", retrain_every=1500)
    qtbot.addWidget(tab)
    try:
        tab.strategy_box.setCurrentText("sma_cross")
        assert not tab.retrain_box.isEnabled() and tab.request().retrain_every == 0
        tab.strategy_box.setCurrentText("ensemble")
        assert tab.retrain_box.isEnabled() and tab.request().retrain_every == 1500
        assert tab.request().config().retrain_every == 1500
        tab.retrain_box.setValue(0)
        assert tab.retrain_box.text() == "0 = saved model"
        # Training in the child is slow: progress and Cancel must both work during it.
        tab.csv_edit.setText(str(write_bars_csv(tmp_path / "bars.csv", _sessions(16))))
        tab.retrain_box.setValue(600)
        qtbot.mouseClick(tab.run_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: tab.status.text().startswith("Walk-forward fold 1/2"), timeout=60_000)
        with qtbot.waitSignal(tab.runFinished, timeout=10_000):
            qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
        assert tab.status.text().startswith("Cancelled") and tab.outcome is None
    finally:
        tab.shutdown()
    assert not tab.worker.thread.isRunning() and not tab.job.process.is_alive()
