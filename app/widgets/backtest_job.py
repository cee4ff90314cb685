"""The Backtest tab's worker: a ``QObject`` in a ``QThread`` of its own that runs
each backtest in a child process and relays what happens as Qt signals.

Not the engine's thread: a backtest must not hold up live trading, nor live
trading a backtest. Not in-process either: see :mod:`app.backtest_process`
for the measurements (a backtest holding the interpreter lock stalled the GUI
thread for seconds). Requests arrive as queued signals; the worker thread
then waits on the child's pipe, which releases the interpreter lock.

Cancel cannot be queued behind the running job, so :meth:`BacktestJob.cancel`
sets an event shared with the child, which its progress callback reads:
returning False from that callback is how ``run_backtest`` is told to stop.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.backtest_process import BacktestOutcome, BacktestRequest, child_main

POLL_S = 0.05
KILL_AFTER_S = 5.0  # a cancelled child still reading a huge CSV is terminated after this


def _context() -> Any:
    """forkserver where there is one: a clean, preloaded server forks each child in
    milliseconds, and nothing is forked from a process running Qt threads."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["app.backtest_process", "app.engine.backtest.runner",
                                    "app.engine.backtest.report", "app.engine.data.cleaning"])
        return ctx
    return mp.get_context("spawn")


class BacktestJob(QObject):
    """Lives in the backtest thread; talks to the tab only through signals."""

    progressed = Signal(int)  # percent done
    staged = Signal(str)  # what a walk-forward training is doing ("fold 3/9: training lstm")
    finished = Signal(object)  # BacktestOutcome
    failed = Signal(str)
    cancelled = Signal(str)
    exported = Signal(str)  # path written

    def __init__(self) -> None:
        super().__init__()
        self._ctx = _context()
        self._cancel = self._ctx.Event()  # shared with the child
        self._stop = threading.Event()  # the window is closing
        self.process: Any = None

    def arm(self) -> None:
        """Clear a previous cancel; called on the GUI thread before a run is queued."""
        self._cancel.clear()

    def cancel(self) -> None:
        """Thread-safe: sets the flag the child's progress callback polls."""
        self._cancel.set()

    def stop(self) -> None:
        """The window closes: cancel, and stop waiting for the child soon after."""
        self._stop.set()
        self._cancel.set()

    @Slot(object)
    def run(self, req: BacktestRequest) -> None:
        receiver, sender = self._ctx.Pipe(duplex=False)
        try:
            # a search runs its grid on a pool of its own, which a daemonic process may not have;
            # it is still stopped with the window (cancel, then terminate in _reap)
            self.process = self._ctx.Process(target=child_main, args=(req, sender, self._cancel),
                                             name="backtest", daemon=not req.optimize)
            self.process.start()
        except Exception as exc:  # noqa: BLE001 - e.g. a script without the ``if __name__ == "__main__"`` guard
            logger.exception("Backtest process did not start")
            self.failed.emit(f"cannot start the backtest process: {exc}".strip())
            return
        finally:
            sender.close()  # the child holds its own end; EOF here means it is gone
        try:
            self._relay(receiver)
        finally:
            receiver.close()
            self._reap()

    def _relay(self, conn: Any) -> None:
        cancelled_at: float | None = None
        while True:
            if self._cancel.is_set() and cancelled_at is None:
                cancelled_at = time.monotonic()
            patience = 1.0 if self._stop.is_set() else KILL_AFTER_S  # closing: do not keep the window
            if cancelled_at is not None and time.monotonic() - cancelled_at > patience:
                self.process.terminate()
                self.cancelled.emit("cancelled (the backtest process was stopped)")
                return
            try:
                if not conn.poll(POLL_S):
                    continue
                kind, value = conn.recv()
            except (EOFError, OSError):
                code = self.process.exitcode if self.process else None
                self.failed.emit(f"the backtest process ended unexpectedly (exit code {code})")
                return
            if kind == "progress":
                self.progressed.emit(int(value))
                continue
            if kind == "stage":
                self.staged.emit(str(value))
                continue
            {"done": self.finished, "cancelled": self.cancelled}.get(kind, self.failed).emit(value)
            return

    def _reap(self) -> None:
        if self.process is None:
            return
        self.process.join(1.0)
        if self.process.is_alive():
            logger.warning("Backtest process did not exit; terminating it")
            self.process.terminate()
            self.process.join(1.0)

    @Slot(object, str)
    def export(self, outcome: BacktestOutcome, path: str) -> None:
        """Write the report the child rendered (off the GUI thread: it can be megabytes)."""
        try:
            Path(path).write_text(outcome.html, encoding="utf-8")
        except OSError as exc:
            self.failed.emit(f"cannot write {path}: {exc.strerror or exc}")
            return
        self.exported.emit(path)


class BacktestThread:
    """Owns the job's thread: started on first use, stopped with ``quit(); wait()``."""

    def __init__(self, job: BacktestJob) -> None:
        self.job = job
        self.thread = QThread()
        self.thread.setObjectName("backtest")
        job.moveToThread(self.thread)

    def ensure_started(self) -> None:
        if not self.thread.isRunning():
            self.thread.start()

    def stop(self, timeout_ms: int = 10_000) -> None:
        self.job.stop()  # a running child stops at its next progress check, or is terminated
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait(timeout_ms)
