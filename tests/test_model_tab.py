"""The Model tab: shows what training measured; Retrain runs in its own process."""

from __future__ import annotations

import json
from pathlib import Path

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
