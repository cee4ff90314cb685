"""Orders, trades and the log view (tabs under the chart)."""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.types import NY, Order, Trade

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configurable_columns(view: QTableView) -> None:
    """Every column of ``view`` can be hidden and shown again from its header's right-click menu
    (at least one stays), resized by dragging, and moved; the window saves the header's state."""
    header = view.horizontalHeader()
    header.setSectionsMovable(True)
    header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    header.setToolTip("Right-click to show or hide columns; drag an edge to resize, a title to move")

    def menu(pos: QPoint) -> None:
        model = view.model()
        if model is None:
            return
        chooser = QMenu(view)
        shown = [c for c in range(header.count()) if not header.isSectionHidden(c)]
        for c in range(header.count()):
            title = str(model.headerData(c, Qt.Orientation.Horizontal) or f"column {c + 1}")
            action = chooser.addAction(title)
            action.setCheckable(True)
            action.setChecked(not header.isSectionHidden(c))
            action.setEnabled(header.isSectionHidden(c) or len(shown) > 1)  # never the last one
            action.toggled.connect(lambda on, c=c: header.setSectionHidden(c, not on))
        chooser.popup(header.mapToGlobal(pos))
        view.setProperty("columnMenu", chooser)  # kept alive while shown; found by tests

    header.customContextMenuRequested.connect(menu)


class RecordTable(QWidget):
    """A filterable table that keeps its newest rows on top."""

    def __init__(self, name: str, headers: tuple[str, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter…")
        self.filter.setToolTip("Show only rows containing this text")
        self.filter.textChanged.connect(self._apply_filter)
        layout.addWidget(self.filter)
        self.table = QTableWidget(0, len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setMinimumSectionSize(30)
        self.table.horizontalHeader().setDefaultSectionSize(66)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        layout.addWidget(self.table)
        self._keys: list[str] = []

    def upsert(self, key: str, cells: tuple[str, ...]) -> None:
        if key in self._keys:
            row = self._keys.index(key)
        else:
            self.table.insertRow(0)
            self._keys.insert(0, key)
            row = 0
            if len(self._keys) > 2000:
                self.table.removeRow(len(self._keys) - 1)
                self._keys.pop()
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(text)  # a narrow column elides: the whole text on hover
            self.table.setItem(row, c, item)
        self._apply_filter(self.filter.text())

    def _apply_filter(self, text: str) -> None:
        text = text.lower()
        for r in range(self.table.rowCount()):
            items = (self.table.item(r, c) for c in range(self.table.columnCount()))
            row_text = " ".join(item.text() if item is not None else "" for item in items).lower()
            self.table.setRowHidden(r, bool(text) and text not in row_text)


class OrdersTable(RecordTable):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("ordersTable", ("Time", "Symbol", "Side", "Qty", "Type", "Stop", "Status",
                                         "Fill", "Reason", "Client order id"), parent)

    def on_order(self, o: Order) -> None:
        fill = f"{o.filled_avg_price:.2f}" if o.filled_avg_price else ""
        self.upsert(o.client_order_id, (
            o.created_at.astimezone(NY).strftime("%m-%d %H:%M:%S"), o.symbol, o.side.value, f"{o.qty:g}",
            f"limit {o.limit_price:,.2f}" if o.limit_price else o.order_type.value,
            f"{o.stop_price:.2f}" if o.stop_price else "", o.status.label, fill,
            o.reason, o.client_order_id))


class TradesTable(RecordTable):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("tradesTable", ("Exit time", "Symbol", "Qty", "Entry", "Exit", "P&L", "Reason"), parent)

    def on_trade(self, t: Trade) -> None:
        self.upsert(f"{t.symbol}{t.exit_time.isoformat()}", (
            t.exit_time.astimezone(NY).strftime("%m-%d %H:%M"), t.symbol, f"{t.qty:g}", f"{t.entry_price:.2f}",
            f"{t.exit_price:.2f}", f"{t.pnl:+,.2f}", t.exit_reason))


class LogView(QWidget):
    """Log lines from loguru (delivered through a Qt signal), with a level filter."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logView")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        top.addWidget(QLabel("Level"))
        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.level.setCurrentText("INFO")
        self.level.setToolTip("Show this level and above")
        self.level.currentTextChanged.connect(self._render)
        top.addWidget(self.level)
        top.addStretch(1)
        layout.addLayout(top)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(5000)
        layout.addWidget(self.text)
        self.lines: deque[tuple[str, str]] = deque(maxlen=5000)

    def append(self, level: str, line: str) -> None:
        self.lines.append((level, line))
        if self._shown(level):
            self.text.appendPlainText(line)

    def _shown(self, level: str) -> bool:
        want = LEVELS.index(self.level.currentText())
        return LEVELS.index(level) >= want if level in LEVELS else True

    def _render(self, *_: object) -> None:
        self.text.setPlainText("\n".join(line for lvl, line in self.lines if self._shown(lvl)))
        self.text.moveCursor(self.text.textCursor().MoveOperation.End)
