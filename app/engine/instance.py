"""One engine per app home: an OS-level lock held for the life of the process.

The operating system releases the lock when the process dies, even by
SIGKILL, so a crash never leaves a stale lock behind. The GUI and the
headless runner take the same lock, so they can never trade side by side.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from loguru import logger


class AlreadyRunning(RuntimeError):
    pass


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            _lock(fh)
        except OSError:
            fh.seek(0)
            pid = fh.read().strip()
            fh.close()
            who = f" (pid {pid})" if pid else ""
            raise AlreadyRunning(f"AI Trader is already running{who} on {self.path.parent}: "
                                 "not starting a second engine.") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as exc:  # a full disk: the lock is held, its pid only a courtesy
            logger.warning("The lock file {} could not take this process's id ({})", self.path, exc)
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file releases the lock
            self._fh = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock(fh: IO[str]) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
