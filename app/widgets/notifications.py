"""Telling the user that a signal waits for approval, wherever they are looking.

A pending signal expires after a few minutes, so a trader who is in another
window must hear about it: a tray balloon (where the desktop has a tray), a
beep, and a counter in the approval dock's title that stays visible while
signals wait. Balloons and beeps are rate-limited, because a fast demo replay
can raise several signals a second and a desk that beeps nonstop gets muted.
On the offscreen/minimal platforms (tests, screenshots) there is no tray and
no sound, only the counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QColor, QGuiApplication, QIcon
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHeaderView,
    QSystemTrayIcon,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.types import NY, TradingSignal

MIN_INTERVAL_S = 5.0  # at most one balloon and beep this often


class ApprovalNotifier(QObject):
    """Counter in the dock title; balloon and beep for each new pending signal."""

    def __init__(self, dock: QDockWidget, window: QWidget, icon: QIcon | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(window)
        self.dock = dock
        self.window = window
        self.title = dock.windowTitle()
        self.count = 0
        self.notified = 0  # balloons/beeps actually given, after rate limiting
        self.last_message = ""
        self._clock = clock
        self._last_at = float("-inf")
        self._quiet = QGuiApplication.platformName() in ("offscreen", "minimal")
        self.sound = not self._quiet
        self.tray: QSystemTrayIcon | None = None
        if not self._quiet and QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(icon or window.windowIcon(), self)
            self.tray.setToolTip("AI Trader")
            self.tray.messageClicked.connect(self._bring_up)
            self.tray.activated.connect(self._bring_up)
            self.tray.show()

    @Slot(int)
    def set_count(self, count: int) -> None:
        """Show how many signals wait, in the dock title (and so in its tab when docks are tabbed)."""
        self.count = count
        self.dock.setWindowTitle(f"{self.title} ({count})" if count else self.title)

    def notify_pending(self, signal: TradingSignal) -> bool:
        """A new signal waits: balloon and beep, unless one was given moments ago.
        Returns whether the user was notified now."""
        expires = signal.expires_at.astimezone(NY)
        self.last_message = (f"{signal.side.value} {signal.symbol} at {signal.price:.2f}, confidence "
                             f"{signal.confidence:.2f}; expires {expires:%H:%M} ET")
        now = self._clock()
        if now - self._last_at < MIN_INTERVAL_S:
            return False
        self._last_at = now
        self.notified += 1
        if self.tray is not None:
            self.tray.showMessage("Signal awaiting approval", self.last_message,
                                  QSystemTrayIcon.MessageIcon.Information, 8000)
        if self.sound:
            QApplication.beep()
        return True

    def close(self) -> None:
        if self.tray is not None:
            self.tray.hide()

    def _bring_up(self, *_: object) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()
        self.dock.raise_()


MAX_NOTICES = 500


class NoticeList(QWidget):
    """Every result the desk reports (imports, flatten reports, backtests, trainings, expired
    signals, errors), newest first, with its time and its whole text: the status bar shows only
    the latest, for a while, and cuts a long one short."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeList")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.table = QTableWidget(0, 3)
        self.table.setObjectName("noticeTable")
        self.table.setHorizontalHeaderLabels(("Time", "Kind", "What happened"))
        self.table.verticalHeader().hide()
        self.table.setWordWrap(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setToolTip("Every result and error, with its full text (select and Ctrl+C to copy)")
        layout.addWidget(self.table)

    def add(self, when: datetime, kind: str, text: str) -> None:
        self.table.insertRow(0)
        for c, value in enumerate((f"{when:%H:%M:%S}", kind, text)):
            item = QTableWidgetItem(value)
            item.setToolTip(text)
            if kind in ("error", "warning"):
                item.setForeground(QColor("#ef5350" if kind == "error" else "#ffb74d"))
            self.table.setItem(0, c, item)
        self.table.resizeRowToContents(0)
        while self.table.rowCount() > MAX_NOTICES:
            self.table.removeRow(self.table.rowCount() - 1)

    def texts(self) -> list[str]:
        """The notices' texts, newest first."""
        items = (self.table.item(r, 2) for r in range(self.table.rowCount()))
        return [item.text() for item in items if item is not None]
