"""Open positions as a Qt model/view table with a close action per row.

Shares held at the broker that the app did not buy are listed too, greyed and marked
"not the app's": the app never stops, trails or sells them unless the user adopts them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QMenu, QTableView, QWidget

from app.engine.types import Position

COLUMNS = ("Symbol", "Qty", "Avg price", "Last", "P&L $", "P&L %", "Stop", "Trailing", "Held")
GREEN, RED, GREY = QColor("#26a69a"), QColor("#ef5350"), QColor("#9e9e9e")


class PositionsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.rows: tuple[Position, ...] = ()
        self.foreign_from = 0  # rows from here on are the user's own holdings, not the app's
        self.now: datetime | None = None

    def set_positions(self, rows: tuple[Position, ...], now: datetime | None,
                      foreign: tuple[Position, ...] = ()) -> None:
        self.beginResetModel()
        self.rows, self.foreign_from, self.now = rows + foreign, len(rows), now
        self.endResetModel()

    def is_foreign(self, row: int) -> bool:
        return row >= self.foreign_from

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orient: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orient == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        p = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if self.is_foreign(index.row()) and col in (6, 7, 8):
                return "not the app's" if col == 6 else "-"
            return self._text(p, col)
        if role == Qt.ItemDataRole.ForegroundRole and self.is_foreign(index.row()):
            return GREY
        if role == Qt.ItemDataRole.ToolTipRole and self.is_foreign(index.row()):
            return "Held at the broker, not bought by the app: never stopped or sold by it (right-click to adopt)"
        if role == Qt.ItemDataRole.ForegroundRole and col in (4, 5):
            return GREEN if p.unrealized_pnl >= 0 else RED
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, p: Position, col: int) -> str:
        held = ""
        if self.now is not None:
            mins = int((self.now - p.opened_at).total_seconds() // 60)
            held = f"{mins // 60}h {mins % 60:02d}m"
        values = (
            p.symbol, f"{p.qty:g}", f"{p.avg_price:.2f}", f"{p.last_price:.2f}",
            f"{p.unrealized_pnl:+,.2f}", f"{p.unrealized_pct:+.2%}",
            f"{p.stop_price:.2f}" if p.stop_price else "-",
            "active" if p.trailing_active else "waiting", held,
        )
        return values[col] + (" (stale)" if p.stale and col == 3 else "")


class PositionsTable(QTableView):
    closeRequested = Signal(str)
    adoptRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("positionsTable")
        self.setToolTip("Open positions; right-click a row to close it at market")
        self.model_ = PositionsModel()
        self.setModel(self.model_)
        self.verticalHeader().hide()
        self.horizontalHeader().setStretchLastSection(True)
        self.horizontalHeader().setMinimumSectionSize(30)
        self.horizontalHeader().setDefaultSectionSize(54)  # nine columns in a short dock: narrow, elided
        self.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def set_positions(self, rows: tuple[Position, ...], now: datetime | None = None,
                      foreign: tuple[Position, ...] = ()) -> None:
        self.model_.set_positions(rows, now, foreign)

    def _menu(self, pos: Any) -> None:
        row = self.indexAt(pos).row()
        if row < 0:
            return
        symbol = self.model_.rows[row].symbol
        menu = QMenu(self)
        if self.model_.is_foreign(row):
            action = QAction(f"Adopt {symbol}: let the app manage these shares", menu)
            action.triggered.connect(lambda: self.adoptRequested.emit(symbol))
        else:
            action = QAction(f"Close {symbol} at market", menu)
            action.triggered.connect(lambda: self.closeRequested.emit(symbol))
        menu.addAction(action)
        menu.popup(self.viewport().mapToGlobal(pos))
