"""Model strategies for backtests, computed for every bar in one vectorised pass.

The features are strictly causal (a test rewrites later bars and checks no
earlier row changes), so P(up) computed for all bars at once is exactly what
the live model would have said at each bar's close. The bot then trades on
it bar by bar through the usual signal, risk and order code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np

from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar


class PrecomputedModel(SignalModel):
    """Looks up the P(up) computed beforehand for the bar that just closed."""

    wants_bars = True

    def __init__(self, name: str, p_up: dict[datetime, float], version: str) -> None:
        self.name = name
        self.min_bars = 1
        self._p = p_up
        self._version = version

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if not bars:
            return None
        p = self._p.get(bars[-1].time)
        if p is None or not np.isfinite(p):
            return None
        return ModelOutput(float(p), ((self.name, float(p)),), (f"{self.name} {p:.2f}",), self._version)


def momentum_model(bars: list[Bar], timeframe: str) -> PrecomputedModel:
    from app.engine.data.features import FEATURE_COLUMNS, compute_features
    from app.engine.data.frame import bars_to_frame, is_intraday
    from app.engine.ml.models import MomentumModel

    feats = compute_features(bars_to_frame(bars), is_intraday(timeframe))
    cols = [c for c in FEATURE_COLUMNS if c in feats.columns]
    p = MomentumModel(cols).predict_proba(feats[cols].to_numpy(dtype="float64"))
    return PrecomputedModel("momentum", dict(zip((b.time for b in bars), p)), "momentum-v1")


def ensemble_model(bars: list[Bar], timeframe: str, symbol: str, models_dir: object,
                   weights: dict[str, float]) -> tuple[PrecomputedModel, list[str]]:
    """The trained ensemble over ``bars``; notes say when the backtest overlaps
    the model's own training window (in-sample, not a test of anything)."""
    from app.engine.data.frame import bars_to_frame
    from app.engine.ml.artifacts import ArtifactError, bundle_dir, load_bundle
    from app.engine.ml.live import predict_frame

    try:
        bundle = load_bundle(bundle_dir(models_dir, symbol, timeframe), symbol=symbol, timeframe=timeframe)
    except ArtifactError as exc:
        raise ValueError(str(exc)) from None
    frame = predict_frame(bundle, bars_to_frame(bars), weights)
    p = dict(zip((t.to_pydatetime() for t in frame.index), frame["p_up"].to_numpy()))
    notes = [f"model trained on {bundle.meta.get('train_start', '?')[:10]} .. "
             f"{bundle.meta.get('train_end', '?')[:10]}"]
    start, end = bundle.meta.get("train_start"), bundle.meta.get("train_end")
    if start and end and _utc(bars[0].time) <= _parse(end) and _utc(bars[-1].time) >= _parse(start):
        notes.append("IN-SAMPLE: this window overlaps the model's training data; the result says "
                     "nothing about future performance")
    return PrecomputedModel("ensemble", p, "ensemble"), notes


def _parse(text: str) -> datetime:
    from datetime import timezone

    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _utc(t: datetime) -> datetime:
    from datetime import timezone

    return t.astimezone(timezone.utc)
