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

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication, QDockWidget, QSystemTrayIcon, QWidget

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
