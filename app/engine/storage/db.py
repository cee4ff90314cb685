"""Opening the SQLite file: WAL, integrity checks, and refusing to guess.

A database that is corrupted, read-only or locked is never silently
recreated: :class:`StorageError` says what is wrong and how to recover, and
the app refuses to trade until the user acts.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import uuid
from pathlib import Path
from typing import Any

import peewee as pw
from loguru import logger
from playhouse.migrate import SqliteMigrator, migrate  # type: ignore[import-untyped]

from app.engine.files import not_a_file, unused_name
from app.engine.storage.models import ALL_MODELS, StateRow

SCHEMA_VERSION = 2  # PRAGMA user_version: raise with a migration when the tables change (2: limit orders)
MIN_FREE_BYTES = 200 * 2**20  # refused below this: a record that fills the disk mid-day loses trades
CORE_TABLES = ("order", "trade", "state")  # a record of this app's without one of these is damaged
IDENTITY_KEY = "record.identity"  # a token of this file's own: what is kept for it elsewhere names it


class StorageError(RuntimeError):
    """The database cannot be used; the message tells the user what to do."""


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity = ""  # set once open: see IDENTITY_KEY
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
        wal = self.path.with_name(self.path.name + "-wal")
        if not existed and not self.path.is_symlink() and wal.is_file() and wal.stat().st_size > 0:
            raise StorageError(
                f"{self.path} is missing but its write-ahead log {wal.name} is there: the record was deleted or "
                "moved, not never made. Restore it (its last writes are in that log); to start a new account "
                f"instead, move {wal.name} and {self.path.name}-shm aside. (Not silently a fresh $100,000 account.)"
            )
        if existed and self.path.is_file() and self.path.stat().st_size == 0:
            raise StorageError(
                f"{self.path} is empty: it holds no trading record and no account. If the app was "
                "never run here, delete it; otherwise restore your record from a backup. (An empty file "
                "is not silently made a fresh $100,000 account.)"
            )
        _check_writable(self.path)
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
            version = self.db.execute_sql("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} was written by a newer AI Trader (schema {version}; this one knows "
                    f"{SCHEMA_VERSION}). Run the newer version, or move the file aside to start a new record."
                )
            if version < 0:
                raise StorageError(f"{self.path} has schema version {version}: not a record this app wrote. "
                                   "Move it aside to start a new record.")
            if version >= 1:  # written by this app: its record's tables cannot be missing, only damaged
                have = {r[0] for r in self.db.execute_sql("SELECT name FROM sqlite_master WHERE type='table'")}
                gone = [t for t in CORE_TABLES if t not in have]
                if gone:
                    raise StorageError(
                        f"{self.path} has lost its {', '.join(gone)} table{'s' if len(gone) > 1 else ''}: the "
                        "account and its history would silently start afresh. Restore the file from a backup, "
                        "or move it aside to start a new record.")
            missing = _missing_columns(self.db) if existed else []
            if missing:
                self._migrate(missing)
            with self.db.atomic():
                self.db.create_tables(ALL_MODELS, safe=True)
                row = StateRow.get_or_none(StateRow.key == IDENTITY_KEY)
                if row is None:
                    self.identity = uuid.uuid4().hex
                    StateRow.insert(key=IDENTITY_KEY, value=json.dumps(self.identity)).execute()
                else:
                    self.identity = str(json.loads(row.value))
            if version != SCHEMA_VERSION:
                self.db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except StorageError:
            self.db.close()
            raise
        except (pw.OperationalError, pw.DatabaseError, sqlite3.DatabaseError) as exc:
            self.db.close()
            hint = _hint_for(str(exc))
            raise StorageError(f"cannot open {self.path}: {exc}. {hint}") from None
        self._file = _file_id(self.path)
        logger.info("Database open at {}", self.path)

    def still_there(self) -> str:
        """"" while the file the app opened is still at its path; else what became of it (deleted,
        or replaced by another file): writes would go to a file no one will ever open again."""
        now = _file_id(self.path)
        if now == self._file:
            return ""
        return (f"{self.path} was deleted while the app ran" if now is None
                else f"{self.path} was replaced by another file while the app ran")

    def _migrate(self, missing: list[tuple[type[pw.Model], Any]]) -> None:
        """An older record lacks columns this version stores: a copy is taken first
        (``<name>.before-migration``), then each column is added with its default. A column
        without a default cannot be made up: refused, the file untouched."""
        hard = [f"{m._meta.table_name}.{f.column_name}" for m, f in missing if not (f.null or f.default is not None)]
        if hard:
            raise StorageError(f"{self.path} lacks columns this version needs ({', '.join(hard)}) and they "
                               "cannot be filled in: it is damaged or from another program. Move it aside.")
        name = self.path.name + ".before-migration"
        backup = unused_name(lambda n: self.path.with_name(name if n == 1 else f"{name}-{n}"))
        try:
            target = sqlite3.connect(str(backup))
            try:
                self.db.connection().backup(target)
            finally:
                target.close()
        except sqlite3.Error as exc:  # the copy, not the record, is the trouble: said so, nothing changed
            raise StorageError(f"{self.path} needs migrating to this version, and its copy {backup} could not be "
                               f"written first ({exc}); the record is untouched. Free disk space or fix the "
                               "folder's permissions, then restart.") from None
        migrator = SqliteMigrator(self.db)
        with self.db.atomic():
            migrate(*(migrator.add_column(m._meta.table_name, f.column_name, f) for m, f in missing))
        logger.warning("Database {} migrated: added {}; the old file is kept as {}", self.path,
                       ", ".join(f"{m._meta.table_name}.{f.column_name}" for m, f in missing), backup)

    def quick_check(self) -> str:
        """SQLite's quick integrity check of the file as it is on the disk (a connection of its
        own: the app's caches pages it has read): "" when sound, else what is wrong."""
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
            finally:
                con.close()
        except sqlite3.Error as exc:
            return str(exc)
        return "" if rows == ["ok"] else "; ".join(str(r) for r in rows[:3])

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def atomic(self) -> pw._atomic:
        return self.db.atomic()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _missing_columns(db: pw.SqliteDatabase) -> list[tuple[type[pw.Model], Any]]:
    """Columns a table of this version has that the file's table lacks (tables it lacks
    altogether are created as new)."""
    out: list[tuple[type[pw.Model], Any]] = []
    for model in ALL_MODELS:
        table = model._meta.table_name
        have = {row[1] for row in db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()}
        if have:
            out += [(model, f) for f in model._meta.sorted_fields if f.column_name not in have]
    return out


_ANY_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def _check_writable(path: Path) -> None:
    """Refuse a record that cannot be written before anything trades on it: the file, its WAL
    and shared-memory files and its folder writable (by their permissions: an administrator
    account would write through them, but the user made them read-only for a reason), and
    room on the disk."""
    folder = path.parent
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        check_regular(f, "the trading record")
        if f.exists() and (not os.access(f, os.W_OK) or not f.stat().st_mode & _ANY_WRITE):
            raise StorageError(f"{f} is read-only: the app could not record its trades: fix its permissions "
                               f"(chmod u+w '{f}') and restart.")
    if not os.access(folder, os.W_OK) or not folder.stat().st_mode & _ANY_WRITE:
        raise StorageError(f"the folder {folder} is read-only: the app could not record its trades. "
                           "Fix its permissions and restart.")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise StorageError(f"only {free / 2**20:.0f} MB free on the disk holding {path}; the app needs "
                           f"{MIN_FREE_BYTES / 2**20:.0f} MB to keep its record through a trading day. "
                           "Free some space and restart.")


def check_regular(path: Path, what: str) -> None:
    """A path the app reads or writes as a file must be one: a folder gives a traceback, and a
    FIFO or a device would hang the app (or swallow what it writes) without a word."""
    problem = not_a_file(path)
    if problem:
        raise StorageError(f"{problem}: it cannot hold {what}. Move it aside (or restore it) and restart.")


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
