"""The one home folder for everything the app writes.

``AI_TRADER_HOME`` (or ``--data-dir``) relocates all of it, so that a test or a
second account can run fully isolated. Nothing is created at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.engine.files import not_a_file

ENV_HOME = "AI_TRADER_HOME"


def model_dir(models_root: Path, symbol: str, timeframe: str) -> Path:
    """Where the trained model for one symbol and timeframe lives: ``models/PLTR_5m``."""
    return Path(models_root) / f"{symbol.upper()}_{timeframe}"


@dataclass(frozen=True)
class AppPaths:
    home: Path

    @classmethod
    def resolve(cls, data_dir: str | os.PathLike[str] | None = None) -> AppPaths:
        if data_dir:
            return cls(Path(data_dir).expanduser().resolve())
        env = os.environ.get(ENV_HOME)
        if env:
            return cls(Path(env).expanduser().resolve())
        from platformdirs import user_data_path

        return cls(user_data_path("ai-trader", appauthor=False))

    @property
    def database(self) -> Path:
        return self.home / "trader.db"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def models(self) -> Path:
        return self.home / "models"

    def model_dir(self, symbol: str, timeframe: str) -> Path:
        return model_dir(self.models, symbol, timeframe)

    @property
    def cache(self) -> Path:
        """What the app can make again, kept to start faster (the exchange's session table)."""
        return self.home / "cache"

    @property
    def settings(self) -> Path:
        return self.home / "settings.json"

    @property
    def lock_file(self) -> Path:
        return self.home / "engine.lock"

    @property
    def trade_backup(self) -> Path:
        """JSON-lines file for records the database could not take."""
        return self.home / "pending_records.jsonl"

    @property
    def paper_backup(self) -> Path:
        """The simulated broker's paper account, when the database could not take it."""
        return self.home / "pending_paper_account.json"

    @property
    def env_file(self) -> Path:
        return self.home / ".env"

    def ensure(self) -> AppPaths:
        for folder in (self.home, self.logs, self.models):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AppFolderError(f"the app's folder {folder} cannot be made ({exc.strerror or exc}): "
                                     "fix its permissions, free disk space, or move aside the file in its "
                                     f"place; or point AI_TRADER_HOME (or --data-dir) elsewhere") from None
        for f in (self.settings, self.env_file, self.lock_file):  # (the record's files: see storage)
            problem = not_a_file(f)
            if problem:  # read or written at every start: a FIFO would hang it, a folder break it
                raise AppFolderError(f"{problem}, where the app keeps a file of its own: move it aside (or "
                                     "restore the file) and start again")
        return self


class AppFolderError(RuntimeError):
    """The app's home (or a folder in it) cannot be made; the message says what to do."""
