"""Every prediction is recorded with each model's vote, the ensemble and the version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import SimClock
from app.engine.records import SqlRecorder
from app.engine.settings import Settings
from app.engine.storage import Storage
from app.engine.storage.models import PredictionRow
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar


class ThreeVotes(SignalModel):
    name = "ensemble"

    def predict(self, closes: np.ndarray, bars=None) -> ModelOutput:  # type: ignore[no-untyped-def]
        return ModelOutput(0.57, (("lstm", 0.61), ("random_forest", 0.55), ("momentum", 0.48)),
                           ("test",), "ens-2026-11-25")


def test_each_models_probability_is_stored(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "trader.db")
    t = datetime(2025, 6, 2, 14, 0, tzinfo=UTC)
    clock = SimClock(t)
    bot = TradingBot(Settings(), clock, SimulatedBroker(clock), ThreeVotes(),
                     SqlRecorder(storage, tmp_path / "backup.jsonl"), sleep=lambda s: None)
    clock.set(t + timedelta(minutes=5))
    bot.on_bar_close(Bar("PLTR", t, 20.0, 20.2, 19.9, 20.1, 1000.0))
    row = PredictionRow.get()
    assert (row.p_lstm, row.p_rf, row.p_momentum) == (0.61, 0.55, 0.48)
    assert row.p_up == 0.57 and row.confidence == 0.57 and row.model_version == "ens-2026-11-25"
    assert row.bar_time == t
    storage.close()
