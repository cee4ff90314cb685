"""Logging, configured once: rotating files in the app home, secrets scrubbed.

``diagnose`` is off everywhere: loguru's variable dumps would print API keys.
Every record passes through :func:`scrub`, which masks anything that looks
like a registered secret, so even a key pasted into an error message by a
library never reaches a file.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from app.engine.files import not_a_file

_SECRETS: set[str] = set()
_configured = False


def register_secret(value: str) -> None:
    """Mask this value wherever it would appear in a log line."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, "••••")
    return text


def _patch(record: Any) -> None:
    record["message"] = scrub(record["message"])
    if record["exception"] is not None:
        exc = record["exception"]
        if exc.value is not None and any(s in str(exc.value) for s in _SECRETS):
            record["exception"] = exc._replace(value=type(exc.value)(scrub(str(exc.value))))


class _Quiet:
    """A log file that cannot be written (a full disk, a read-only folder) costs the log, never
    the app: said once on stderr in one line, not with a traceback for every record."""

    said = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.said:
            self.said = True
            exc = sys.exc_info()[1]
            sys.stderr.write(f"warning: the log file {getattr(self, 'baseFilename', '?')} cannot be written "
                             f"({exc}); free disk space or fix the folder's permissions\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):  # its last lines could not be flushed: said already
            super().close()  # type: ignore[misc]


class _DailyFile(_Quiet, logging.handlers.TimedRotatingFileHandler):
    pass


class _SizedFile(_Quiet, logging.handlers.RotatingFileHandler):
    pass


def configure(log_dir: Path, console_level: str = "WARNING",
              on_error: Callable[[str], None] | None = None) -> None:
    """Set up the sinks once per process (later calls only add ``on_error``). The files rotate
    at midnight (the errors at 10 MB) and are kept 30 days (trades 90)."""
    global _configured
    if not _configured:
        logger.remove()
        logger.configure(patcher=_patch)
        fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level:<8} | {thread.name} | {name}:{line} | {message}"
        logger.add(_stderr, level=console_level, format="{time:HH:mm:ss} {level} {message}",
                   diagnose=False, backtrace=False)
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            sys.stderr.write(f"warning: no log files: the folder {log_dir} cannot be made ({exc})\n")
        else:
            def daily(name: str, days: int) -> logging.Handler:
                return _DailyFile(log_dir / name, when="midnight", backupCount=days, encoding="utf-8", delay=True)

            def add(name: str, handler: Callable[[], logging.Handler], **options: Any) -> None:
                problem = not_a_file(log_dir / name)
                if problem:  # a FIFO would hang the first write; a folder fail every one
                    sys.stderr.write(f"warning: no {name}: {problem}; move it aside to have this log again\n")
                    return
                logger.add(handler(), **{**common, **options})

            common: dict[str, Any] = {"format": fmt, "backtrace": False, "diagnose": False, "enqueue": False}
            add("trading_bot.log", lambda: daily("trading_bot.log", 30), level="INFO")
            add("errors.log", lambda: _SizedFile(log_dir / "errors.log", maxBytes=10 * 2**20, backupCount=10,
                                                 encoding="utf-8", delay=True), level="ERROR", backtrace=True)
            add("trades.log", lambda: daily("trades.log", 90), level="INFO", filter=lambda r: "trade" in r["extra"])
            add("predictions.log", lambda: daily("predictions.log", 30), level="INFO",
                filter=lambda r: "prediction" in r["extra"])
        _install_hooks()
        _configured = True
    if on_error is not None:
        logger.add(lambda m: on_error(str(m.record["message"])), level="ERROR", format="{message}")


def _stderr(message: str) -> None:
    """The console sink writes to whatever ``sys.stderr`` is now, not the stream it was when the
    sink was added (a test harness swaps it, and the one kept would be closed)."""
    with contextlib.suppress(ValueError, OSError):  # no console (closed, detached): the log files have it
        sys.stderr.write(message)


def configure_simulation(console_level: str = "WARNING") -> None:
    """Logging for a backtest: problems to stderr only. Its simulated fills are
    not the desk's record, so they never reach ``trades.log`` or ``trading_bot.log``."""
    global _configured
    _configured = False  # the desk's sinks are gone: a later configure() adds them again
    logger.remove()
    logger.configure(patcher=_patch)
    logger.add(_stderr, level=console_level, format="{time:HH:mm:ss} {level} {message}",
               diagnose=False, backtrace=False)
    _install_hooks()


def _install_hooks() -> None:
    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        logger.opt(exception=(exc_type, exc, tb)).error("Unhandled error: {}", exc)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        logger.opt(exception=(args.exc_type, args.exc_value, args.exc_traceback)).error(
            "Unhandled error in thread {}: {}", args.thread.name if args.thread else "?", args.exc_value)

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
