"""The backtest tab's worker: CSV loading, the backtest and the HTML export,
all off the GUI thread.

A backtest of a year of 5-minute bars takes seconds and reading a large CSV
takes about as long, so both run in a ``QObject`` moved to a ``QThread`` of
its own (not the engine's: a backtest must not hold up live trading, and the
engine's thread must not hold up a backtest). Requests arrive as queued
signals. Cancel cannot be queued behind the running job, so it sets a
``threading.Event`` that the engine's progress callback reads; returning
False from that callback is how ``run_backtest`` is told to stop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.engine.backtest.runner import BacktestCancelled, BacktestConfig, BacktestResult, run_backtest
from app.engine.types import Bar


@dataclass(frozen=True)
class BacktestRequest:
    """What the user asked for, read from the tab's fields on the GUI thread."""

    csv_path: str
    symbol: str = "PLTR"
    timeframe: str = "5m"
    strategy: str = "sma_cross"
    cash: float = 100_000.0
    commission: float = 0.0
    commission_mode: str = "per_share"  # or "fraction" (of traded value)
    slippage_bps: float = 0.0
    plain: bool = False

    def config(self) -> BacktestConfig:
        per_share = self.commission if self.commission_mode == "per_share" else 0.0
        rate = self.commission if self.commission_mode == "fraction" else 0.0
        return BacktestConfig(self.symbol.strip().upper() or "PLTR", self.timeframe, self.strategy, self.cash,
                              per_share, rate, self.slippage_bps, self.plain)


@dataclass(frozen=True)
class BacktestOutcome:
    """A finished run, handed to the GUI thread; the worker keeps no reference to it.

    Everything the tab plots is computed here, on the worker thread, so the
    GUI thread only hands arrays to pyqtgraph."""

    result: BacktestResult
    bars: tuple[Bar, ...]
    drawdown: np.ndarray  # fraction below the running peak, <= 0
    buy_and_hold: np.ndarray  # equity had the cash bought the stock at the first open
    epochs: np.ndarray  # bar start times, epoch seconds (for the time axis)
    load_notes: tuple[str, ...]


def load_bars(path: str, symbol: str, timeframe: str, plain: bool) -> tuple[list[Bar], list[str]]:
    """Read and clean a CSV exactly as ``python main.py backtest`` does; notes say what was dropped."""
    from app.engine.data.cleaning import clean
    from app.engine.data.csv_import import read_csv
    from app.engine.data.frame import DataError, frame_to_bars

    if not path.strip():
        raise DataError("choose a CSV file of bars first")
    imported = read_csv(Path(path).expanduser())
    cleaned = clean(imported.frame, timeframe, keep_extended=plain)  # plain: no session rules
    bars = frame_to_bars(cleaned.frame, symbol.strip().upper() or "PLTR")
    notes = [f"{imported.accepted:,} rows read" + (f", {imported.rejected:,} rejected" if imported.rejected else "")]
    notes += imported.reason_lines()[:3] + cleaned.report.lines()[:4]
    if len(bars) < 2:
        raise DataError(f"{Path(path).name}: fewer than two usable {timeframe} bars after cleaning"
                        + (f" ({'; '.join(notes[1:])})" if len(notes) > 1 else ""))
    return bars, notes


class BacktestJob(QObject):
    """Runs in its own thread; talks to the tab only through signals."""

    progressed = Signal(int)  # percent done
    finished = Signal(object)  # BacktestOutcome
    failed = Signal(str)
    cancelled = Signal(str)
    exported = Signal(str)  # path written

    def __init__(self) -> None:
        super().__init__()
        self._cancel = threading.Event()
        self._percent = -1

    def arm(self) -> None:
        """Clear a previous cancel; called on the GUI thread before a run is queued."""
        self._cancel.clear()

    def cancel(self) -> None:
        """Thread-safe: only sets a flag that the running backtest polls."""
        self._cancel.set()

    @Slot(object)
    def run(self, req: BacktestRequest) -> None:
        self._percent = -1
        try:
            bars, notes = load_bars(req.csv_path, req.symbol, req.timeframe, req.plain)
            if self._cancel.is_set():
                raise BacktestCancelled("cancelled before the first bar")
            with logger.contextualize(backtest=True):  # the desk's log view leaves these out
                result = run_backtest(bars, req.config(), progress=self._progress)
        except BacktestCancelled as exc:
            self.cancelled.emit(str(exc))
            return
        except (ValueError, OSError) as exc:  # DataError is a ValueError: a bad file, a bad choice
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # never lost: logged with its traceback, shown in the tab
            logger.exception("Backtest failed")
            self.failed.emit(f"unexpected error: {exc}")
            return
        result.notes.extend(notes)
        eq = result.equity
        peak = np.maximum.accumulate(eq) if len(eq) else eq
        first_open = bars[0].open or 1.0
        self.progressed.emit(100)
        self.finished.emit(BacktestOutcome(
            result, tuple(bars), eq / np.where(peak > 0, peak, 1.0) - 1.0,
            np.array([b.close for b in bars]) * (req.cash / first_open),
            np.array([b.time.timestamp() for b in bars]), tuple(notes)))

    @Slot(object, str)
    def export(self, outcome: BacktestOutcome, path: str) -> None:
        from app.engine.backtest.report import render_html

        try:
            Path(path).write_text(render_html(outcome.result, outcome.bars), encoding="utf-8")
        except OSError as exc:
            self.failed.emit(f"cannot write {path}: {exc.strerror or exc}")
            return
        except Exception as exc:
            logger.exception("Report export failed")
            self.failed.emit(f"report export failed: {exc}")
            return
        self.exported.emit(path)

    def _progress(self, fraction: float) -> bool:
        percent = int(fraction * 100)
        if percent != self._percent:  # at most ~100 signals a run, whatever its length
            self._percent = percent
            self.progressed.emit(percent)
        return not self._cancel.is_set()


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
        self.job.cancel()  # a running backtest stops at its next progress check
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait(timeout_ms)
