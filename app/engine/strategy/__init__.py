"""Signal models: anything that turns recent bars into P(up)."""

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.strategy.rules import RulesModel

__all__ = ["ModelOutput", "RulesModel", "SignalModel"]
