"""One window per app home, visibly: a second launch brings the running window to the front.

The engine's OS lock (:mod:`app.engine.instance`) decides who runs; this only lets a second
double-click do what the user meant. The running window listens on a local socket named after
its home; a launch that finds the home locked asks it to come forward and exits 0. Where no
window answers (a headless run holds the lock), the launch says so and exits 3 as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QWidget

RAISE = b"raise\n"
WAIT_MS = 1500


def server_name(home: Path) -> str:
    """A local socket name of this home's own (two homes may run side by side)."""
    return "ai-trader-" + hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:16]


def ask_running_window(home: Path) -> bool:
    """True when a window running on ``home`` took the request to come to the front."""
    sock = QLocalSocket()
    sock.connectToServer(server_name(home))
    if not sock.waitForConnected(WAIT_MS):
        return False
    sock.write(RAISE)
    sent = sock.waitForBytesWritten(WAIT_MS)
    sock.disconnectFromServer()
    return sent


def serve_raise(window: QWidget, home: Path) -> QObject:
    """Listen for later launches on ``home`` and bring ``window`` forward for each; returns the
    server (kept alive by its parent, the window)."""
    server = QLocalServer(window)
    QLocalServer.removeServer(server_name(home))  # a crashed run's socket file is stale: the lock is ours
    server.listen(server_name(home))

    def on_connection() -> None:
        while server.hasPendingConnections():
            conn = server.nextPendingConnection()
            conn.disconnected.connect(conn.deleteLater)
            bring_forward(window)

    server.newConnection.connect(on_connection)
    return server


def bring_forward(window: QWidget) -> None:
    if window.isMinimized():
        window.showNormal()
    window.show()
    window.raise_()
    window.activateWindow()
