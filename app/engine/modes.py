"""Execution modes (Strategy pattern): what to do with a signal of a given confidence."""

from __future__ import annotations

import abc
import enum

from app.engine.settings import Settings
from app.engine.types import TradingMode


class Decision(str, enum.Enum):
    EXECUTE = "execute"
    ASK = "ask"  # queue for the user's approval
    DROP = "drop"  # confident enough to log, not to trade in this mode
    IGNORE = "ignore"  # below the approval threshold: never traded


class ExecutionPolicy(abc.ABC):
    mode: TradingMode

    def __init__(self, settings: Settings) -> None:
        self.auto = settings.auto_threshold
        self.ask = settings.approval_threshold

    def decide(self, confidence: float) -> Decision:
        if confidence < self.ask:
            return Decision.IGNORE
        return self._decide(confidence)

    @abc.abstractmethod
    def _decide(self, confidence: float) -> Decision: ...


class AutoPolicy(ExecutionPolicy):
    """Executes what clears the auto threshold; drops the rest."""

    mode = TradingMode.AUTO

    def _decide(self, confidence: float) -> Decision:
        return Decision.EXECUTE if confidence >= self.auto else Decision.DROP


class HybridPolicy(ExecutionPolicy):
    """Executes what clears the auto threshold; asks about the band below it."""

    mode = TradingMode.HYBRID

    def _decide(self, confidence: float) -> Decision:
        return Decision.EXECUTE if confidence >= self.auto else Decision.ASK


class ManualPolicy(ExecutionPolicy):
    """Asks about every signal that clears the approval threshold."""

    mode = TradingMode.MANUAL

    def _decide(self, confidence: float) -> Decision:
        return Decision.ASK


_POLICIES: dict[TradingMode, type[ExecutionPolicy]] = {
    TradingMode.AUTO: AutoPolicy,
    TradingMode.HYBRID: HybridPolicy,
    TradingMode.MANUAL: ManualPolicy,
}


def policy_for(mode: TradingMode, settings: Settings) -> ExecutionPolicy:
    return _POLICIES[mode](settings)
