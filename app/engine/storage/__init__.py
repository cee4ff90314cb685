"""SQLite storage behind repositories that speak the engine's dataclasses."""

from app.engine.storage.db import Storage, StorageError, check_regular
from app.engine.storage.repositories import (
    BarRepository,
    CommandJournal,
    OrderRepository,
    PositionRepository,
    PredictionRepository,
    SignalRepository,
    StateRepository,
    TradeRepository,
)

__all__ = [
    "BarRepository",
    "CommandJournal",
    "OrderRepository",
    "PositionRepository",
    "PredictionRepository",
    "SignalRepository",
    "StateRepository",
    "Storage",
    "StorageError",
    "TradeRepository",
    "check_regular",
]
