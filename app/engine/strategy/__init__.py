"""Signal models: anything that turns recent bars into P(up)."""

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.strategy.rules import RulesModel

__all__ = ["ModelOutput", "RulesModel", "SignalModel"]


def __getattr__(name: str) -> object:
    """Lazy exports of the trained ensemble: importing the strategy package stays
    cheap (no pandas features, scikit-learn or TensorFlow until asked for)."""
    if name in ("EnsembleSignalModel", "load_signal_model"):
        from app.engine.ml import live

        return getattr(live, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
