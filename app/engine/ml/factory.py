"""Builds untrained models by name: the one place that knows every model class.

Kept apart from :mod:`app.engine.ml.models` (the Model port and the light
models) so that the port depends on nothing and the LSTM and the ensemble,
which subclass it, can be imported by the factory without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.engine.ml.dataset import feature_list, session_reach
from app.engine.ml.ensemble import Ensemble
from app.engine.ml.lstm import LSTMModel
from app.engine.ml.models import COMPONENTS, HistGradientBoostingModel, Model, MomentumModel, RandomForestModel
from app.engine.settings import Settings
from app.engine.strategy.base import SignalModel
from app.engine.strategy.rules import RulesModel


class ModelFactory:
    """Builds an untrained model by name, sized from the settings' timeframe.

    ``rules`` returns the existing rule-based :class:`SignalModel`, the
    fallback whenever no trained model can be used. ``overrides`` reach the
    model's constructor (tests pass tiny sizes; ``small=True`` for the LSTM).
    """

    NAMES: tuple[str, ...] = ("lstm", "random_forest", "hist_gb", "momentum", "ensemble", "rules")

    @staticmethod
    def build(name: str, settings: Settings, *, columns: Sequence[str] | None = None,
              horizon: int | None = None, **overrides: Any) -> Model | SignalModel:
        cols = list(columns) if columns is not None else feature_list(settings.timeframe)
        h = horizon or session_reach(settings.timeframe)
        if name == "rules":
            return RulesModel()
        if name in COMPONENTS:
            return _component(name, cols, h, overrides)
        if name == "ensemble":
            parts = {c: _component(c, cols, h, overrides.get(c, {})) for c in COMPONENTS}
            return Ensemble(cols, parts, settings.ensemble_weights())
        raise ValueError(f"unknown model {name!r} (use {', '.join(ModelFactory.NAMES)})")


def _component(name: str, columns: list[str], horizon: int, overrides: dict[str, Any]) -> Model:
    if name == "momentum":
        return MomentumModel(columns, **overrides)
    if name == "random_forest":
        return RandomForestModel(columns, **overrides)
    if name == "hist_gb":
        return HistGradientBoostingModel(columns, **overrides)
    return LSTMModel(columns, horizon=horizon, **overrides)
