"""The Watchlist panel: every symbol traded, at a glance, and which one the chart shows.

One row per symbol: last price, change since the previous session's close (since
the day's first open until one is known), the model's latest P(up), the latest
signal, the position and its open P&L. Clicking a row, or moving with the arrow
keys, charts that symbol. Symbols are added and removed here; the window asks
before removing one that is held, and the engine applies the change at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.events import PredictionEvent, SignalEvent
from app.engine.types import NY, Bar, Position

GREEN, RED, AMBER = QColor("#26a69a"), QColor("#ef5350"), QColor("#ffa726")


@dataclass
class _Row:
    last: float | None = None
    day: date | None = None
    base: float | None = None  # the previous session's close, else the day's first open
    p_up: float | None = None
    signal: str = ""
    signal_status: str = ""  # what became of it: executed, pending, dropped...
    qty: float = 0.0
    pnl: float = 0.0


class WatchlistPanel(QWidget):
    symbolSelected = Signal(str)  # the chart shows this one
    addRequested = Signal(str)
    removeRequested = Signal(str)
    HEADERS = ("Symbol", "Last", "Chg %", "P(up)", "Signal", "Qty", "P&L")

    def __init__(self, symbols: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("watchlistPanel")
        self.setMinimumWidth(220)  # a narrow column scrolls sideways; the header's menu hides columns
        self.rows: dict[str, _Row] = {}
        self.selected = symbols[0] if symbols else ""
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(self.HEADERS))
        self.table.setObjectName("watchlistTable")
        self.table.setHorizontalHeaderLabels(self.HEADERS)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setMinimumSectionSize(30)
        header.setDefaultSectionSize(50)  # seven columns in a side dock; each can be resized and hidden
        header.setStretchLastSection(True)  # P&L takes the rest
        for column, width in enumerate((50, 58, 62, 44, 70, 40)):  # first sizes: "+12.34%", "BUY 0.73"
            header.resizeSection(column, width)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setToolTip("Click a symbol (or use the arrow keys) to chart it. Chg %: since the previous "
                              "close; Signal: the latest, green executed, amber waiting for you; Qty and P&L: "
                              "the position and its open P&L")
        self.table.currentCellChanged.connect(self._on_current)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.add_field = QLineEdit()
        self.add_field.setObjectName("watchlistAdd")
        self.add_field.setPlaceholderText("Add a ticker, e.g. NVDA")
        self.add_field.setToolTip("US ticker: letters, digits and '.', up to 10; at most 10 symbols")
        self.add_field.returnPressed.connect(self._add)
        add = QPushButton("Add")
        add.setObjectName("watchlistAddButton")
        add.setToolTip("Trade this ticker too, from the next bar (no restart)")
        add.clicked.connect(self._add)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("watchlistRemoveButton")
        self.remove_button.setToolTip("Stop trading the selected symbol (asks first when it is held)")
        self.remove_button.clicked.connect(lambda: self.removeRequested.emit(self.selected))
        row.addWidget(self.add_field, 1)
        row.addWidget(add)
        row.addWidget(self.remove_button)
        layout.addLayout(row)
        self.set_symbols(symbols)

    # ------------------------------------------------------------ inputs
    def set_symbols(self, symbols: Sequence[str]) -> None:
        """The watchlist now; what is known of a symbol that stays is kept."""
        self.rows = {s: self.rows.get(s) or _Row() for s in symbols}
        if self.selected not in self.rows and symbols:
            self.selected = symbols[0]
        self.remove_button.setEnabled(len(self.rows) > 1)  # the watchlist is never empty
        self._refresh()

    def on_bars(self, bars: Sequence[Bar]) -> None:
        for b in bars:
            row = self.rows.get(b.symbol)
            if row is None:
                continue
            day = b.time.astimezone(NY).date()
            if day != row.day:  # a new session: yesterday's last close is the base
                row.base = row.last if row.last is not None else b.open
                row.day = day
            row.last = b.close
        self._refresh()

    def on_price(self, bar: Bar) -> None:
        """A forming bar: the last price moves between closes."""
        row = self.rows.get(bar.symbol)
        if row is not None and row.day is not None:
            row.last = bar.close
            self._refresh_row(list(self.rows).index(bar.symbol), bar.symbol, row)

    def on_prediction(self, e: PredictionEvent) -> None:
        row = self.rows.get(e.symbol)
        if row is not None:
            row.p_up = e.p_up
            self._refresh_row(list(self.rows).index(e.symbol), e.symbol, row)

    def on_signal(self, e: SignalEvent) -> None:
        row = self.rows.get(e.signal.symbol)
        if row is not None:
            row.signal = f"{e.signal.side.value} {e.signal.confidence:.2f}"
            row.signal_status = e.status.value
            self._refresh_row(list(self.rows).index(e.signal.symbol), e.signal.symbol, row)

    def on_positions(self, positions: Sequence[Position]) -> None:
        held = {p.symbol: p for p in positions}
        for symbol, row in self.rows.items():
            p = held.get(symbol)
            row.qty, row.pnl = (p.qty, p.unrealized_pnl) if p is not None else (0.0, 0.0)
        self._refresh()

    def select(self, symbol: str) -> None:
        if symbol in self.rows:
            self.table.setCurrentCell(list(self.rows).index(symbol), 0)

    # ------------------------------------------------------------ output
    def _add(self) -> None:
        text = self.add_field.text().strip().upper()
        if text:
            self.addRequested.emit(text)
            self.add_field.clear()

    def _on_current(self, row: int, _col: int, _prev_row: int, _prev_col: int) -> None:
        symbols = list(self.rows)
        if 0 <= row < len(symbols) and symbols[row] != self.selected:
            self.selected = symbols[row]
            self.symbolSelected.emit(self.selected)

    def _refresh(self) -> None:
        self.table.blockSignals(True)  # rebuilding rows must not look like the user choosing one
        self.table.setRowCount(len(self.rows))
        for r, (symbol, row) in enumerate(self.rows.items()):
            self._refresh_row(r, symbol, row)
        if self.selected in self.rows:
            self.table.setCurrentCell(list(self.rows).index(self.selected), 0)
        self.table.blockSignals(False)

    def _refresh_row(self, r: int, symbol: str, row: _Row) -> None:
        change = (row.last / row.base - 1.0) if row.last and row.base else None
        tone = None if change is None else GREEN if change >= 0 else RED
        cells: tuple[tuple[str, QColor | None], ...] = (
            (symbol, None),
            (f"{row.last:,.2f}" if row.last else "-", None),
            (f"{change:+.2%}" if change is not None else "-", tone),
            (f"{row.p_up:.2f}" if row.p_up is not None else "-", None),
            (row.signal or "-", None),
            (f"{row.qty:g}" if row.qty else "-", None),
            (f"{row.pnl:+,.2f}" if row.qty else "-", None if not row.qty else GREEN if row.pnl >= 0 else RED),
        )
        if row.signal_status in ("executed", "pending"):
            cells = (*cells[:4], (row.signal, GREEN if row.signal_status == "executed" else AMBER), *cells[5:])
        for c, (text, color) in enumerate(cells):
            item = self.table.item(r, c)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(r, c, item)
            item.setText(text)
            if c:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setData(Qt.ItemDataRole.ForegroundRole, color)  # None: the theme's own
            if c == 4:
                item.setToolTip(f"Latest signal: {row.signal}, {row.signal_status}" if row.signal else "No signal yet")
