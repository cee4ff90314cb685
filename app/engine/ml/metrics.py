"""Scoring probabilities the way a trader needs them scored.

Accuracy alone flatters a model on a trending sample (always-up wins), so
every model is reported with balanced accuracy and ROC AUC (ranking, blind
to the base rate), Brier score and log loss (is the probability itself
right?), and the hit rate of the signals that would actually pass the
confidence gates (0.70 asks for approval, 0.80 executes). Every value is a
plain float or None (undefined, e.g. AUC with one class), so reports go
straight to JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CONFIDENCE_LEVELS: tuple[float, ...] = (0.70, 0.80)


def classification_metrics(y: np.ndarray, p: np.ndarray, decision: np.ndarray | None = None,
                           long_only: bool = False) -> dict[str, Any]:
    """Metrics of P(up) ``p`` against labels ``y`` on the rows where both are finite.

    ``decision`` (1 = up) overrides ``p > 0.5`` for the hit-rate style metrics:
    the always-up baseline predicts "up" whatever probability it states. ``long_only``: ``p``
    is the chance a buy makes money, so only a high ``p`` is a confident call (a low one is
    no trade, not a confident "down").
    """
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    n = len(y)
    if n == 0:
        return {"n": 0}
    pred = (p > 0.5).astype(float) if decision is None else np.asarray(decision, dtype="float64")[ok]
    both = len(np.unique(y)) == 2
    q = np.clip(p, 1e-6, 1 - 1e-6)
    out: dict[str, Any] = {
        "n": n,
        "up_rate": float(y.mean()),
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": _balanced_accuracy(y, pred) if both else None,
        "roc_auc": _auc(y, p) if both else None,
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))),
    }
    if long_only:
        pred, conf = np.ones(n), p.copy()  # every call at or above a level is a buy
    else:
        conf = np.maximum(p, 1 - p) if decision is None else np.where(pred == 1, p, 1 - p)
    for level in CONFIDENCE_LEVELS:
        out[f"at_{int(level * 100)}"] = threshold_stats(y, pred, conf, level)
    return out


def threshold_stats(y: np.ndarray, pred: np.ndarray, conf: np.ndarray, level: float) -> dict[str, Any]:
    """How many bars reach ``level`` confidence, and how often their direction was right."""
    sel = conf >= level - 1e-12
    count = int(sel.sum())
    return {"count": count, "hit_rate": float((pred[sel] == y[sel]).mean()) if count else None}


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    tpr = float((pred[y == 1] == 1).mean())
    tnr = float((pred[y == 0] == 0).mean())
    return (tpr + tnr) / 2


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins of P(up): how many bars, the mean stated P(up), the observed up rate."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
                     "mean_p": float(p[sel].mean()) if n else None,
                     "observed": float(y[sel].mean()) if n else None})
    return rows


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float | None:
    """Bar-weighted mean gap between stated and observed P(up) over the reliability bins."""
    rows = reliability_table(y, p, bins)
    total = sum(r["n"] for r in rows)
    if not total:
        return None
    return float(sum(r["n"] / total * abs(r["mean_p"] - r["observed"]) for r in rows if r["n"]))


def fmt(value: Any, digits: int = 3) -> str:
    """A metric for a table cell: '-' for undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"
