"""The Model tab: what the last training measured, and Retrain.

Training runs as a separate process (``main.py train``), so TensorFlow never
loads into the window and Cancel simply ends that process. Progress comes
from its ``[ 42.0%] message`` lines. Metrics and the reliability plot are
read from the model's ``metadata.json`` (out-of-sample figures only).

Each watchlist symbol has its own model (``models/NVDA_5m``); the symbol
picker chooses which one is shown and which one Retrain trains. With "Whole
watchlist" ticked, Retrain trains one model over every watchlist symbol (``train
--csv S=file`` once per symbol), from one CSV per symbol named after it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import QProcess, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.types import TIMEFRAMES

if TYPE_CHECKING:
    from app.engine.paths import AppPaths  # given by the window, never imported at run time

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(r"^\[\s*([0-9.]+)%\]\s*(.*)$")
MIN_CONTENT_HEIGHT = 300  # below this the tab scrolls: the table and the plot need room to be read
COLUMNS = ("model", "n", "accuracy", "balanced_accuracy", "roc_auc", "brier", "log_loss", "at_70", "at_80")


class ModelTab(QWidget):
    trained = Signal(str)  # the models folder that changed

    def __init__(self, paths: AppPaths, symbol: str, timeframe: str, parent: QWidget | None = None, *,
                 watchlist: Sequence[str] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelTab")
        self.paths, self.home = paths, paths.home
        self.process: QProcess | None = None
        self._run_folder: Path | None = None  # the model folder the running training writes
        inner = QWidget()
        inner.setMinimumHeight(MIN_CONTENT_HEIGHT)
        layout = QVBoxLayout(inner)
        row = QHBoxLayout()
        self.picker = QComboBox()
        self.picker.setObjectName("modelSymbol")
        self.picker.setToolTip("Which watchlist symbol's model to show and retrain")
        chosen = symbol.strip().upper()
        items = _symbols(watchlist or [chosen])
        self.picker.addItems(items if chosen in items else [chosen, *items])
        self.picker.setCurrentText(chosen)
        self.picker.currentTextChanged.connect(lambda _t: self.reload())
        self.csv = QLineEdit()
        self.csv.setObjectName("trainCsv")
        self.csv.setPlaceholderText("CSV of bars to train on")
        self.csv.setToolTip("Bars to train on; columns are found by name")
        browse = QPushButton("Browse…")
        browse.setToolTip("Choose the CSV file")
        browse.clicked.connect(self._browse)
        self.timeframe = QComboBox()
        self.timeframe.addItems(list(TIMEFRAMES))
        self.timeframe.setCurrentText(timeframe)
        self.timeframe.setToolTip("Timeframe of the bars in the file")
        self.timeframe.currentTextChanged.connect(lambda _t: self.reload())
        self.pooled = QCheckBox("Whole watchlist")
        self.pooled.setObjectName("trainWatchlist")
        self.pooled.setToolTip("One model over every watchlist symbol, judged overall, per symbol and across "
                               "symbols; choose one CSV per symbol, named after it (e.g. AAPL_5m.csv)")
        self.retrain = QPushButton("Retrain")
        self.retrain.setObjectName("retrainButton")
        self.retrain.setToolTip("Walk-forward evaluation, calibration and a final fit, in a separate process")
        self.cancel = QPushButton("Cancel")
        self.cancel.setObjectName("cancelTrainingButton")
        self.cancel.setToolTip("Stop training; the saved model is left as it was")
        self.cancel.setEnabled(False)
        self.retrain.clicked.connect(self.start_training)
        self.cancel.clicked.connect(self.cancel_training)
        for w in (self.picker, self.timeframe, self.pooled, self.retrain, self.cancel):
            row.addWidget(w)
        row.addStretch(1)
        files = QHBoxLayout()  # its own line: the dock is narrow on a laptop, and the paths are long
        files.addWidget(self.csv, 1)
        files.addWidget(browse)
        layout.addLayout(row)
        layout.addLayout(files)
        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setObjectName("trainStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        body = QHBoxLayout()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("modelMetrics")
        self.table.setHorizontalHeaderLabels([c.replace("_", " ") for c in COLUMNS])
        self.table.verticalHeader().hide()
        body.addWidget(self.table, 3)
        self.reliability = pg.PlotWidget(title="Calibration: stated vs observed P(up)")
        self.reliability.setObjectName("reliabilityPlot")
        self.reliability.setLabel("bottom", "stated")
        self.reliability.setLabel("left", "observed")
        self.reliability.setXRange(0, 1)
        self.reliability.setYRange(0, 1)
        body.addWidget(self.reliability, 2)
        layout.addLayout(body)
        scroll = QScrollArea()  # a short dock (a 720-line screen) scrolls the tab rather than squash it
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.reload()

    # -------------------------------------------------------------- display
    @property
    def symbol(self) -> str:
        """The symbol whose model is shown and retrained: the picker's choice."""
        return self.picker.currentText()

    def set_watchlist(self, symbols: Sequence[str]) -> None:
        """New watchlist from the settings: keep the chosen symbol while it is still in it,
        else show the first one's model. An empty list leaves the picker as it is."""
        items = _symbols(symbols)
        if not items:
            return
        current = self.symbol
        self.picker.blockSignals(True)  # one reload at the end, not one per item
        self.picker.clear()
        self.picker.addItems(items)
        self.picker.setCurrentText(current if current in items else items[0])
        self.picker.blockSignals(False)
        if self.symbol != current:
            self.reload()

    def folder(self) -> Path:
        return self.paths.model_dir(self.symbol, self.timeframe.currentText())

    @Slot()
    def reload(self) -> dict[str, Any] | None:
        meta_path = self.folder() / "metadata.json"
        self.table.setRowCount(0)
        self.reliability.clear()
        self.reliability.plot([0, 1], [0, 1], pen=pg.mkPen("#888", style=pg.QtCore.Qt.PenStyle.DashLine))
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            self.status.setText(f"No trained model for {self.symbol} {self.timeframe.currentText()} yet: "
                                "the rules fallback trades.")
            return None
        metrics = meta.get("metrics", {})
        for name, m in metrics.get("overall", {}).items():
            r = self.table.rowCount()
            self.table.insertRow(r)
            for c, key in enumerate(COLUMNS):
                self.table.setItem(r, c, QTableWidgetItem(_cell(name if key == "model" else m.get(key))))
        cal = metrics.get("calibration", {})
        bins = [b for b in cal.get("reliability", []) if b.get("n")]
        if bins:
            self.reliability.plot([b["mean_p"] for b in bins], [b["observed"] for b in bins],
                                  pen=pg.mkPen("#42a5f5", width=2), symbol="o", symbolBrush="#42a5f5")
        if meta.get("edge") is True:
            verdict = f"Edge shown out of sample: {meta.get('edge_reason', '')}. "
        elif "edge" in meta:
            verdict = (f"NO DEMONSTRATED EDGE: {meta.get('edge_reason') or 'its out-of-sample numbers show none'}. "
                       "It never trades: the rules model does. ")
        else:
            verdict = "NOT JUDGED for an edge (saved by an older version): train it again. The rules model trades. "
        self.status.setText(
            verdict +
            f"Trained on {str(meta.get('train_start') or '?')[:10]} .. {str(meta.get('train_end') or '?')[:10]}, "
            f"{meta.get('bars', '?')} bars{_pooled(meta)}. It states the chance that the rules model's buy, "
            f"held to the desk's stops or the close, makes money after costs. Out-of-sample figures on those "
            f"buys; calibration error {_cell(cal.get('ece_raw')) or '-'} raw, "
            f"{_cell(cal.get('ece_walk_forward')) or '-'} calibrated (- : too few to calibrate).")
        return meta

    # ------------------------------------------------------------ training
    def _browse(self) -> None:
        if self.pooled.isChecked():
            paths, _ = QFileDialog.getOpenFileNames(self, "One CSV per watchlist symbol", "",
                                                    "CSV files (*.csv);;All (*)")
            if paths:
                self.csv.setText("; ".join(paths))
            return
        path, _ = QFileDialog.getOpenFileName(self, "Bars to train on", "", "CSV files (*.csv);;All (*)")
        if path:
            self.csv.setText(path)

    def watchlist_files(self) -> tuple[list[str], str]:
        """``SYMBOL=file`` for every watchlist symbol, from the files named after them; or no
        pairs and what is missing, in the user's words."""
        symbols = [self.picker.itemText(i) for i in range(self.picker.count())]
        if len(symbols) < 2:
            return [], "The watchlist holds one symbol: untick Whole watchlist to train its model."
        files = [f.strip() for f in re.split(r"[;\n]", self.csv.text()) if f.strip()]
        timeframe = self.timeframe.currentText()
        files = [f for f in files if _timeframe_ok(Path(f).stem, timeframe)]
        pairs, missing = [], []
        stray = [Path(f).name for f in files if not any(_names(Path(f).stem, s) for s in symbols)]
        if stray:
            return [], f"{', '.join(stray)}: no watchlist symbol in the name ({', '.join(symbols)})."
        for symbol in symbols:
            match = [f for f in files if _names(Path(f).stem, symbol)]
            if len(match) == 1:
                pairs.append(f"{symbol}={match[0]}")
            else:
                missing.append(f"{symbol} ({'no file' if not match else f'{len(match)} files'})")
        if missing:
            return [], (f"Whole watchlist needs one CSV named after each symbol, e.g. {symbols[0]}_5m.csv: "
                        f"{', '.join(missing)}.")
        return pairs, ""

    @Slot()
    def start_training(self) -> bool:
        if self.process is not None:
            return False
        csv = self.csv.text().strip()
        if not csv:
            self.status.setText("Choose a CSV of bars to train on.")
            return False
        source = ["--symbol", self.symbol, "--csv", csv]
        if self.pooled.isChecked():
            pairs, problem = self.watchlist_files()
            if problem:
                self.status.setText(problem)
                return False
            source = [a for pair in pairs for a in ("--csv", pair)]
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.progress.setValue(0)
        who = "the watchlist" if self.pooled.isChecked() else self.symbol
        self.status.setText(f"Training {who} {self.timeframe.currentText()}…")
        self._run_folder = self.folder()  # announced when it ends, whatever the picker shows then
        self._set_running(True)
        self._tail: list[str] = []
        jobs = str(max(1, (os.cpu_count() or 1) - 1))  # one core stays with the window
        self.process.start(sys.executable, [str(ROOT / "main.py"), "--data-dir", str(self.home), "train", *source,
                                            "--timeframe", self.timeframe.currentText(), "--jobs", jobs,
                                            *self.extra_args()])
        return True

    def _set_running(self, running: bool) -> None:
        """While training, the symbol and timeframe stay put: the finished run reloads and
        announces the folder they name, which must be the one it trained."""
        for w in (self.picker, self.timeframe, self.pooled, self.retrain):
            w.setEnabled(not running)
        self.cancel.setEnabled(running)

    def extra_args(self) -> list[str]:
        """More arguments for the training command (tests ask for tiny models)."""
        return []

    @Slot()
    def cancel_training(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.waitForFinished(3000)  # never leave a training process behind
            self.status.setText("Training cancelled; the saved model is unchanged.")

    @Slot()
    def _read(self) -> None:
        assert self.process is not None
        text = bytes(self.process.readAllStandardOutput().data()).decode(errors="replace")
        for line in text.splitlines():
            m = PROGRESS.match(line.strip())
            if m:
                self.progress.setValue(int(float(m.group(1)) * 10))
                self.status.setText(m.group(2))
            elif line.strip():
                self._tail = [*self._tail, line.strip()][-5:]

    @Slot(int, QProcess.ExitStatus)
    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._set_running(False)
        self.process = None
        if status == QProcess.ExitStatus.NormalExit and code == 0:
            self.progress.setValue(1000)
            self.reload()
            self.trained.emit(str(self._run_folder or self.folder()))
        elif status == QProcess.ExitStatus.NormalExit:
            errors = [t for t in self._tail if t.startswith("error:")]
            self.status.setText(errors[-1] if errors else f"Training failed (exit {code})")


def _names(stem: str, symbol: str) -> bool:
    """Whether a file name names the symbol: it starts with it, then ends or goes on after a
    separator (``AAPL_5m`` names AAPL; ``AAPLX``, ``AAPL2023`` and ``BRK.B_5m`` for BRK do not)."""
    head = stem.upper()
    if not head.startswith(symbol):
        return False
    rest = head[len(symbol):]
    return not rest or rest[0] in "_- " or (rest[0] == "." and not rest[1:2].isalpha())


def _timeframe_ok(stem: str, timeframe: str) -> bool:
    """A file whose name states another timeframe (``SPY_1d`` when training 5m) is not one to use."""
    said = [t for t in re.split(r"[_\-. ]", stem.lower()) if t in TIMEFRAMES]
    return not said or timeframe in said


def _symbols(symbols: Sequence[str]) -> list[str]:
    """Upper-case, without blanks or repeats, in the watchlist's order."""
    return list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))


def _pooled(meta: dict[str, Any]) -> str:
    """", one model over SYMBOLS" for a watchlist's model, else nothing."""
    symbols = meta.get("symbols")
    return f", one model over {', '.join(map(str, symbols))}" if isinstance(symbols, list) and len(symbols) > 1 else ""


def _cell(v: Any) -> str:
    if isinstance(v, dict):
        n, hit = v.get("count"), v.get("hit_rate")
        return f"{n} / {hit:.2f}" if hit is not None else f"{n}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)
