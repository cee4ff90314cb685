"""The trading desk window: widgets wired to the engine worker's signals only."""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QByteArray, QObject, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QToolBar,
    QToolButton,
    QWidget,
)

from app.engine.events import AlertEvent, PortfolioEvent, PredictionEvent, SignalEvent
from app.engine.live_gate import live_gate
from app.engine.paths import AppPaths
from app.engine.secrets import ApiKeys
from app.engine.settings import Settings, SettingsError, in_words
from app.engine.types import NY, TIMEFRAMES, EngineStatus, Order, SignalStatus, Trade, TradingMode, timeframe_of
from app.widgets.backtest_tab import BacktestTab
from app.widgets.chart import CandleChart
from app.widgets.chart_book import ChartBook
from app.widgets.model_tab import ModelTab
from app.widgets.notifications import ApprovalNotifier, NoticeList
from app.widgets.order_ticket import OrderTicket
from app.widgets.panels import AccountSummary, ApprovalPanel, FlattenAllButton, ModeSwitch
from app.widgets.positions import PositionsTable
from app.widgets.settings_dialog import SettingsDialog
from app.widgets.status import TradingStatusBar
from app.widgets.tables import LogView, OrdersTable, TradesTable, configurable_columns
from app.widgets.watchlist import WatchlistPanel
from app.worker import EngineThread, EngineWorker

SPEEDS = (("1x (real time)", 1.0), ("60x", 60.0), ("600x", 600.0), ("3000x", 3000.0), ("30000x", 30000.0))


class LogBridge(QObject):
    """A loguru sink that hands each line to the GUI thread through a signal."""

    line = Signal(str, str)

    def sink(self, message: Any) -> None:
        record = message.record
        self.line.emit(record["level"].name, f"{record['time']:%H:%M:%S} {record['level'].name:<7} "
                                             f"{record['message']}")


FROM_FILE = "as the file says (its symbol column, else its name)"


DEFAULT_SIZE = (1400, 860)  # the first-run window, where the screen has room
LAYOUT_VERSION = 2  # of the docks' arrangement: a saved state of another version is not restored
RIGHT_COLUMN = 290  # px: the first-run layout's right column (watchlist, account, approvals)
BOTTOM_ROW = 120  # px: the first-run layout's positions and record, under the chart
SMALL_SCREEN_HEIGHT = 860  # px available: below it the right column's account and approvals are tabbed
APPROVAL_ROOM = 330  # px the approval dock grows to when a signal waits: the card in full


def model_saved_message(folder: str, settings: Settings) -> str:
    """The line after a training: saved where, and whether the desk will trade it."""
    # deferred: the model's module loads when a training ends, not at the window's start-up
    from app.engine.ml.artifacts import META

    try:
        meta = json.loads((Path(folder) / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    symbol, timeframe = str(meta.get("symbol", "?")), str(meta.get("timeframe", "?"))
    where = f"New {symbol} {timeframe} model saved in {folder}"
    if timeframe != settings.timeframe:
        return (f"{where}. The desk trades {settings.timeframe} bars, so it does not use this model (the "
                f"timeframe setting would have to be {timeframe}).")
    if symbol not in settings.watchlist:
        return f"{where}. {symbol} is not on the watchlist, so the desk does not use it."
    if meta.get("edge") is not True:
        why = meta.get("edge_reason") or "its out-of-sample numbers show none"
        return (f"{where}. It has no demonstrated edge ({why}): the desk keeps trading {symbol} with its rules "
                "model. The Model tab says why.")
    return f"{where}: the desk trades {symbol} with it from the next start."


class MainWindow(QMainWindow):
    requestApprove = Signal(str)
    requestReject = Signal(str)
    requestMode = Signal(str)
    requestFlatten = Signal()
    requestClose = Signal(str)
    requestAdopt = Signal(str)
    requestSpeed = Signal(float)
    requestPaused = Signal(bool)
    requestSettings = Signal(object)
    requestImport = Signal(str, str, str)
    requestConfirmLive = Signal()
    requestManualOrder = Signal(str, str, float, float, float)
    requestMoveStop = Signal(str, float, bool)

    def __init__(self, paths: AppPaths, settings: Settings, demo: bool = True,
                 replay: Sequence[str] = ()) -> None:
        super().__init__()
        self.paths = paths
        # Auto at the last close: the engine starts in Hybrid, and the user is asked again once it is up
        self._resume_auto = settings.mode == TradingMode.AUTO.value
        if self._resume_auto:
            settings = settings.updated(mode=TradingMode.HYBRID.value)
        self.settings = settings
        self.setObjectName("mainWindow")
        self.setWindowTitle("AI Trader — SIMULATED demo market" if demo else "AI Trader — PAPER trading (Alpaca)")
        self.resize(*DEFAULT_SIZE)
        self.status: EngineStatus | None = None
        self.engine_ready = False
        self.paper_first_day: str | None = None
        self.alerts: list[AlertEvent] = []
        self.held: dict[str, float] = {}  # shares per symbol, from the latest portfolio
        self.ticket: OrderTicket | None = None
        self.closing = False  # set as the window closes: a question it was asking goes unanswered
        self.entries: dict[str, float] = {}  # each held symbol's entry price, for a dragged stop's check
        self._build_menu()
        self._build_widgets()
        self._build_docks()
        # never narrower than the File menu beside the whole trading bar (banner, mode, speed, FLATTEN ALL)
        self.setMinimumWidth(self.trading_bar.sizeHint().width() + 80)
        self._restore_layout()
        self.approvals.set_pace(float(self.speed.currentData()) if demo else 1.0, False)
        if not demo and settings.broker == "alpaca-live":
            self.banner.setText("  LIVE TRADING — REAL MONEY  ")
            self.banner.setStyleSheet("background:#c62828; color:white; font-weight:bold; padding:4px;")
            self.setWindowTitle("AI Trader — LIVE TRADING (real money)")
            self.speed.setEnabled(False)
            self.pause_button.setEnabled(False)
        elif not demo:
            self.banner.setText("  PAPER TRADING — Alpaca paper account, real market data  ")
            self.banner.setStyleSheet("background:#1565c0; color:white; font-weight:bold; padding:4px;")
            self.speed.setEnabled(False)
            self.pause_button.setEnabled(False)
        if replay:
            names = ", ".join(Path(spec).name for spec in replay)
            self.banner.setText(f"  REPLAY of {names}: recorded bars, simulated broker  ")
            self.setWindowTitle(f"AI Trader — REPLAY of {names} (simulated broker)")
        self.worker = EngineWorker(paths, settings, demo=demo or bool(replay), replay=replay)
        self.engine = EngineThread(self.worker)
        self._connect()
        self.log_bridge = LogBridge()
        self.log_bridge.line.connect(self.log_view.append)
        self._log_sink: int | None = logger.add(self.log_bridge.sink, level="DEBUG", format="{message}")

    # ------------------------------------------------------------- layout
    def _build_menu(self) -> None:
        from PySide6.QtGui import QAction, QKeySequence

        menu = self.menuBar().addMenu("&File")
        for text, shortcut, slot in (("&Import CSV…", "Ctrl+I", self.import_csv),
                                     ("&Order ticket…", "Ctrl+T", self.open_ticket),
                                     ("&Settings…", "Ctrl+,", self.open_settings),
                                     ("&Quit", "Ctrl+Q", self.close)):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(slot)
            menu.addAction(action)

    def open_ticket(self) -> OrderTicket:
        """The order ticket for the charted symbol (Ctrl+T): checked by the engine's risk rules."""
        ticket = OrderTicket(self.settings.watchlist, self.chart_book.prices, self.settings, self.chart_symbol, self)
        ticket.sendRequested.connect(self.requestManualOrder)
        self.ticket = ticket
        ticket.open()
        return ticket

    @Slot(float, float)
    def on_stop_dragged(self, was: float, to: float) -> None:
        """A stop line dropped at ``to``: the engine checks it; one looser than the initial stop asks first."""
        symbol = self.chart_symbol
        entry = self.entries.get(symbol)
        if entry is None:
            return
        floor = entry * (1 - self.settings.stop_loss_pct)
        looser = to < floor - 1e-9
        if looser and not self.confirm(
                "Loosen the stop?", f"{to:,.2f} is below the initial stop {floor:,.2f} "
                f"({self.settings.stop_loss_pct:.1%} under the entry at {entry:,.2f}): more than the risk rules "
                "planned could be lost. Move the stop there?"):
            self.notify(f"{symbol}: stop left at {was:,.2f}")
            return
        self.requestMoveStop.emit(symbol, to, looser)

    @Slot(str)
    def on_manual_order(self, text: str) -> None:
        refused = "refused" in text or "nothing held" in text or "no price" in text
        self.notify(f"Order ticket: {text}", "warning" if refused else "info")
        if self.ticket is not None:
            self.ticket.answered(text)

    def open_settings(self) -> SettingsDialog:
        dlg = SettingsDialog(self.settings, self.paths.env_file, self, live_check=self._live_check,
                             check_connection=_check_connection)
        dlg.settingsSaved.connect(self.apply_settings)
        dlg.open()
        return dlg

    def _live_check(self, phrase: str) -> tuple[bool, str]:
        return live_gate(self.paper_first_day, datetime.now(UTC), phrase)

    @Slot(object)
    def apply_settings(self, settings: Settings) -> None:
        restart = [n for n in ("timeframe", "broker", "data_source", "starting_cash", "demo_seed")
                   if getattr(settings, n) != getattr(self.settings, n)]
        if settings.broker == "alpaca-live" and self.settings.broker != "alpaca-live":
            self.requestConfirmLive.emit()  # the dialog only saves this past the gate
        settings.save(self.paths.settings)
        if settings.backtest_retrain_bars != self.settings.backtest_retrain_bars:
            self.backtest_tab.retrain_box.setValue(settings.backtest_retrain_bars)
        self.settings = settings
        self.account.settings = settings
        self.backtest_tab.use_settings(settings.to_dict())
        self.requestSettings.emit(settings)
        note = f" ({', '.join(restart)} apply at the next start)" if restart else ""
        self.notify(f"Settings saved{note}")

    @Slot(str)
    def on_model_trained(self, folder: str) -> None:
        """What the new model will do, said truly: one for another timeframe or symbol is not used
        by this desk, and one without a demonstrated edge never trades (the rules model does)."""
        self.notify(model_saved_message(folder, self.settings), timeout_ms=30_000)

    def import_csv(self) -> None:
        from PySide6.QtWidgets import QFileDialog, QInputDialog

        # deferred: the data service (pandas) loads only when a file is imported
        from app.engine.data.service import named_in_file

        path, _ = QFileDialog.getOpenFileName(self, "Import bars from CSV", "", "CSV files (*.csv);;All (*)")
        if not path:
            return
        named, named_tf = named_in_file(path)  # SPY_5m_....csv: SPY, 5m, offered first
        choices = [FROM_FILE, *dict.fromkeys([*([named] if named else []), *self.settings.watchlist])]
        symbol, ok = QInputDialog.getItem(self, "Symbol", "The bars in this file are of:", choices, 0, True)
        if not ok or not symbol.strip():
            return
        tfs = list(TIMEFRAMES)
        tf, ok = QInputDialog.getItem(self, "Timeframe", "Bars in this file are:", tfs,
                                      tfs.index(named_tf) if named_tf else 1, False)
        if ok:  # "" = each symbol as the file says (its symbol column, else its name)
            self.requestImport.emit(path, "" if symbol == FROM_FILE else symbol.strip().upper(), tf)

    def _build_widgets(self) -> None:
        self.chart = CandleChart(bar_minutes=timeframe_of(self.settings.timeframe).minutes)
        self.chart_book = ChartBook(self.chart, self.settings.symbol)
        self.chart.symbol_label.setToolTip("The charted symbol: choose another in the Watchlist")
        self.watchlist = WatchlistPanel(self.settings.watchlist)
        self.setCentralWidget(self.chart)
        self.status_bar = TradingStatusBar(self)
        self.setStatusBar(self.status_bar)
        self.trading_bar = bar = QToolBar("Trading")
        bar.setObjectName("tradingToolbar")
        bar.setMovable(False)
        # beside the File menu, in its row: a line of the window's height goes to the chart
        self.menuBar().setCornerWidget(bar, Qt.Corner.TopRightCorner)
        self.banner = QLabel("  SIMULATED MARKET — demo data, not real prices  ")
        self.banner.setObjectName("simBanner")
        self.banner.setStyleSheet("background:#ef6c00; color:white; font-weight:bold; padding:4px;")
        bar.addWidget(self.banner)
        bar.addSeparator()
        self.mode_switch = ModeSwitch(TradingMode(self.settings.mode), lambda t, x: self.confirm(t, x))
        bar.addWidget(self.mode_switch)
        bar.addSeparator()
        bar.addWidget(QLabel(" Speed "))
        self.speed = QComboBox()
        self.speed.setObjectName("speedSelector")
        self.speed.setToolTip("How fast the simulated market replays")
        for label, value in SPEEDS:
            self.speed.addItem(label, value)
        idx = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i][1] - self.settings.demo_speed))
        self.speed.setCurrentIndex(idx)
        bar.addWidget(self.speed)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pauseButton")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Stop the simulated market's clock (Ctrl+Space); signals waiting for you "
                                     "pause it too, unless the setting says not to")
        self.pause_button.setShortcut("Ctrl+Space")
        bar.addWidget(self.pause_button)
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().horizontalPolicy().Expanding,
                             spacer.sizePolicy().verticalPolicy().Preferred)
        bar.addWidget(spacer)
        self.flatten_button = FlattenAllButton()
        bar.addWidget(self.flatten_button)
        self.account = AccountSummary(self.settings)
        self.approvals = ApprovalPanel()
        self.positions = PositionsTable()
        self.orders = OrdersTable()
        self.trades = TradesTable()
        self.log_view = LogView()
        self.notices = NoticeList()
        self.backtest_tab = BacktestTab(self.settings.symbol, self.settings.timeframe, self.settings.starting_cash,
                                        models_dir=str(self.paths.models),
                                        retrain_every=self.settings.backtest_retrain_bars,
                                        cache_dir=str(self.paths.cache))
        self.backtest_tab.use_settings(self.settings.to_dict())

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        """The first-run layout (a saved one replaces it): the chart in the middle with most of the
        window (55% or more at 1280x720); on the right the watchlist, the account and the signals
        awaiting approval; under the chart, short, the positions and the record."""
        right, bottom = Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea
        self.watch_dock = watch_dock = self._dock("Watchlist", "watchlistDock", self.watchlist, right)
        self.account_dock = account_dock = self._dock("Account && risk", "accountDock", self.account, right)
        self.approval_dock = self._dock("Signals awaiting approval", "approvalDock", self.approvals, right)
        self.notifier = ApprovalNotifier(self.approval_dock, self)
        self.approvals.pendingCountChanged.connect(self.notifier.set_count)
        positions_dock = self._dock("Positions", "positionsDock", self.positions, bottom)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("recordTabs")
        self.tabs.addTab(self.orders, "Orders")
        self.tabs.addTab(self.trades, "Trades")
        self.tabs.addTab(self.log_view, "Log")
        self.tabs.addTab(self.notices, "Notices")
        self.backtest_tab.runFinished.connect(self._backtest_done)
        self.tabs.addTab(self.backtest_tab, "Backtest")
        self.model_tab = ModelTab(self.paths, self.settings.symbol, self.settings.timeframe,
                                  watchlist=self.settings.watchlist)
        self.model_tab.trained.connect(self.on_model_trained)
        self.tabs.addTab(self.model_tab, "Model")
        # one filter for the record's tables, beside their tabs: no row of its own in a short dock
        self.record_filter = QLineEdit()
        self.record_filter.setObjectName("recordFilter")
        self.record_filter.setPlaceholderText("Filter…")
        self.record_filter.setToolTip("Show only the rows of this table containing this text")
        self.record_filter.setClearButtonEnabled(True)
        for clear in self.record_filter.findChildren(QToolButton):
            clear.setToolTip("Clear the filter")
        self.record_filter.setMaximumWidth(220)
        self.tabs.setCornerWidget(self.record_filter, Qt.Corner.TopRightCorner)
        for table in (self.orders, self.trades):
            table.filter.hide()
        self.record_filter.textChanged.connect(self._filter_record)
        self.tabs.currentChanged.connect(self._on_record_tab)
        record_dock = self._dock("Record", "recordDock", self.tabs, bottom)
        for view in self.column_tables().values():
            configurable_columns(view)
        # the right column runs the window's full height; the bottom docks sit under the chart only
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        for widget in (self.tabs, self.positions):  # their contents scroll: they never force the height
            widget.setMinimumHeight(60)
        self.resizeDocks([watch_dock, account_dock, self.approval_dock], [150, 200, 250], Qt.Orientation.Vertical)
        self.resizeDocks([watch_dock], [RIGHT_COLUMN], Qt.Orientation.Horizontal)
        self.resizeDocks([positions_dock, record_dock], [9, 11], Qt.Orientation.Horizontal)
        self.resizeDocks([positions_dock], [BOTTOM_ROW], Qt.Orientation.Vertical)

    def notify(self, text: str, kind: str = "info", timeout_ms: int = 15_000, log: bool = True) -> None:
        """A result or an error for the user: in the Notices list with its time and whole text,
        in the Log tab (``log``: unless the engine logged it already), and for a while in the
        status bar. Settings are named by their labels, not their internal names."""
        text = in_words(text)
        self.notices.add(datetime.now(), kind, text)
        if log:
            logger.log({"error": "ERROR", "warning": "WARNING"}.get(kind, "INFO"), "Notice: {}", text)
        self.status_bar.showMessage(text, timeout_ms)

    def _backtest_done(self) -> None:
        tab = self.backtest_tab
        text = " ".join(tab.status.text().split("\n")[:2])
        self.notify(f"Backtest: {text}", "error" if tab.error else "info", timeout_ms=20_000)

    def column_tables(self) -> dict[str, Any]:
        """The tables whose columns the user shows, hides, sizes and orders (kept across restarts)."""
        return {"watchlist": self.watchlist.table, "positions": self.positions, "orders": self.orders.table,
                "trades": self.trades.table, "approvals": self.approvals.table, "notices": self.notices.table,
                "backtest_trades": self.backtest_tab.trades_view}

    def _filter_record(self, text: str) -> None:
        current = self.tabs.currentWidget()
        if current in (self.orders, self.trades):
            current.filter.setText(text)

    def _on_record_tab(self, _index: int) -> None:
        current = self.tabs.currentWidget()
        table = current if current in (self.orders, self.trades) else None
        self.record_filter.setEnabled(table is not None)
        self.record_filter.blockSignals(True)
        self.record_filter.setText(table.filter.text() if table is not None else "")
        self.record_filter.blockSignals(False)

    def _connect(self) -> None:
        w = self.worker
        w.ready.connect(self.on_ready)
        w.failed.connect(self.on_failed)
        w.barsClosed.connect(self.on_bars_closed)
        w.barForming.connect(self.on_bar_forming)
        w.predictionMade.connect(self.on_prediction)
        w.signalChanged.connect(self.on_signal)
        w.orderUpdated.connect(self.on_order)
        w.tradeClosed.connect(self.on_trade)
        w.portfolioUpdated.connect(self.on_portfolio)
        w.statusChanged.connect(self.on_status)
        w.alertRaised.connect(self.on_alert)
        w.flattenReported.connect(self.on_flatten_report)
        w.watchlistChanged.connect(self.on_watchlist)
        w.recordProblem.connect(self.on_record_problem)
        w.pausedChanged.connect(self.on_paused)
        self.watchlist.symbolSelected.connect(self.chart_book.select)
        self.watchlist.addRequested.connect(self.add_symbol)
        self.watchlist.removeRequested.connect(self.remove_symbol)
        self.requestApprove.connect(w.approve)
        self.requestReject.connect(w.reject)
        self.requestMode.connect(w.setMode)
        self.requestFlatten.connect(w.flattenAll)
        self.requestClose.connect(w.closePosition)
        self.requestAdopt.connect(w.adoptPosition)
        self.requestSpeed.connect(w.setSpeed)
        self.requestPaused.connect(w.setPaused)
        self.requestSettings.connect(w.applySettings)
        self.requestImport.connect(w.importCsv)
        self.requestConfirmLive.connect(w.confirmLive)
        self.requestManualOrder.connect(w.manualOrder)
        self.requestMoveStop.connect(w.moveStop)
        self.chart.stopDragged.connect(self.on_stop_dragged)
        w.manualOrderDone.connect(self.on_manual_order)
        self.approvals.approveRequested.connect(self.requestApprove)
        self.approvals.rejectRequested.connect(self.requestReject)
        self.mode_switch.modeChosen.connect(self.requestMode)
        self.mode_switch.modeChosen.connect(self._keep_mode)
        self.positions.closeRequested.connect(self.requestClose)
        self.positions.adoptRequested.connect(self.adopt_position)
        self.flatten_button.clicked.connect(self.flatten_all)
        self.speed.currentIndexChanged.connect(self._speed_chosen)
        self.pause_button.clicked.connect(lambda checked: self.requestPaused.emit(checked))

    def _speed_chosen(self, index: int) -> None:
        speed = float(self.speed.itemData(index))
        self.approvals.set_pace(speed, self.approvals.paused)
        self.requestSpeed.emit(speed)

    @Slot(bool, str)
    def on_paused(self, paused: bool, why: str) -> None:
        """The demo's clock stopped (the user, or a signal waiting for approval) or runs again."""
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.approvals.set_pace(float(self.speed.currentData() or 1.0), paused)
        if paused:
            self.status_bar.showMessage(f"Demo paused: {why.split(':')[0]}")
        else:
            self.status_bar.clearMessage()

    def start_engine(self) -> None:
        self.engine.start()

    # ------------------------------------------------------------- slots
    @Slot(object)
    def on_ready(self, info: dict[str, Any]) -> None:
        self.engine_ready = True
        if self._resume_auto:
            self._resume_auto = False
            QTimer.singleShot(0, self._ask_to_resume_auto)
        self.paper_first_day = info.get("paper_first_day")
        self.chart_book.set_history(info["history"])
        self.watchlist.on_bars(info["history"])
        for o in info.get("orders", ()):  # the day so far: a restart keeps the tables and the fills
            self.on_order(o)
        for t in info.get("trades", ()):
            self.on_trade(t)
        for notice in info["notices"]:
            self.on_alert(AlertEvent("warning", notice))
        # Everything loaded so far (modules, the engine, the history) lives as long as the app:
        # move it out of the collector's sight, so a full collection - which stops every
        # thread, the GUI's included - scans only what was made since (70 ms -> a few ms).
        gc.freeze()

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self.notify(f"Engine not started: {message}", "error", timeout_ms=0)
        QMessageBox.critical(self, "AI Trader cannot trade", message) if not _offscreen() else None

    @property
    def chart_symbol(self) -> str:
        """The symbol the chart shows (chosen in the Watchlist; the first at start)."""
        return self.chart_book.symbol

    @Slot(object)
    def on_bars_closed(self, bars: tuple[Any, ...]) -> None:
        self.chart_book.add_bars(bars)
        self.watchlist.on_bars(bars)

    @Slot(object)
    def on_bar_forming(self, bar: Any) -> None:
        self.chart_book.forming(bar)
        self.watchlist.on_price(bar)

    @Slot(object)
    def on_prediction(self, e: PredictionEvent) -> None:
        self.chart_book.prediction(e.symbol, e.time, e.p_up)
        self.watchlist.on_prediction(e)

    @Slot(object)
    def on_signal(self, e: SignalEvent) -> None:
        waiting = e.status == SignalStatus.PENDING and e.signal.signal_id not in self.approvals.pending
        if e.status == SignalStatus.EXPIRED and e.signal.signal_id in self.approvals.pending:
            sig = e.signal
            self.notify(f"Signal expired: {sig.side.value} {sig.symbol} at {sig.price:,.2f} (confidence "
                        f"{sig.confidence:.2f}) was not approved in time; nothing was traded", "warning")
        self.approvals.on_signal(e)
        if waiting:
            self.notifier.notify_pending(e.signal)
            if self.tabifiedDockWidgets(self.approval_dock):
                self.approval_dock.raise_()  # a small screen: the card takes the account's tab while it waits
            elif self.approval_dock.height() < APPROVAL_ROOM and not self.approval_dock.isFloating():
                # room for the card: taken from the docks beside it, given back by the user's hand only
                self.resizeDocks([self.approval_dock], [APPROVAL_ROOM], Qt.Orientation.Vertical)
                if (self.approval_dock.height() < APPROVAL_ROOM - 40 and not self.account_dock.isFloating()
                        and self.dockWidgetArea(self.account_dock) == self.dockWidgetArea(self.approval_dock)):
                    # still no room (a short window): the account steps behind a tab while the signal waits
                    self.tabifyDockWidget(self.account_dock, self.approval_dock)
                    self.approval_dock.raise_()
        self.watchlist.on_signal(e)
        bar_time = e.signal.time - timeframe_of(self.settings.timeframe).delta
        self.chart_book.marker(e.signal.symbol, bar_time, e.signal.price, e.status.chart_marker, e.signal.signal_id)

    @Slot(object)
    def on_order(self, o: Order) -> None:
        self.orders.on_order(o)
        if o.filled_at is not None and o.filled_avg_price:
            kind = "buy_fill" if o.side.value == "BUY" else "sell_fill"
            self.chart_book.marker(o.symbol, o.filled_at, o.filled_avg_price, kind)

    @Slot(object)
    def on_trade(self, t: Trade) -> None:
        self.trades.on_trade(t)
        self.account.add_trade(t, (self.status.now if self.status else t.exit_time).astimezone(NY).date())

    @Slot(object)
    def on_portfolio(self, e: PortfolioEvent) -> None:
        breaker = bool(self.status and self.status.circuit_breaker)
        self.account.update_from(e, breaker, self.status.now if self.status else None)
        self.positions.set_positions(e.positions, self.status.now if self.status else None, e.foreign)
        self.held = {p.symbol: p.qty for p in e.positions}
        self.entries = {p.symbol: p.avg_price for p in e.positions}
        self.chart_book.positions(e.positions)
        self.watchlist.on_positions(e.positions)
        self.approvals.set_account(self.settings, e.account.equity, e.account.buying_power)

    @Slot(object)
    def on_status(self, s: EngineStatus) -> None:
        self.status = s
        self.status_bar.update_status(s)
        self.approvals.tick(s.now, self.chart_book.prices)  # each signal against its own symbol's price

    @Slot(object)
    def on_alert(self, e: AlertEvent) -> None:
        self.alerts.append(e)
        # the engine logged its own alerts; an import's result and the settings' problems it did not
        self.notify(e.message, e.level if e.level in ("error", "warning") else "info",
                    log="import" in e.message.lower() or e.message.startswith("Settings:"))

    @Slot(str, bool)
    def on_record_problem(self, message: str, halted: bool) -> None:
        """The record cannot be written: the banner turns red and says so for as long as the app
        runs (not a status-bar line that fades); once trading has stopped, a dialog too."""
        head = "TRADING STOPPED: the record cannot be kept" if halted else \
            "RECORD NOT WRITABLE: no new positions; exits and stops keep working"
        self.banner.setText(f"  {head}  ")
        self.banner.setToolTip(message)
        self.banner.setStyleSheet("background:#b71c1c; color:white; font-weight:bold; padding:4px;")
        self.notify(message, "error", timeout_ms=0)
        if halted and not _offscreen():
            QMessageBox.critical(self, "AI Trader stopped trading", message)

    @Slot(object)
    def on_flatten_report(self, lines: list[str]) -> None:
        self.notify("Flatten all: " + " | ".join(lines), timeout_ms=30_000)

    def say_settings_problems(self, problems: list[str]) -> None:
        """What was wrong with the settings file at start: in the status bar and the alerts,
        so a value that fell back to its default is never a surprise."""
        for problem in problems:
            self.on_alert(AlertEvent("warning", f"Settings: {problem}"))

    # ------------------------------------------------------ the watchlist
    def add_symbol(self, symbol: str) -> None:
        self._change_watchlist((*self.settings.watchlist, symbol))

    def remove_symbol(self, symbol: str) -> None:
        """Off the watchlist; a held symbol's position is closed at market first, if the user agrees."""
        if symbol not in self.settings.watchlist:
            return
        if len(self.settings.watchlist) == 1:  # refused before asking, and before closing anything
            self.notify(f"{symbol} is the only symbol: add another before removing it", "warning")
            return
        qty = self.held.get(symbol, 0.0)
        if qty and not self.confirm(f"Remove {symbol}?", f"{symbol} holds {qty:g} shares. Close the position at "
                                    f"market and stop trading {symbol}?"):
            return
        if qty:
            self.requestClose.emit(symbol)
        self._change_watchlist(tuple(s for s in self.settings.watchlist if s != symbol))

    def _change_watchlist(self, symbols: tuple[str, ...]) -> None:
        try:
            settings = self.settings.updated(watchlist=symbols)
        except SettingsError as exc:
            self.notify(f"Watchlist unchanged: {exc}", "warning")
            if not _offscreen():
                QMessageBox.warning(self, "Watchlist", str(exc))
            return
        self.apply_settings(settings)

    @Slot(object)
    def on_watchlist(self, symbols: tuple[str, ...]) -> None:
        """What the engine trades now (the change applied, or refused and put back)."""
        if symbols != self.settings.watchlist:  # refused: the saved settings say what trades
            self.settings = self.settings.updated(watchlist=symbols)
            self.settings.save(self.paths.settings)
        self.watchlist.set_symbols(symbols)
        self.model_tab.set_watchlist(symbols)
        if self.chart_symbol not in symbols:
            self.chart_book.select(symbols[0])
        self.watchlist.select(self.chart_symbol)

    def flatten_all(self) -> None:
        if self.confirm("Flatten all?", "Cancel every open order and close every position at market?"):
            self.status_bar.showMessage("Flattening…")
            self.requestFlatten.emit()

    def adopt_position(self, symbol: str) -> None:
        if self.confirm(f"Adopt {symbol}?", f"The app did not buy these {symbol} shares. Adopted, they get a "
                        "broker stop below the market, trail, and are sold before the close and by FLATTEN ALL "
                        "like the app's own. Adopt them?"):
            self.requestAdopt.emit(symbol)

    def _keep_mode(self, mode: str) -> None:
        """The mode the user chose is the one the next start comes back to."""
        self.settings = self.settings.updated(mode=mode)
        try:
            self.settings.save(self.paths.settings)
        except OSError as exc:
            self.notify(f"Mode {mode} is in force, but could not be saved: {exc}", "warning")

    def _ask_to_resume_auto(self) -> None:
        if self.mode_switch.choose(TradingMode.AUTO, (
                "Resume Auto?", "AI Trader was in Auto when it last closed: signals with confidence >= 0.80 "
                "would execute without asking. It started in Hybrid. Resume Auto?")):
            self.notify("Auto resumed, as you confirmed")
        elif self.closing:  # closed (a logout, SIGTERM) while asking: no answer, the saved Auto stays
            return
        else:
            self._keep_mode(TradingMode.HYBRID.value)
            self.notify("Started in Hybrid: Auto was not resumed")

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------ persistence
    def _qsettings(self) -> QSettings:
        return QSettings(str(self.paths.home / "window.ini"), QSettings.Format.IniFormat)

    def _restore_layout(self) -> None:
        """The layout the user left, when it was saved by this layout's version (an older one put
        the watchlist on the left and the chart in a third of the window: the new default wins)."""
        qs = self._qsettings()
        geometry, state = qs.value("geometry"), qs.value("state")
        self.layout_restored = isinstance(geometry, QByteArray)
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray) and str(qs.value("layout_version", "")) == str(LAYOUT_VERSION):
            self.restoreState(state, LAYOUT_VERSION)
        tab = qs.value("tab", 0)
        self.tabs.setCurrentIndex(int(tab) if isinstance(tab, (int, str)) and str(tab).isdigit() else 0)
        for name, view in self.column_tables().items():
            state = qs.value(f"columns/{name}")
            if isinstance(state, QByteArray):
                view.horizontalHeader().restoreState(state)
        factor = str(qs.value("chart/factor", ""))
        index = self.chart.timeframe.findData(int(factor)) if factor.isdigit() else -1
        if index >= 0:
            self.chart.timeframe.setCurrentIndex(index)
        shown = qs.value("chart/overlays")
        if isinstance(shown, str):  # "sma,ema"; "" when none was on
            for name, box in self.chart.overlay_boxes.items():
                box.setChecked(name in shown.split(","))

    def show_fitted(self) -> None:
        """Shown at its default size where the screen has room, else maximized: on a 1280x720 or
        1366x768 screen the whole window, status bar included, stays on the screen. A size the
        user left (saved) is kept."""
        screen = self.screen()
        room = screen.availableGeometry() if screen is not None else None
        if not self.layout_restored and room is not None and (room.width() < DEFAULT_SIZE[0]
                                                              or room.height() < DEFAULT_SIZE[1]):
            if room.height() < SMALL_SCREEN_HEIGHT:  # the account and the approvals share one place, tabbed
                self.tabifyDockWidget(self.account_dock, self.approval_dock)
                self.account_dock.raise_()
            self.showMaximized()
            return
        if not self.layout_restored and room is not None:  # a big screen: most of it, centred
            width, height = int(room.width() * 0.92), int(room.height() * 0.92)
            self.resize(width, height)
            self.move(room.x() + (room.width() - width) // 2, room.y() + (room.height() - height) // 2)
            self.show()
            # the right column wider and the watchlist taller where there is room (every column, ten rows)
            self.resizeDocks([self.watch_dock], [min(420, int(width * 0.24))], Qt.Orientation.Horizontal)
            self.resizeDocks([self.watch_dock, self.account_dock], [int(height * 0.3), 250], Qt.Orientation.Vertical)
            return
        self.show()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closing = True
        qs = self._qsettings()
        qs.setValue("geometry", self.saveGeometry())
        qs.setValue("state", self.saveState(LAYOUT_VERSION))
        qs.setValue("layout_version", LAYOUT_VERSION)
        qs.setValue("tab", self.tabs.currentIndex())
        qs.setValue("chart/factor", str(self.chart.timeframe.currentData()))
        for name, view in self.column_tables().items():
            qs.setValue(f"columns/{name}", view.horizontalHeader().saveState())
        qs.setValue("chart/overlays", ",".join(n for n, box in self.chart.overlay_boxes.items() if box.isChecked()))
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        if self._log_sink is not None:
            logger.remove(self._log_sink)
            self._log_sink = None
        self.notifier.close()
        self.backtest_tab.shutdown()
        self.model_tab.cancel_training()
        self.engine.stop()


def _offscreen() -> bool:
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() in ("offscreen", "minimal")


def _check_connection(keys: ApiKeys, url: str | None) -> str:
    # deferred: alpaca-py loads only when the user tests a connection, not at start-up
    from app.engine.broker.alpaca import check_connection

    return check_connection(keys, url)
