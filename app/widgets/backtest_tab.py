"""The Backtest tab: history through the same engine, without leaving the desk.

Parameters on the left, Run/Cancel and a progress bar under them; equity (with
buy and hold) and drawdown plots in the middle; metrics and the trade list on
the right. The work happens in :class:`~app.widgets.backtest_job.BacktestJob`,
on a thread of its own that runs each backtest in a child process, so the
window and live trading carry on while a backtest runs. Problems (a bad CSV, a
strategy not available) are shown in the tab in words, never as a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QWidget,
)

from app.backtest_process import (
    MAX_SLIPPAGE_BPS,
    MAXIMIZE,
    STRATEGIES,
    TIMEFRAMES,
    BacktestOutcome,
    BacktestRequest,
    heat_color,
)
from app.engine.settings import default_of, field_bounds
from app.engine.types import NY, Trade
from app.widgets.backtest_job import BacktestJob, BacktestThread

PERCENT = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure", "buy_and_hold_return"}
MONEY = {"avg_win", "avg_loss", "final_equity"}
GREEN, RED = QColor("#26a69a"), QColor("#ef5350")


def format_metric(key: str, value: Any) -> str:
    """How a metric reads to a trader: 12.34%, $1,234.56, 1.234 or n/a."""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "∞" if value > 0 and key == "profit_factor" else "n/a"
        if key in PERCENT:
            return f"{value:+.2%}" if key in ("total_return", "cagr", "buy_and_hold_return") else f"{value:.2%}"
        if key in MONEY:
            return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"
        return f"{value:,.3f}"
    return f"{value:,}" if isinstance(value, (int, np.integer)) else str(value)


class TradesModel(QAbstractTableModel):
    """The trade list, read lazily: tens of thousands of trades cost nothing to show."""

    COLUMNS = ("Symbol", "Entry", "Exit", "Qty", "Entry price", "Exit price", "P&L", "Exit reason")

    def __init__(self) -> None:
        super().__init__()
        self.trades: list[Trade] = []

    def set_trades(self, trades: list[Trade]) -> None:
        self.beginResetModel()
        self.trades = list(trades)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.trades)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return len(self.COLUMNS)

    def headerData(self, section: int, orient: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orient == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        t = self.trades[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (t.symbol, f"{t.entry_time.astimezone(NY):%Y-%m-%d %H:%M}",
                    f"{t.exit_time.astimezone(NY):%Y-%m-%d %H:%M}",
                    f"{t.qty:g}", f"{t.entry_price:.2f}", f"{t.exit_price:.2f}", f"{t.pnl:+,.2f}",
                    t.exit_reason)[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 6:
            return GREEN if t.pnl >= 0 else RED
        return None


class DateAxis(pg.AxisItem):
    """x is the bar index (no overnight gaps); labels show the bar's date."""

    def __init__(self) -> None:
        super().__init__(orientation="bottom")
        self.epochs = np.empty(0)

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            i = int(round(v))
            ok = 0 <= i < len(self.epochs)
            out.append(datetime.fromtimestamp(self.epochs[i], UTC).astimezone(NY).strftime("%Y-%m-%d")
                       if ok else "")
        return out


class BacktestTab(QWidget):
    """Parameters, Run/Cancel, progress, plots, metrics, trades and the HTML export."""

    requestRun = Signal(object)  # BacktestRequest, queued to the job's thread
    requestExport = Signal(object, str)  # BacktestOutcome, path
    runFinished = Signal()  # a run ended: finished, failed or cancelled (for tests and the bench)

    def __init__(self, symbol: str = "PLTR", timeframe: str = "5m", cash: float = 100_000.0,
                 parent: QWidget | None = None, models_dir: str | None = None,
                 retrain_every: int | None = None, cache_dir: str | None = None) -> None:
        super().__init__(parent)
        self.default_retrain = default_of("backtest_retrain_bars") if retrain_every is None else retrain_every
        self.setObjectName("backtestTab")
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.settings: dict[str, Any] = {}  # the saved settings a run uses (the window keeps them current)
        self.outcome: BacktestOutcome | None = None
        self.running = False
        self.error = ""
        self.job = BacktestJob()
        self.worker = BacktestThread(self.job)
        self.requestRun.connect(self.job.run)
        self.requestExport.connect(self.job.export)
        self.job.progressed.connect(self._on_progress)
        self.job.staged.connect(self._on_stage)
        self.job.finished.connect(self._on_finished)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.exported.connect(self._on_exported)
        split = QSplitter(Qt.Orientation.Horizontal)
        form = QScrollArea()  # the form scrolls rather than make the window taller than a 720-line screen
        form.setObjectName("backtestForm")
        form.setWidgetResizable(True)
        form.setFrameShape(QFrame.Shape.NoFrame)
        form.setWidget(self._build_form(symbol, timeframe, cash))
        split.addWidget(form)
        split.addWidget(self._build_plots())
        split.addWidget(self._build_tables())
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 0)
        split.setSizes([290, 800, 330])  # the metrics need ~300 px to show their values in full
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(split)

    # ------------------------------------------------------------ building
    def _build_form(self, symbol: str, timeframe: str, cash: float) -> QWidget:
        box = QWidget()
        form = QFormLayout(box)
        form.setContentsMargins(4, 4, 4, 4)
        self.csv_edit = _named(QLineEdit(), "backtestCsv",
                               "CSV file of OHLCV bars (columns are found by name); several, separated by ';', "
                               "backtest a portfolio on one account: NVDA=nvda.csv; AMD=amd.csv (a bare path: "
                               "the symbol from the file's symbol column or name)")
        self.csv_edit.setPlaceholderText("bars.csv")
        browse = _named(QToolButton(), "backtestBrowse", "Choose the CSV file")
        browse.setText("…")
        browse.clicked.connect(self.browse_csv)
        form.addRow("CSV", _row(self.csv_edit, browse))
        self.symbol_edit = _named(QLineEdit(symbol), "backtestSymbol",
                                  "Symbol the bars belong to (one file; several name their own)")
        form.addRow("Symbol", self.symbol_edit)
        self.timeframe_box = _named(QComboBox(), "backtestTimeframe", "Bar size in the file")
        self.timeframe_box.addItems(list(TIMEFRAMES))
        self.timeframe_box.setCurrentText(timeframe if timeframe in TIMEFRAMES else "5m")
        form.addRow("Timeframe", self.timeframe_box)
        self.strategy_box = _named(QComboBox(), "backtestStrategy", "Signal model to trade with")
        self.strategy_box.addItems(STRATEGIES)
        form.addRow("Strategy", self.strategy_box)
        self.retrain_box = _named(QSpinBox(), "backtestRetrain", "Retrain every N bars (0 = saved model): "
                                  "walk the ensemble forward, each bar's P(up) from a model trained only on "
                                  "earlier bars. Slow: the ensemble is trained once per block")
        self.retrain_box.setRange(0, int(field_bounds("backtest_retrain_bars")["max"]))
        self.retrain_box.setSingleStep(500)
        self.retrain_box.setSpecialValueText("0 = saved model")
        self.retrain_box.setSuffix(" bars")
        self.retrain_box.setGroupSeparatorShown(True)
        self.retrain_box.setValue(self.default_retrain)
        self.strategy_box.currentTextChanged.connect(self._on_strategy)
        self._on_strategy(self.strategy_box.currentText())
        form.addRow("Retrain every", self.retrain_box)
        self.cash_box = _spin("backtestCash", "Starting cash", 1.0, 1e10, 0, cash, 1000.0, prefix="$")
        form.addRow("Cash", self.cash_box)
        self.commission_box = _spin("backtestCommission", "Commission per trade: dollars per share, or a "
                                    "fraction of traded value (see the box beside it)", 0.0, 100.0, 4, 0.0, 0.001)
        self.commission_mode = _named(QComboBox(), "backtestCommissionMode", "How the commission is charged")
        self.commission_mode.addItem("$ / share", "per_share")
        self.commission_mode.addItem("fraction", "fraction")
        form.addRow("Commission", _row(self.commission_box, self.commission_mode))
        self.slippage_box = _spin("backtestSlippage", "Slippage on each fill, in basis points (1 bp = 0.01%)",
                                  0.0, MAX_SLIPPAGE_BPS, 1, 0.0, 1.0, suffix=" bps")
        form.addRow("Slippage", self.slippage_box)
        self.plain_box = _named(QCheckBox("Plain (textbook)"), "backtestPlain",
                                "No risk limits, stops or session rules; the whole cash in each trade")
        form.addRow("", self.plain_box)
        self.optimize_edit = _named(QLineEdit(), "backtestOptimize",
                                    "Search a grid instead of one run: NAME=START:STOP:STEP, separated by spaces "
                                    "(fast and slow for sma_cross, or a risk setting such as "
                                    "stop_loss_pct=0.02:0.05:0.01). Walked forward: each fold picks the best on "
                                    "earlier bars and trades it on the next block. Empty: one run")
        self.optimize_edit.setPlaceholderText("fast=5:30:5 slow=20:100:10")
        form.addRow("Optimise", self.optimize_edit)
        self.maximize_box = _named(QComboBox(), "backtestMaximize", "What the search maximises")
        self.maximize_box.addItems(MAXIMIZE)
        self.folds_box = _named(QSpinBox(), "backtestFolds", "Walk-forward folds (0: in-sample only, which says "
                                "nothing of the future)")
        self.folds_box.setRange(0, 20)
        self.folds_box.setValue(4)
        self.folds_box.setSuffix(" folds")
        form.addRow("Maximise", _row(self.maximize_box, self.folds_box))
        self.run_button = _named(QPushButton("Run"), "backtestRun", "Run the backtest (in the background)")
        self.cancel_button = _named(QPushButton("Cancel"), "backtestCancel", "Stop the running backtest")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        form.addRow(_row(self.run_button, self.cancel_button))
        self.progress = _named(QProgressBar(), "backtestProgress", "Share of the bars played so far")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        form.addRow(self.progress)
        self.status = _named(QLabel("Choose a CSV file and press Run."), "backtestStatus", "")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.status)
        self.export_button = _named(QPushButton("Export HTML…"), "backtestExport",
                                    "Save a self-contained HTML report of this run")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.export_html())
        form.addRow(self.export_button)
        box.setMinimumWidth(260)
        return box

    def _build_plots(self) -> QWidget:
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setObjectName("backtestPlots")
        self.date_axis = DateAxis()
        self.equity_plot = self.plots.addPlot(row=0, col=0, axisItems={"bottom": self.date_axis})
        self.dd_plot = self.plots.addPlot(row=1, col=0)
        self.plots.ci.layout.setRowStretchFactor(0, 3)
        self.plots.ci.layout.setRowStretchFactor(1, 1)
        self.dd_plot.setXLink(self.equity_plot)
        self.dd_plot.hideAxis("bottom")
        for plot, label in ((self.equity_plot, "Equity $"), (self.dd_plot, "Drawdown")):
            plot.setLabel("left", label)
            plot.getAxis("left").setWidth(70)
            plot.showGrid(x=True, y=True, alpha=0.15)
        self.equity_plot.addLegend(offset=(8, 8))
        self.hold_curve = self.equity_plot.plot([], [], pen=pg.mkPen("#78909c", width=1), name="buy and hold")
        self.equity_curve = self.equity_plot.plot([], [], pen=pg.mkPen("#42a5f5", width=2), name="strategy")
        self.dd_curve = self.dd_plot.plot([], [], pen=pg.mkPen("#ef5350", width=1), fillLevel=0,
                                          brush=pg.mkBrush(239, 83, 80, 90))
        for curve in (self.hold_curve, self.equity_curve, self.dd_curve):
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
        return self.plots

    def _build_tables(self) -> QWidget:
        self.result_tabs = QTabWidget()
        self.result_tabs.setObjectName("backtestResultTabs")
        self.metrics_table = QTableWidget(0, 2)
        self.metrics_table.setObjectName("backtestMetrics")
        self.metrics_table.setHorizontalHeaderLabels(("Metric", "Value"))
        self.metrics_table.verticalHeader().hide()
        header = self.metrics_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.metrics_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.trades_model = TradesModel()
        self.trades_view = QTableView()
        self.trades_view.setObjectName("backtestTrades")
        self.trades_view.setModel(self.trades_model)
        self.trades_view.verticalHeader().hide()
        self.trades_view.horizontalHeader().setStretchLastSection(True)
        self.heatmap = QTableWidget(0, 0)
        self.heatmap.setObjectName("backtestHeatmap")
        self.heatmap.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.heatmap.setToolTip("An optimisation's IN-SAMPLE score for each combination of its first two "
                                "parameters (the best over any others); grey: refused or undefined")
        self.result_tabs.addTab(self.metrics_table, "Metrics")
        self.result_tabs.addTab(self.trades_view, "Trades")
        self.result_tabs.addTab(self.heatmap, "Heatmap")
        return self.result_tabs

    # ------------------------------------------------------------ actions
    def browse_csv(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Bars to backtest (several: a portfolio)",
                                                self.csv_edit.text().split(";")[0].strip(),
                                                "CSV files (*.csv);;All (*)")
        if paths:
            self.csv_edit.setText("; ".join(paths))

    def request(self) -> BacktestRequest:
        return BacktestRequest(self.csv_edit.text().strip(), self.symbol_edit.text(),
                               self.timeframe_box.currentText(), self.strategy_box.currentText(),
                               self.cash_box.value(), self.commission_box.value(),
                               str(self.commission_mode.currentData()), self.slippage_box.value(),
                               self.plain_box.isChecked(), self.models_dir,
                               self.retrain_box.value() if self.retrain_box.isEnabled() else 0,
                               self.settings or None, tuple(self.optimize_edit.text().split()),
                               self.maximize_box.currentText(), self.folds_box.value(), self.cache_dir)

    def use_settings(self, settings: dict[str, Any]) -> None:
        """The saved settings: a run trades with their thresholds, weights and risk rules, and the
        cost boxes start at their slippage and commission (a per-share commission)."""
        changed = not self.settings or any(self.settings.get(k) != settings.get(k)
                                           for k in ("slippage_bps", "commission_per_share"))
        self.settings = dict(settings)
        if changed:
            self.slippage_box.setValue(float(settings.get("slippage_bps", 0.0)))
            self.commission_mode.setCurrentIndex(self.commission_mode.findData("per_share"))
            self.commission_box.setValue(float(settings.get("commission_per_share", 0.0)))

    def run(self) -> None:
        if self.running:
            return
        self.running = True
        self.error = ""
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first bar is played (reading the CSV)
        self._say("Reading the CSV…")
        self.worker.ensure_started()
        self.job.arm()
        self.requestRun.emit(self.request())

    def cancel(self) -> None:
        if self.running:
            self.job.cancel()
            self._say("Cancelling…")

    def export_html(self, path: str | None = None) -> None:
        """Write the report; without ``path`` the user picks where."""
        if self.outcome is None:
            return
        if path is None:
            cfg = self.outcome.config
            path, _ = QFileDialog.getSaveFileName(self, "Export backtest report",
                                                  f"backtest-{cfg.symbol}-{cfg.strategy}.html",
                                                  "HTML files (*.html)")
            if not path:
                return
        self.worker.ensure_started()
        self._say(f"Writing {path}…")
        self.requestExport.emit(self.outcome, path)

    def shutdown(self) -> None:
        """Called when the window closes: cancels a run and stops the thread."""
        self.worker.stop()

    # ------------------------------------------------------------ results
    @Slot(int)
    def _on_progress(self, percent: int) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 100)
            self._say("Running…")
        self.progress.setValue(percent)

    @Slot(str)
    def _on_stage(self, text: str) -> None:
        self._say(text[:1].upper() + text[1:] + "…")

    @Slot(str)
    def _on_strategy(self, name: str) -> None:
        self.retrain_box.setEnabled(name == "ensemble")  # only the ensemble is trained

    @Slot(object)
    def _on_finished(self, o: BacktestOutcome) -> None:
        self.outcome = o
        m = o.metrics
        x = np.arange(len(o.equity))
        self.date_axis.epochs = o.epochs
        self.equity_curve.setData(x, o.equity)
        self.hold_curve.setData(x, o.buy_and_hold)
        self.dd_curve.setData(x, o.drawdown * 100.0)
        self.dd_plot.setLabel("left", "Drawdown %")
        self.equity_plot.enableAutoRange()
        self.dd_plot.enableAutoRange()
        self._name_curve("walk-forward (out of sample)" if o.optimization is not None else "strategy")
        if o.optimization is not None:
            self._show_search(o)
        else:
            self._show_metrics(m, o.per_symbol)
        self.trades_model.set_trades(list(o.trades))
        self.export_button.setEnabled(True)
        self.progress.setRange(0, 100)
        self.progress.setValue(100)
        rate = o.bars / max(o.elapsed_seconds, 1e-9)
        held = int(m.get("open_positions") or 0)
        flagged = [n for n in o.notes if any(w in n for w in FLAGS)]
        if o.optimization is not None:
            self._say_search(o)
            self._end_run()
            return
        self._say("\n".join([f"{o.bars:,} bars, {m['trades']} trades in {o.elapsed_seconds:.2f} s "
                             f"({rate:,.0f} bars/s). Return {m['total_return']:+.2%} vs buy and hold "
                             f"{m['buy_and_hold_return']:+.2%}.",
                             *([f"Open at the end: {held} position(s), marked to market at the last close."]
                               if held else []),
                             *flagged, *o.used]),
                  tip="\n".join(o.notes))
        self._end_run()

    def _name_curve(self, name: str) -> None:
        legend = self.equity_plot.legend
        for sample, label in legend.items if legend is not None else ():
            if sample.item is self.equity_curve:
                label.setText(name)

    def _say_search(self, o: BacktestOutcome) -> None:
        opt = o.optimization or {}
        best = opt["in_sample_best"]
        chosen = ", ".join(f"{k}={v:g}" for k, v in best["params"].items())
        oos = opt["walk_forward"]["out_of_sample"]
        walked = (f"Walk-forward (out of sample, {len(opt['walk_forward']['folds'])} folds): return "
                  f"{format_metric('total_return', oos.get('total_return'))}, Sharpe "
                  f"{format_metric('sharpe', oos.get('sharpe'))}." if oos else
                  "No walk-forward (0 folds): the in-sample grid says nothing of the future.")
        self._say("\n".join([f"{opt['combinations']} combinations in {opt['seconds']:.1f} s. " + walked,
                             f"IN-SAMPLE best ({chosen}): return "
                             f"{format_metric('total_return', best['metrics'].get('total_return'))}, "
                             f"{opt['maximize']} {format_metric(opt['maximize'], best['metrics'].get(opt['maximize']))}"
                             f": the best of {opt['combinations']} tries on the bars it is scored on.",
                             *o.notes[:1], *o.used]),
                  tip="\n".join(o.notes))

    def _show_search(self, o: BacktestOutcome) -> None:
        """Walk-forward beside the IN-SAMPLE best, and the heatmap."""
        opt = o.optimization or {}
        best = opt["in_sample_best"]
        chosen = ", ".join(f"{k}={v:g}" for k, v in best["params"].items())
        oos = opt["walk_forward"]["out_of_sample"]
        keys = list(best["metrics"])
        self.metrics_table.setColumnCount(3)
        self.metrics_table.setHorizontalHeaderLabels(("Metric", "Walk-forward", f"IN-SAMPLE {chosen}"))
        self.metrics_table.setRowCount(len(keys))
        for row, key in enumerate(keys):
            self.metrics_table.setItem(row, 0, QTableWidgetItem(key.replace("_", " ")))
            for c, figures in enumerate((oos, best["metrics"]), start=1):
                value = figures.get(key)
                item = QTableWidgetItem(format_metric(key, float("nan") if value is None else value)
                                        if key in figures else "")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics_table.setItem(row, c, item)
        heat = opt["heatmap"]
        values = np.array([[np.nan if v is None else v for v in row] for row in heat["values"]], dtype=float)
        values[np.array([[v == "inf" for v in row] for row in heat["values"]], dtype=bool)] = np.inf
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        self.heatmap.setRowCount(len(heat["ys"]))
        self.heatmap.setColumnCount(len(heat["xs"]))
        self.heatmap.setHorizontalHeaderLabels([f"{v:g}" for v in heat["xs"]])  # the columns: named on the tab
        self.heatmap.setVerticalHeaderLabels([f"{heat['y']} {v:g}" if heat["y"] else opt["maximize"]
                                              for v in heat["ys"]])
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                item = QTableWidgetItem("inf" if v == np.inf else "" if not np.isfinite(v) else f"{v:.2f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setBackground(QColor(heat_color(v, lo, hi)))
                item.setForeground(QColor("#ffffff"))
                self.heatmap.setItem(i, j, item)
        self.heatmap.resizeColumnsToContents()
        across = f"{heat['x']} across" + (f", {heat['y']} down" if heat["y"] else "")
        self.result_tabs.setTabText(self.result_tabs.indexOf(self.heatmap), f"Heatmap ({across})")
        self.result_tabs.setCurrentWidget(self.heatmap)

    def _show_metrics(self, m: dict[str, Any], per_symbol: dict[str, dict[str, Any]]) -> None:
        """The portfolio's figures, then each symbol's (its sleeve of the one account)."""
        columns = [m, *per_symbol.values()]
        self.metrics_table.setColumnCount(1 + len(columns))
        self.metrics_table.setHorizontalHeaderLabels(("Metric", "Portfolio" if per_symbol else "Value", *per_symbol))
        self.metrics_table.setRowCount(len(m))
        for row, key in enumerate(m):
            self.metrics_table.setItem(row, 0, QTableWidgetItem(key.replace("_", " ")))
            for c, figures in enumerate(columns, start=1):
                item = QTableWidgetItem(format_metric(key, figures.get(key)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics_table.setItem(row, c, item)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.error = message
        self._say(f"Error: {message}", error=True)
        if self.running:
            self.progress.setRange(0, 100)
            self.progress.setValue(0)
            self._end_run()

    @Slot(str)
    def _on_cancelled(self, message: str) -> None:
        self._say(f"Cancelled ({message.removeprefix('cancelled ')}).")
        self._end_run()

    @Slot(str)
    def _on_exported(self, path: str) -> None:
        self._say(f"Report written to {path}")

    def _end_run(self) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 100)
        self.running = False
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.runFinished.emit()

    def _say(self, text: str, error: bool = False, tip: str = "") -> None:
        self.status.setText(text)
        self.status.setToolTip(tip or text)
        self.status.setStyleSheet("color:#ef5350; font-weight:bold;" if error else "")


FLAGS = ("IN-SAMPLE", "NO DEMONSTRATED EDGE", "UNCALIBRATED")  # notes that change what a result means: shown


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


def _named(widget: Any, name: str, tip: str) -> Any:
    widget.setObjectName(name)
    if tip:
        widget.setToolTip(tip)
    return widget


def _spin(name: str, tip: str, lo: float, hi: float, decimals: int, value: float, step: float,
          prefix: str = "", suffix: str = "") -> QDoubleSpinBox:
    box = _named(QDoubleSpinBox(), name, tip)
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setPrefix(prefix)
    box.setSuffix(suffix)
    box.setGroupSeparatorShown(True)
    return box
