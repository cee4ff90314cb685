"""Opening the SQLite file: WAL, integrity checks, and refusing to guess.

A database that is corrupted, read-only or locked is never silently
recreated: :class:`StorageError` says what is wrong and how to recover, and
the app refuses to trade until the user acts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee as pw
from loguru import logger

from app.engine.storage.models import ALL_MODELS


class StorageError(RuntimeError):
    """The database cannot be used; the message tells the user what to do."""


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = pw.SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 5000,
            },
            check_same_thread=False,
        )
        self._open()

    def _open(self) -> None:
        existed = self.path.exists()
        if existed and not _looks_like_sqlite(self.path):
            raise StorageError(
                f"{self.path} is not a SQLite database (corrupted?). Move it aside "
                "(it is your trading record) and restart to create a fresh one."
            )
        try:
            self.db.connect(reuse_if_open=True)
            self.db.bind(ALL_MODELS, bind_refs=False, bind_backrefs=False)
            if existed:
                ok = self.db.execute_sql("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise StorageError(
                        f"{self.path} failed its integrity check ({ok}). Move it aside and "
                        "restart, or repair it with `sqlite3 trader.db .recover`."
                    )
            with self.db.atomic():
                self.db.create_tables(ALL_MODELS, safe=True)
        except StorageError:
            self.db.close()
            raise
        except (pw.OperationalError, pw.DatabaseError, sqlite3.DatabaseError) as exc:
            self.db.close()
            hint = _hint_for(str(exc))
            raise StorageError(f"cannot open {self.path}: {exc}. {hint}") from None
        logger.info("Database open at {}", self.path)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def atomic(self) -> pw._atomic:
        return self.db.atomic()


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return True  # let sqlite report the permission problem itself
    return head == b"" or head.startswith(b"SQLite format 3")


def _hint_for(message: str) -> str:
    m = message.lower()
    if "readonly" in m or "read-only" in m:
        return "The file or its folder is read-only: fix its permissions and restart."
    if "locked" in m or "busy" in m:
        return "Another program holds the database: close it (or the other AI Trader) and restart."
    if "malformed" in m or "not a database" in m:
        return "The file is damaged: move it aside and restart, or run `sqlite3 trader.db .recover`."
    return "Check the file and its folder, then restart."
