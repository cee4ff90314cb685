"""Account summary, approval panel, mode switch and the Flatten All button."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import date, datetime

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QButtonGroup,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.engine.events import PortfolioEvent, SignalEvent
from app.engine.settings import Settings
from app.engine.types import NY, SignalStatus, Trade, TradingMode, TradingSignal


class AccountSummary(QWidget):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("accountSummary")
        self.setToolTip("Account and risk limits")
        self.settings = settings
        form = QFormLayout(self)
        self.labels: dict[str, QLabel] = {}
        for key, title in (("equity", "Equity"), ("cash", "Cash"), ("buying_power", "Buying power"),
                           ("day_pnl", "Day P&&L"), ("exposure", "Exposure"), ("round_trips", "Round trips"),
                           ("breaker", "Circuit breaker")):
            label = QLabel("-")
            label.setObjectName(f"account_{key}")
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.labels[key] = label
            form.addRow(title, label)
        self.loss_gauge = QProgressBar()
        self.loss_gauge.setObjectName("dailyLossGauge")
        self.loss_gauge.setToolTip("Today's loss as a share of the daily loss limit")
        self.loss_gauge.setRange(0, 100)
        self.loss_gauge.setFormat("%p% of daily loss limit")
        form.addRow("Loss vs limit", self.loss_gauge)
        self.day_curve = DayPnlCurve()
        form.addRow(self.day_curve)
        self.by_symbol = QLabel("")
        self.by_symbol.setObjectName("pnlBySymbol")
        self.by_symbol.setWordWrap(True)
        self.by_symbol.setToolTip("Each symbol's P&L today: realised (closed trades) and open (held, at the "
                                  "last price)")
        form.addRow(self.by_symbol)
        self.realised: dict[str, float] = {}  # today's closed trades' P&L, by symbol

    def add_trade(self, t: Trade, today: date) -> None:
        """A closed trade: counted in its symbol's realised P&L when it closed today (New York)."""
        if t.exit_time.astimezone(NY).date() == today:
            self.realised[t.symbol] = self.realised.get(t.symbol, 0.0) + t.pnl

    def update_from(self, e: PortfolioEvent, breaker: bool, now: datetime | None = None) -> None:
        a, s = e.account, self.settings
        if now is not None:
            if self.day_curve.day is not None and now.astimezone(NY).date() != self.day_curve.day:
                self.realised.clear()  # a new day: yesterday's trades are not today's P&L
            self.day_curve.add(now, a.day_pnl)
        opened = {p.symbol: p.qty * (p.last_price - p.avg_price) for p in e.positions}
        parts = []
        for n in sorted(set(self.realised) | set(opened)):
            done, held = self.realised.get(n, 0.0), opened.get(n, 0.0)
            color = "#26a69a" if done + held >= 0 else "#ef5350"
            parts.append(f"<b>{n}</b> <span style='color:{color}'>{done + held:+,.2f}</span> "
                         f"(realised {done:+,.2f}, open {held:+,.2f})")
        self.by_symbol.setText("<br>".join(parts))
        self.labels["equity"].setText(f"${a.equity:,.2f}")
        self.labels["cash"].setText(f"${a.cash:,.2f}")
        self.labels["buying_power"].setText(f"${a.buying_power:,.2f}")
        color = "#26a69a" if a.day_pnl >= 0 else "#ef5350"
        pct = a.day_pnl_pct if abs(a.day_pnl_pct) >= 5e-5 else 0.0  # no "-0.00%"
        self.labels["day_pnl"].setText(f"<span style='color:{color}'>{a.day_pnl:+,.2f} ({pct:+.2%})</span>")
        self.labels["exposure"].setText(f"{e.exposure_pct:.1%} of {s.max_exposure_pct:.0%} limit")
        self.labels["round_trips"].setText(f"{e.round_trips_today} of {s.max_round_trips}")
        self.labels["breaker"].setText("<b style='color:#ef5350'>TRIPPED: no new entries</b>" if breaker else "armed")
        used = max(0.0, -a.day_pnl_pct) / s.daily_loss_limit if s.daily_loss_limit else 0.0
        self.loss_gauge.setValue(int(min(used, 1.0) * 100))


class DayPnlCurve(pg.PlotWidget):
    """Today's P&L (equity less the day's starting equity) as it went: a step line from the
    first update of the New York day; it starts again with the next day."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, axisItems={"bottom": pg.DateAxisItem()})
        self.setObjectName("dayPnlCurve")
        self.setToolTip("Today's P&L: equity less the day's starting equity, as it went")
        self.setMinimumHeight(60)
        self.setMaximumHeight(110)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.showGrid(x=False, y=True, alpha=0.2)
        self.getAxis("left").setWidth(52)
        self.addItem(pg.InfiniteLine(0.0, angle=0, pen=pg.mkPen("#666", style=Qt.PenStyle.DashLine)))
        self.curve = self.plot([], [], pen=pg.mkPen("#42a5f5", width=1.5), stepMode="left")
        self.day: date | None = None
        self.times: list[float] = []
        self.values: list[float] = []

    def add(self, now: datetime, pnl: float) -> None:
        day = now.astimezone(NY).date()
        if day != self.day:
            self.day, self.times, self.values = day, [], []
            offset = now.astimezone(NY).utcoffset()
            if offset is not None:  # the axis in New York time, as every clock of the app (not the machine's)
                self.getAxis("bottom").utcOffset = -offset.total_seconds()
        t = now.timestamp()
        if self.times and t <= self.times[-1]:
            self.values[-1] = pnl  # the same moment again: the latest word
        else:
            self.times.append(t)
            self.values.append(pnl)
        if len(self.times) > MAX_DAY_POINTS:  # a long day at demo speed: every other point of the first half
            half = len(self.times) // 2
            self.times = self.times[:half:2] + self.times[half:]
            self.values = self.values[:half:2] + self.values[half:]
        if len(self.times) > 1:
            self.curve.setData(self.times, self.values, stepMode="left")
        self.curve.setPen(pg.mkPen("#26a69a" if pnl >= 0 else "#ef5350", width=1.5))


MAX_DAY_POINTS = 5_000


class ApprovalPanel(QWidget):
    """Pending signals waiting for the user, with Approve and Reject."""

    approveRequested = Signal(str)
    rejectRequested = Signal(str)
    pendingCountChanged = Signal(int)  # for the dock title counter and notifications
    HEADERS = ("Symbol", "Time left", "Side", "Conf.", "Votes", "Price at signal", "Now", "Reasons")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("approvalPanel")
        self.pending: dict[str, TradingSignal] = {}
        self.prices: dict[str, float] = {}  # each symbol's latest price: a signal is checked against its own
        self.now: datetime | None = None
        self.speed = 1.0  # simulated seconds per wall-clock second (1 when live)
        self.paused = False  # the demo's clock is stopped: nothing ages
        self._count = 0
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(self.HEADERS))
        self.table.setObjectName("pendingSignals")
        self.table.setHorizontalHeaderLabels(self.HEADERS)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMaximumHeight(96)  # a list to pick from: the card below gets the room
        layout.addWidget(self.table)
        # the selected signal in full, wrapped: nothing of it behind a scrollbar however narrow the dock
        self.detail = QLabel("")
        self.detail.setObjectName("approvalDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # in a frameless scroller: however long the reasons, the card never makes the window taller
        # than the screen (a dock squeezed below the card's height scrolls, it does not push)
        self.card_area = QScrollArea()
        self.card_area.setObjectName("approvalCard")
        self.card_area.setWidgetResizable(True)
        self.card_area.setFrameShape(QScrollArea.Shape.NoFrame)
        self.card_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.card_area.setMinimumHeight(40)
        self.card_area.setWidget(self.detail)
        layout.addWidget(self.card_area, 1)
        self.table.currentCellChanged.connect(lambda *_: self._show_detail())
        self.settings: Settings | None = None  # the risk rules, for the stop and the size to expect
        self.equity = 0.0
        self.buying_power = 0.0
        row = QHBoxLayout()
        self.approve_button = QPushButton("Approve")
        self.approve_button.setObjectName("approveButton")
        self.approve_button.setToolTip("Execute the selected signal after re-checking price and risk (Ctrl+Enter)")
        self.reject_button = QPushButton("Reject")
        self.reject_button.setObjectName("rejectButton")
        self.reject_button.setToolTip("Discard the selected signal (Ctrl+Backspace)")
        row.addWidget(self.approve_button)
        row.addWidget(self.reject_button)
        layout.addLayout(row)
        self.approve_button.clicked.connect(lambda: self._act(self.approveRequested))
        self.reject_button.clicked.connect(lambda: self._act(self.rejectRequested))
        # Ctrl+Enter: the main Enter key (Return) and the keypad's Enter are different keys to Qt.
        self.shortcuts = [
            self._shortcut(keys, sig)
            for keys, sig in (("Ctrl+Return", self.approveRequested), ("Ctrl+Enter", self.approveRequested),
                              ("Ctrl+Backspace", self.rejectRequested))
        ]
        self._refresh()

    def on_signal(self, e: SignalEvent) -> None:
        if e.status == SignalStatus.PENDING:
            self.pending[e.signal.signal_id] = e.signal
        else:
            self.pending.pop(e.signal.signal_id, None)
        self._refresh()

    def tick(self, now: datetime, prices: Mapping[str, float]) -> None:
        self.now, self.prices = now, dict(prices)
        for sid, sig in list(self.pending.items()):
            if now >= sig.expires_at:
                del self.pending[sid]
        self._refresh()

    def set_account(self, settings: Settings, equity: float, buying_power: float) -> None:
        """The rules and the account a signal would be sized against (for the card's estimate)."""
        self.settings, self.equity, self.buying_power = settings, equity, buying_power
        self._show_detail()

    def estimate(self, sig: TradingSignal) -> tuple[float | None, float | None]:
        """(shares, stop) a buy would take at the signal's price by the risk rules' sizing (risk
        budget over the stop distance, capped by the position size and buying power); the
        engine sizes it again, at the then price, on approval. None where not known."""
        s = self.settings
        if s is None or sig.side.value != "BUY" or sig.price <= 0:
            return None, None
        stop = sig.price * (1 - s.stop_loss_pct)
        if self.equity <= 0:
            return None, stop
        qty = min(self.equity * s.risk_per_trade / (sig.price * s.stop_loss_pct),
                  self.equity * s.max_position_pct / sig.price, max(self.buying_power, 0.0) / sig.price)
        return float(int(qty)), stop

    def card(self, sig: TradingSignal) -> str:
        """Everything the user decides on, in words (rich text)."""
        price = self.prices.get(sig.symbol)
        move = f" ({price / sig.price - 1:+.2%})" if price and sig.price else ""
        now = f"{price:,.2f}{move}" if price else "not known yet"
        qty, stop = self.estimate(sig)
        size = f"about {qty:,.0f} shares" if qty is not None else ("all held" if sig.side.value == "SELL" else "-")
        votes = ", ".join(f"{n} {p:.2f}" for n, p in sig.votes) or "-"
        reasons = "; ".join(sig.reasons) or "-"
        rows = [("Signal", f"<b>{html.escape(f'{sig.side.value} {sig.symbol}')}</b>, {html.escape(size)}"),
                ("Price", html.escape(f"{sig.price:,.2f} then, now {now}")),
                ("Stop", f"{stop:,.2f}" if stop is not None else "-"),
                ("Confidence", f"{sig.confidence:.2f}"),
                ("Expected", f"{sig.expected_bps:+.1f} bps after costs" if sig.expected_bps is not None
                 else "not stated by this model"),
                ("Votes", html.escape(votes)),
                ("Reasons", html.escape(reasons)),
                ("Time left", html.escape(self.time_left(sig)))]
        return "<table>" + "".join(f"<tr><td style='color:#9aa0a6;padding-right:6px'>{k}</td><td>{v}</td></tr>"
                                   for k, v in rows) + "</table>"

    def _show_detail(self) -> None:
        sid = self.selected_id()
        sig = self.pending.get(sid) if sid else None
        self.detail.setText(self.card(sig) if sig is not None else "")
        self.detail.setVisible(sig is not None)
        self.card_area.setVisible(sig is not None)

    def set_pace(self, speed: float, paused: bool) -> None:
        """How fast the engine's clock runs against the wall's: the time left is shown in
        the seconds the user has, not in simulated minutes."""
        self.speed, self.paused = max(float(speed), 1.0), paused
        self._refresh()

    def time_left(self, sig: TradingSignal) -> str:
        if self.paused:
            return "paused"
        sim = max((sig.expires_at - self.now).total_seconds(), 0.0) if self.now else 0.0
        wall = sim / self.speed
        return f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min"

    def selected_id(self) -> str | None:
        ids = list(self.pending)
        row = self.table.currentRow()
        if 0 <= row < len(ids):
            return ids[row]
        return ids[0] if ids else None

    def _shortcut(self, keys: str, signal: SignalInstance) -> QShortcut:
        shortcut = QShortcut(QKeySequence(keys), self)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(lambda: self._by_key(keys, signal))
        return shortcut

    def _by_key(self, keys: str, signal: SignalInstance) -> None:
        """A shortcut pressed while the user types in a text field (a filter, a ticker) is that
        field's key, never an approval or a rejection: Ctrl+Backspace deletes the word behind."""
        focus = QApplication.focusWidget()
        if isinstance(focus, (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)):
            if keys == "Ctrl+Backspace" and isinstance(focus, QLineEdit):
                focus.cursorWordBackward(True)
                focus.backspace()
            return
        self._act(signal)

    def _act(self, signal: SignalInstance) -> None:
        sid = self.selected_id()
        if sid:
            self.pending.pop(sid, None)
            signal.emit(sid)
            self._refresh()

    def _refresh(self) -> None:
        self.table.setRowCount(len(self.pending))
        for r, sig in enumerate(self.pending.values()):
            votes = ", ".join(f"{n} {p:.2f}" for n, p in sig.votes)
            price = self.prices.get(sig.symbol)
            now_price = f"{price:.2f}" if price else "-"
            cells = (sig.symbol, self.time_left(sig), sig.side.value, f"{sig.confidence:.2f}", votes,
                     f"{sig.price:.2f}", now_price, "; ".join(sig.reasons))
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self._show_detail()
        has = bool(self.pending)
        self.approve_button.setEnabled(has)
        self.reject_button.setEnabled(has)
        if len(self.pending) != self._count:
            self._count = len(self.pending)
            self.pendingCountChanged.emit(self._count)


class ModeSwitch(QWidget):
    """Manual / Hybrid / Auto; switching to Auto asks for confirmation."""

    modeChosen = Signal(str)

    def __init__(self, mode: TradingMode, confirm: object, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modeSwitch")
        self.setToolTip("Manual: approve every signal. Hybrid: auto >= 0.80, approve 0.70-0.80. "
                        "Auto: execute >= 0.80 only.")
        self.confirm = confirm
        self.mode = mode
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Mode:"))
        self.group = QButtonGroup(self)
        self.buttons: dict[TradingMode, QPushButton] = {}
        for i, m in enumerate(TradingMode):
            b = QPushButton(m.value.capitalize())
            b.setObjectName(f"mode_{m.value}")
            b.setCheckable(True)
            b.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            b.setToolTip(f"Switch to {m.value} mode (Ctrl+{i + 1})")
            self.group.addButton(b)
            self.buttons[m] = b
            layout.addWidget(b)
            b.clicked.connect(lambda _=False, m=m: self.choose(m))
        self.buttons[mode].setChecked(True)
        self.setStyleSheet("QPushButton:checked { background:#3d6fb4; color:white; font-weight:bold; }")

    def choose(self, mode: TradingMode, question: tuple[str, str] | None = None) -> bool:
        if mode == self.mode:
            return True
        ask = question or ("Switch to Auto?",
                           "In Auto mode signals with confidence >= 0.80 execute without asking. Continue?")
        ok = mode != TradingMode.AUTO or self.confirm(*ask)  # type: ignore[operator]
        if not ok:
            self.buttons[self.mode].setChecked(True)
            return False
        self.mode = mode
        self.buttons[mode].setChecked(True)
        self.modeChosen.emit(mode.value)
        return True


class FlattenAllButton(QPushButton):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("FLATTEN ALL", parent)
        self.setObjectName("flattenAllButton")
        self.setToolTip("Cancel every open order and close every position at market (Ctrl+Shift+F)")
        self.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.setMinimumHeight(38)
        self.setStyleSheet("QPushButton#flattenAllButton { background:#c62828; color:white; font-weight:bold;"
                           " border-radius:4px; padding:6px 18px; }"
                           "QPushButton#flattenAllButton:pressed { background:#8e0000; }")
