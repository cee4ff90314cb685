"""Weighted ensemble of the component models, and the Platt calibrator behind it.

``p_up = w_lstm p_lstm + w_rf p_rf + w_mom p_mom`` with the weights from the
settings. A component that cannot answer (not trained, unloadable, stale,
features not ready) is left out and the remaining weights are scaled back to
sum to one, so a missing LSTM leaves a forest-and-momentum ensemble rather
than a probability pulled toward zero.

The raw average is not a probability anyone measured. The calibrator maps it
to one that was: fitted on out-of-fold walk-forward predictions, so a
calibrated 0.80 has meant "up about 80 % of the time" historically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.ml.models import Model, ProgressFn, TrainingCancelled

# share of an ensemble fit's progress bar each component gets (the LSTM is the slow one)
_FIT_SHARE = {"lstm": 0.80, "random_forest": 0.12, "hist_gb": 0.07, "momentum": 0.01}


def combine(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Row-wise weighted mean over the components that have a finite value there."""
    n = len(next(iter(parts.values()))) if parts else 0
    num = np.zeros(n)
    den = np.zeros(n)
    for name, p in parts.items():
        w = weights.get(name, 0.0)
        ok = np.isfinite(p)
        num[ok] += w * p[ok]
        den[ok] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def combine_one(parts: Mapping[str, float], weights: Mapping[str, float]
                ) -> tuple[float | None, dict[str, float]]:
    """One bar: (p, the renormalised weights actually used), or (None, {}) when none can answer."""
    used = {k: weights.get(k, 0.0) for k, p in parts.items() if math.isfinite(p) and weights.get(k, 0.0) > 0}
    total = sum(used.values())
    if total <= 0:
        return None, {}
    used = {k: w / total for k, w in used.items()}
    return sum(w * parts[k] for k, w in used.items()), used


@dataclass
class PlattCalibrator:
    """p -> sigmoid(a logit(p) + b), fitted by logistic regression on out-of-fold data.

    Platt rather than isotonic: two parameters cannot memorise a few hundred
    noisy samples, and the map stays monotonic and smooth. The slope is kept
    >= 0 (a calibrator must not turn the model into its contrarian). When the ensemble
    has no edge, ``a`` shrinks toward 0 and every calibrated probability moves
    toward the base rate: the confidence gate then (rightly) lets little through.
    """

    a: float = 1.0
    b: float = 0.0
    n: int = 0  # out-of-fold samples it was fitted on

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        from sklearn.linear_model import LogisticRegression

        p, y = np.asarray(p, dtype="float64"), np.asarray(y, dtype="float64")
        ok = np.isfinite(p) & np.isfinite(y)
        if ok.sum() < 20 or len(np.unique(y[ok])) < 2:
            raise ValueError(f"too few out-of-fold samples to calibrate ({int(ok.sum())})")
        lr = LogisticRegression(C=100.0)
        lr.fit(_logit(p[ok])[:, None], y[ok].astype(int))
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if a < 0:  # "up means down" on noisy history is noise: state the base rate instead
            rate = float(np.clip(y[ok].mean(), 1e-3, 1 - 1e-3))
            a, b = 0.0, math.log(rate / (1 - rate))
        return cls(a, b, int(ok.sum()))

    def apply(self, p: np.ndarray) -> np.ndarray:
        z = self.a * _logit(np.asarray(p, dtype="float64")) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def apply_one(self, p: float) -> float:
        q = min(max(p, 1e-6), 1 - 1e-6)
        return 1.0 / (1.0 + math.exp(-(self.a * math.log(q / (1 - q)) + self.b)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlattCalibrator:
        if d.get("method") != "platt":
            raise ValueError(f"unknown calibration method {d.get('method')!r}")
        return cls(float(d["a"]), float(d["b"]), int(d.get("n", 0)))


def fit_weights(parts: Mapping[str, np.ndarray], y: np.ndarray, prior: Mapping[str, float],
                min_rows: int = 100) -> dict[str, float] | None:
    """The convex weights of the components that minimise the log loss of their weighted mean
    on out-of-sample rows (stacking on the simplex); None with fewer than ``min_rows`` rows
    every component answers. The prior weights start the search and break ties."""
    from scipy.optimize import minimize  # deferred: scipy loads with the models, not the app

    names = [k for k in parts if prior.get(k, 0.0) > 0 or len(parts) == 1]
    y = np.asarray(y, dtype="float64")
    ok = np.isfinite(y)
    for k in names:
        ok &= np.isfinite(parts[k])
    if ok.sum() < min_rows or not names or len(np.unique(y[ok])) < 2:
        return None
    P = np.clip(np.column_stack([parts[k][ok] for k in names]), 1e-6, 1 - 1e-6)
    t = y[ok]

    def loss(z: np.ndarray) -> float:
        w = np.exp(z - z.max())
        p = P @ (w / w.sum())
        return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))

    start = np.log(np.array([max(prior.get(k, 0.0), 1e-3) for k in names]))
    z = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 400}).x
    w = np.exp(z - z.max())
    w = w / w.sum()
    return {k: round(float(v), 4) for k, v in zip(names, w, strict=True)}


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)))


class Ensemble(Model):
    """The component models under one Model interface.

    ``fit`` trains each component; one that cannot be trained (too little
    data, TensorFlow missing) is dropped and named in ``skipped`` instead of
    failing the whole ensemble. ``predict_proba`` is the calibrated P(up)
    when a calibrator is set, else the raw weighted mean.
    """

    name = "ensemble"

    def __init__(self, columns: Sequence[str], components: Mapping[str, Model],
                 weights: Mapping[str, float], calibrator: PlattCalibrator | None = None) -> None:
        super().__init__(columns)
        self.components: dict[str, Model] = dict(components)
        self.weights = {k: float(weights.get(k, 0.0)) for k in self.components}
        if any(w < 0 or not math.isfinite(w) for w in self.weights.values()):
            raise ValueError("ensemble weights must be finite and non-negative")
        self.calibrator = calibrator
        self.skipped: dict[str, str] = {}
        self.lookback = max((m.lookback for m in self.components.values()), default=1)

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: ProgressFn | None = None,
            segments: Sequence[int] | None = None) -> Model:
        """Fit every component; ``segments`` (each symbol's first row in a watchlist's stacked
        rows) reach the components that hold data out by time (the LSTM's early stopping)."""
        self.skipped = {}
        done = 0.0
        total = sum(_FIT_SHARE.get(k, 0.1) for k in self.components)
        for name in list(self.components):
            share = _FIT_SHARE.get(name, 0.1) / total
            sub = _sub_progress(progress, done, share)
            if sub is not None and not sub(0.0, f"training {name}"):
                raise TrainingCancelled("training cancelled")
            try:
                model = self.components[name]
                if model.uses_segments and segments is not None:
                    model.fit(X, y, progress=sub, segments=segments)  # type: ignore[call-arg]
                else:
                    model.fit(X, y, progress=sub)
            except TrainingCancelled:
                raise
            except (ValueError, ImportError) as exc:
                self.skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                del self.components[name]
            done += share
        if not self.components:
            raise ValueError("no component could be trained: " + "; ".join(
                f"{k}: {v}" for k, v in self.skipped.items()))
        self.lookback = max(m.lookback for m in self.components.values())
        return self

    def predict_parts(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {name: m.predict_proba(X) for name, m in self.components.items()}

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        return combine(self.predict_parts(X), self.weights)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw = self.predict_raw(X)
        return self.calibrator.apply(raw) if self.calibrator is not None else raw

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights, "skipped": self.skipped}


def _sub_progress(progress: ProgressFn | None, start: float, share: float) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda f, msg: progress(start + share * min(max(f, 0.0), 1.0), msg)
