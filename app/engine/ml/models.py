"""The Model port and its implementations: LSTM, random forest, gradient boosting, momentum.

Every model speaks the same small language so the ensemble, the walk-forward
trainer and the live adapter never care which one they hold:

* ``X`` is the feature matrix of consecutive bars, oldest first, one column
  per name in ``columns`` (NaN where a feature is still warming up);
* ``fit(X, y)`` learns from the rows whose label ``y`` is known (NaN = unknown);
* ``predict_proba(X)`` gives P(up) for every row, NaN where the model lacks
  context (a sequence model needs ``lookback - 1`` earlier rows) or features.

Passing whole, ordered matrices (instead of pre-cut samples) lets a sequence
model look back across the boundary between a training window and the test
fold that follows it, exactly as it would live. TensorFlow is imported only
inside :mod:`app.engine.ml.lstm`'s functions, never by importing this module.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ProgressFn = Callable[[float, str], bool]  # (fraction done, message) -> keep going?
COMPONENTS: tuple[str, ...] = ("lstm", "random_forest", "hist_gb", "momentum")


class TrainingCancelled(Exception):
    """The progress callback asked to stop; nothing half-trained is kept."""


def finite_rows(X: np.ndarray) -> np.ndarray:
    return np.asarray(np.isfinite(X).all(axis=1))


class Model(abc.ABC):
    """Something that turns a window of feature rows into P(up) per row."""

    name: str = "model"
    lookback: int = 1  # rows one prediction reads, the current row included
    uses_segments: bool = False  # fit() takes ``segments``: where each symbol's stacked rows start

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)

    @abc.abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: ProgressFn | None = None) -> Model:
        """Learn from rows with a known label; returns self."""

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(up) per row of ``X``; NaN where this model cannot say."""

    def predict_last(self, X: np.ndarray) -> float:
        """P(up) for the newest row only: the live path, overridden where it can be faster."""
        return float(self.predict_proba(np.asarray(X)[-self.lookback:])[-1])

    def describe(self, p_up: float) -> str:
        return f"{self.name} P(up) {p_up:.2f}"

    def params(self) -> dict[str, Any]:
        """What to record in the artifact metadata (JSON-able)."""
        return {}


# ---------------------------------------------------------------- momentum
class MomentumModel(Model):
    """Trend-following with nothing learned: a logistic squash of multi-horizon returns.

    ``z`` is the mean over 5, 10 and 20 bars of the log return divided by the
    volatility expected over that many bars (ATR x sqrt(bars)), so "+1" reads
    "the price rose about one typical move". P(up) = 1 / (1 + exp(-gain z)),
    clipped to [0.02, 0.98]. Having no parameters fitted, it cannot overfit,
    which makes it the honest baseline the learned models must beat.
    """

    name = "momentum"

    def __init__(self, columns: Sequence[str], gain: float = 1.0,
                 horizons: tuple[int, ...] = (5, 10, 20)) -> None:
        super().__init__(columns)
        self.gain, self.horizons = float(gain), tuple(horizons)
        missing = [c for c in self._needed() if c not in self.columns]
        if missing:
            raise ValueError(f"momentum needs feature columns {', '.join(missing)}")
        self._ret_idx = [self.columns.index(f"logret_{k}") for k in self.horizons]
        self._atr_idx = self.columns.index("atr_14_rel")
        self._last_z = 0.0

    def _needed(self) -> list[str]:
        return [f"logret_{k}" for k in self.horizons] + ["atr_14_rel"]

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: ProgressFn | None = None) -> Model:
        return self  # nothing to learn, on purpose

    def z_score(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype="float64"))
        atr = X[:, self._atr_idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            parts = [X[:, i] / (atr * math.sqrt(k)) for i, k in zip(self._ret_idx, self.horizons, strict=True)]
            z = np.mean(parts, axis=0)
        return np.where(np.isfinite(z) & (atr > 0), z, np.nan)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.z_score(X)
        with np.errstate(over="ignore", invalid="ignore"):
            p = 1.0 / (1.0 + np.exp(-self.gain * z))
        return np.clip(p, 0.02, 0.98)

    def predict_last(self, X: np.ndarray) -> float:
        z = float(self.z_score(np.asarray(X)[-1:])[0])
        self._last_z = z
        if not math.isfinite(z):
            return float("nan")
        return min(max(1 / (1 + math.exp(-self.gain * z)), 0.02), 0.98)

    def describe(self, p_up: float) -> str:
        bars = "/".join(str(k) for k in self.horizons)
        return f"momentum {p_up:.2f}: {bars}-bar returns at {self._last_z:+.2f} vol units"

    def params(self) -> dict[str, Any]:
        return {"gain": self.gain, "horizons": list(self.horizons)}


# ---------------------------------------------------------------- forest
class RandomForestModel(Model):
    """A modest random forest on the current features plus a few lagged copies.

    Shallow trees with large leaves (depth 6, >= 25 samples a leaf) because a
    few thousand noisy labels support little more. ``n_jobs`` trees grow at once: 1 by
    default, so training from the desk never takes every core from the GUI; the ``train``
    command, which has the machine to itself, uses them all (the trees are the same either
    way: each has its own seed). Live, the fitted trees are
    walked with NumPy (all trees at once, one level per step): sklearn's own
    ``predict_proba`` costs milliseconds of per-tree overhead on one row.
    """

    name = "random_forest"

    def __init__(self, columns: Sequence[str], lags: tuple[int, ...] = (1, 3),
                 n_estimators: int = 200, max_depth: int = 6, min_samples_leaf: int = 25,
                 seed: int = 42, n_jobs: int = 1) -> None:
        super().__init__(columns)
        self.n_jobs = max(1, int(n_jobs))
        self.lags = tuple(sorted(set(lags)))
        self.lookback = (max(self.lags) if self.lags else 0) + 1
        self.n_estimators, self.max_depth = n_estimators, max_depth
        self.min_samples_leaf, self.seed = min_samples_leaf, seed
        self.forest: Any = None
        self._flat: _FlatForest | None = None

    def design(self, X: np.ndarray) -> np.ndarray:
        """[x_t, x_{t-lag1}, ...] per row; rows without their lags are NaN."""
        X = np.asarray(X, dtype="float64")
        blocks = [X]
        for lag in self.lags:
            shifted = np.full_like(X, np.nan)
            shifted[lag:] = X[:-lag]
            blocks.append(shifted)
        return np.hstack(blocks)

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: ProgressFn | None = None) -> Model:
        from sklearn.ensemble import RandomForestClassifier

        D = self.design(X)
        y = np.asarray(y, dtype="float64")
        mask = finite_rows(D) & np.isfinite(y)
        if mask.sum() < 2 * self.min_samples_leaf:
            raise ValueError(f"random forest needs more labelled rows (has {int(mask.sum())})")
        clf = RandomForestClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, max_features="sqrt", n_jobs=self.n_jobs,
            random_state=self.seed)
        clf.fit(D[mask], y[mask].astype(int))
        self.set_forest(clf)
        return self

    def set_forest(self, forest: Any) -> None:
        self.forest = forest
        self._flat = _FlatForest(forest)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.forest is None:
            raise RuntimeError(f"{self.name} is not trained")
        D = self.design(X)
        out = np.full(len(D), np.nan)
        mask = finite_rows(D)
        if mask.any():
            out[mask] = self._rows_proba(D[mask])
        return out

    def predict_last(self, X: np.ndarray) -> float:
        if self.forest is None:
            raise RuntimeError(f"{self.name} is not trained")
        X = np.asarray(X, dtype="float64")
        if len(X) < self.lookback:
            return float("nan")
        row = np.concatenate([X[-1]] + [X[-1 - lag] for lag in self.lags])
        return self._row_proba(row) if np.isfinite(row).all() else float("nan")

    def _rows_proba(self, D: np.ndarray) -> np.ndarray:
        """P for complete design rows: the fitted trees walked in NumPy."""
        return self._flat.up_proba_sklearn(D)  # type: ignore[union-attr]

    def _row_proba(self, row: np.ndarray) -> float:
        return self._flat.up_proba_one(row)  # type: ignore[union-attr]

    def params(self) -> dict[str, Any]:
        return {"lags": list(self.lags), "n_estimators": self.n_estimators,
                "max_depth": self.max_depth, "min_samples_leaf": self.min_samples_leaf,
                "seed": self.seed}


class HistGradientBoostingModel(RandomForestModel):
    """scikit-learn's histogram gradient boosting on the same lagged design as the forest.

    Small and strongly regularised (shallow trees, large leaves, L2, early stopping on a
    held-out tail in time order is not offered by sklearn, so a fixed, small number of
    rounds at a low rate): boosting fits noise fast on a few thousand labels.
    """

    name = "hist_gb"

    def __init__(self, columns: Sequence[str], lags: tuple[int, ...] = (1, 3), max_iter: int = 150,
                 learning_rate: float = 0.04, max_depth: int = 3, min_samples_leaf: int = 40,
                 l2: float = 1.0, seed: int = 42) -> None:
        super().__init__(columns, lags=lags, min_samples_leaf=min_samples_leaf, seed=seed)
        self.max_iter, self.learning_rate, self.max_depth, self.l2 = max_iter, learning_rate, max_depth, l2

    def fit(self, X: np.ndarray, y: np.ndarray, *, progress: ProgressFn | None = None) -> Model:
        from sklearn.ensemble import HistGradientBoostingClassifier  # deferred: sklearn loads with training

        D = self.design(X)
        y = np.asarray(y, dtype="float64")
        mask = finite_rows(D) & np.isfinite(y)
        if mask.sum() < 4 * self.min_samples_leaf or len(np.unique(y[mask])) < 2:
            raise ValueError(f"gradient boosting needs more labelled rows of both outcomes (has {int(mask.sum())})")
        clf = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2, early_stopping=False,
            random_state=self.seed)
        clf.fit(D[mask], y[mask].astype(int))
        self.forest = clf
        return self

    def set_forest(self, forest: Any) -> None:
        self.forest = forest

    def _rows_proba(self, D: np.ndarray) -> np.ndarray:
        return np.asarray(self.forest.predict_proba(D)[:, 1])

    def _row_proba(self, row: np.ndarray) -> float:
        return float(self.forest.predict_proba(row[None, :])[0, 1])

    def params(self) -> dict[str, Any]:
        return {"lags": list(self.lags), "max_iter": self.max_iter, "learning_rate": self.learning_rate,
                "max_depth": self.max_depth, "min_samples_leaf": self.min_samples_leaf, "l2": self.l2,
                "seed": self.seed}


class _FlatForest:
    """A fitted sklearn forest as padded NumPy arrays, for one-row predictions.

    Leaves point to themselves, so every tree can be stepped ``depth`` times
    without checking which have arrived. Rows are rounded to float32 first,
    as sklearn does, so the split decisions (and the result) are identical.
    """

    def __init__(self, forest: Any) -> None:
        self.forest = forest
        trees = [e.tree_ for e in forest.estimators_]
        classes = list(forest.classes_)
        up = classes.index(1) if 1 in classes else None
        n = max(t.node_count for t in trees)
        T = len(trees)
        self.feature = np.zeros((T, n), dtype=np.intp)
        self.threshold = np.full((T, n), np.inf)
        self.left = np.zeros((T, n), dtype=np.intp)
        self.right = np.zeros((T, n), dtype=np.intp)
        self.p_up = np.zeros((T, n))
        for i, t in enumerate(trees):
            k = t.node_count
            leaf = t.children_left == -1
            nodes = np.arange(k)
            self.feature[i, :k] = np.where(leaf, 0, t.feature)
            self.threshold[i, :k] = np.where(leaf, np.inf, t.threshold)
            self.left[i, :k] = np.where(leaf, nodes, t.children_left)
            self.right[i, :k] = np.where(leaf, nodes, t.children_right)
            value = t.value[:, 0, :]
            total = value.sum(axis=1)
            if up is not None:
                self.p_up[i, :k] = np.divide(value[:, up], total, out=np.zeros(k), where=total > 0)
        self.depth = max(t.max_depth for t in trees)
        self.rows = np.arange(T)
        self.up = up

    def up_proba_sklearn(self, D: np.ndarray) -> np.ndarray:
        if self.up is None:
            return np.zeros(len(D))
        return np.asarray(self.forest.predict_proba(D)[:, self.up])

    def up_proba_one(self, row: np.ndarray) -> float:
        x = row.astype(np.float32).astype(np.float64)
        node = np.zeros(len(self.rows), dtype=np.intp)
        r = self.rows
        for _ in range(self.depth):
            go_left = x[self.feature[r, node]] <= self.threshold[r, node]
            node = np.where(go_left, self.left[r, node], self.right[r, node])
        return float(self.p_up[r, node].mean())
