"""The Model tab: shows what training measured; Retrain runs in its own process."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QComboBox
from test_ml_cli import write_daily_csv

from app.engine.paths import AppPaths
from app.widgets.model_tab import ModelTab


def test_without_a_model_it_says_the_rules_trade(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tab = ModelTab(AppPaths(tmp_path), "PLTR", "5m")
    qtbot.addWidget(tab)
    assert "rules fallback" in tab.status.text()
    assert tab.table.rowCount() == 0
    assert not tab.start_training(), "no CSV chosen"
    assert "Choose a CSV" in tab.status.text()


def test_retrain_shows_progress_then_the_out_of_sample_table(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "daily.csv"
    write_daily_csv(csv)
    tab = ModelTab(AppPaths(tmp_path / "home"), "PLTR", "1d")
    tab.extra_args = lambda: ["--small", "--folds", "2"]  # type: ignore[method-assign]
    qtbot.addWidget(tab)
    tab.csv.setText(str(csv))
    with qtbot.waitSignal(tab.trained, timeout=240_000):
        assert tab.start_training()
        assert not tab.retrain.isEnabled() and tab.cancel.isEnabled()
    names = {tab.table.item(r, 0).text() for r in range(tab.table.rowCount())}
    assert {"lstm", "random_forest", "momentum", "ensemble", "always_up"} <= names
    assert tab.progress.value() == 1000 and "Out-of-sample" in tab.status.text()
    assert tab.status.text().startswith("NO DEMONSTRATED EDGE: "), "a random walk: it says so first"
    meta = json.loads((tab.folder() / "metadata.json").read_text())
    assert meta["symbol"] == "PLTR"


def test_cancel_leaves_no_model(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "daily.csv"
    write_daily_csv(csv)
    tab = ModelTab(AppPaths(tmp_path / "home"), "PLTR", "1d")
    qtbot.addWidget(tab)
    tab.csv.setText(str(csv))
    assert tab.start_training()
    process = tab.process
    tab.cancel_training()
    from PySide6.QtCore import QProcess

    assert process is not None and process.state() == QProcess.ProcessState.NotRunning
    qtbot.waitUntil(lambda: tab.retrain.isEnabled(), timeout=10_000)
    assert "cancelled" in tab.status.text()
    assert not (tab.folder() / "metadata.json").exists()


def test_a_bad_file_shows_the_one_line_error(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    tab = ModelTab(AppPaths(tmp_path / "home"), "PLTR", "1d")
    qtbot.addWidget(tab)
    tab.csv.setText(str(bad))
    assert tab.start_training()
    qtbot.waitUntil(lambda: tab.retrain.isEnabled(), timeout=120_000)
    assert tab.status.text().startswith("error:")


def _save_metadata(paths: AppPaths, symbol: str, timeframe: str, bars: int) -> None:
    """The metadata.json a finished training leaves (only the parts the tab shows)."""
    folder = paths.model_dir(symbol, timeframe)
    folder.mkdir(parents=True)
    overall = {"lstm": {"n": 120, "accuracy": 0.55}, "ensemble": {"n": 120, "accuracy": 0.57}}
    (folder / "metadata.json").write_text(json.dumps({
        "symbol": symbol, "train_start": "2024-01-02T00:00:00", "train_end": "2025-06-30T00:00:00",
        "bars": bars, "horizon": 5, "metrics": {"overall": overall, "calibration": {}}}))


def test_the_symbol_picker_shows_each_watchlist_symbols_model(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = AppPaths(tmp_path / "home")
    _save_metadata(paths, "NVDA", "1d", bars=777)
    tab = ModelTab(paths, "PLTR", "1d", watchlist=["PLTR", "NVDA", "SPY"])
    qtbot.addWidget(tab)
    picker = tab.findChild(QComboBox, "modelSymbol")
    assert picker is tab.picker
    assert [picker.itemText(i) for i in range(picker.count())] == ["PLTR", "NVDA", "SPY"]
    assert "No trained model for PLTR 1d" in tab.status.text() and tab.table.rowCount() == 0
    picker.setCurrentText("NVDA")
    assert "777 bars" in tab.status.text() and tab.table.rowCount() == 2
    assert tab.status.text().startswith("NOT JUDGED for an edge"), "saved before the edge gate"
    assert tab.folder() == paths.model_dir("NVDA", "1d")
    picker.setCurrentText("SPY")
    assert "No trained model for SPY 1d" in tab.status.text() and tab.table.rowCount() == 0


def test_set_watchlist_keeps_the_choice_while_it_is_still_listed(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = AppPaths(tmp_path / "home")
    _save_metadata(paths, "QQQ", "5m", bars=42)
    tab = ModelTab(paths, "PLTR", "5m")
    qtbot.addWidget(tab)
    assert [tab.picker.itemText(i) for i in range(tab.picker.count())] == ["PLTR"]  # no watchlist: just the symbol
    tab.set_watchlist(["spy", "PLTR"])
    assert tab.symbol == "PLTR" and tab.picker.count() == 2
    tab.set_watchlist(["QQQ", "SPY"])  # PLTR left the watchlist: the first symbol's model is shown
    assert tab.symbol == "QQQ" and "42 bars" in tab.status.text()


def test_retrain_trains_the_chosen_symbol(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "daily.csv"
    write_daily_csv(csv)
    tab = ModelTab(AppPaths(tmp_path / "home"), "PLTR", "1d", watchlist=["PLTR", "NVDA"])
    qtbot.addWidget(tab)
    tab.csv.setText(str(csv))
    tab.picker.setCurrentText("NVDA")
    assert tab.start_training()
    assert tab.process is not None
    args = tab.process.arguments()
    assert args[args.index("--symbol") + 1] == "NVDA" and args[args.index("--timeframe") + 1] == "1d"
    assert not tab.picker.isEnabled(), "the symbol cannot change under a running training"
    tab.cancel_training()
    qtbot.waitUntil(lambda: tab.retrain.isEnabled(), timeout=10_000)
    assert tab.picker.isEnabled()


def test_whole_watchlist_trains_one_model_over_every_symbol(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for k, symbol in enumerate(("AAA", "BBB")):
        write_daily_csv(tmp_path / f"{symbol}_1d.csv", seed=30 + k)
    tab = ModelTab(AppPaths(tmp_path / "home"), "AAA", "1d", watchlist=["AAA", "BBB"])
    tab.extra_args = lambda: ["--small", "--folds", "2"]  # type: ignore[method-assign]
    qtbot.addWidget(tab)
    tab.pooled.setChecked(True)
    tab.csv.setText(str(tmp_path / "AAA_1d.csv"))
    assert not tab.start_training()
    assert "one CSV named after each symbol" in tab.status.text() and "BBB (no file)" in tab.status.text()
    tab.csv.setText(f"{tmp_path / 'AAA_1d.csv'}; {tmp_path / 'BBB_1d.csv'}")
    with qtbot.waitSignal(tab.trained, timeout=240_000):
        assert tab.start_training()
        assert tab.process is not None and "--symbol" not in tab.process.arguments()
        assert not tab.pooled.isEnabled()
    assert "one model over AAA, BBB" in tab.status.text()
    tab.picker.setCurrentText("BBB")  # each symbol got its own copy of the one model
    meta = json.loads((tab.folder() / "metadata.json").read_text())
    assert meta["symbol"] == "BBB" and meta["symbols"] == ["AAA", "BBB"] and meta["market"] == ["AAA", "BBB"]


def test_whole_watchlist_needs_a_watchlist(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tab = ModelTab(AppPaths(tmp_path), "PLTR", "5m")
    qtbot.addWidget(tab)
    tab.pooled.setChecked(True)
    tab.csv.setText(str(tmp_path / "PLTR_5m.csv"))
    assert not tab.start_training() and "holds one symbol" in tab.status.text()


def test_whole_watchlist_reads_file_names_the_way_a_trader_writes_them(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tab = ModelTab(AppPaths(tmp_path), "BRK", "5m", watchlist=["BRK", "BRK.B", "SPY"])
    qtbot.addWidget(tab)
    tab.pooled.setChecked(True)
    files = ["/d/BRK_5m.csv", "/d/BRK.B_5m.csv", "/d/SPY_5m.csv", "/d/SPY_1d.csv"]  # the daily file is not for 5m
    tab.csv.setText("; ".join(files))
    pairs, problem = tab.watchlist_files()
    assert problem == "" and pairs == ["BRK=/d/BRK_5m.csv", "BRK.B=/d/BRK.B_5m.csv", "SPY=/d/SPY_5m.csv"]
    tab.csv.setText("; ".join([*files, "/d/SPY2023_5m.csv"]))
    pairs, problem = tab.watchlist_files()
    assert not pairs and "SPY2023_5m.csv: no watchlist symbol in the name" in problem


def test_training_from_the_desk_leaves_a_core_to_the_window(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os

    csv = tmp_path / "daily.csv"
    write_daily_csv(csv)
    tab = ModelTab(AppPaths(tmp_path / "home"), "PLTR", "1d")
    qtbot.addWidget(tab)
    tab.csv.setText(str(csv))
    assert tab.start_training() and tab.process is not None
    args = tab.process.arguments()
    assert args[args.index("--jobs") + 1] == str(max(1, (os.cpu_count() or 1) - 1))
    tab.cancel_training()
