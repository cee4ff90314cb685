"""The edge gate: a model is granted an edge only by its own out-of-sample numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.engine.ml.dataset import make_labels
from app.engine.ml.edge import MIN_TRADES, assess, deflated_sharpe, forward_returns
from app.engine.ml.ensemble import PlattCalibrator

SLOPE = PlattCalibrator(1.2, 0.0, 1_000)


def oof(n: int = 2_000, skill: float = 0.0, seed: int = 1, scale: float = 1.0) -> pd.DataFrame:
    """Out-of-fold rows: forward returns of 1% sd, and a P(up) that reads them with ``skill``."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(0.0, 0.01, n)
    z = skill * ret / 0.01 + rng.normal(0.0, 1.0, n)
    p = 1 / (1 + np.exp(-scale * z))
    cal = p.copy()
    cal[: n // 4] = np.nan  # the first fold has no calibration of its own
    return pd.DataFrame({"y": (ret > 0).astype(float), "ret": ret, "ensemble": p, "ensemble_calibrated": cal,
                         "always_up": 0.5, "momentum": 1 / (1 + np.exp(-rng.normal(0, 1, n)))})


def test_a_planted_edge_is_granted_with_its_numbers() -> None:
    v = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    s = v.out_of_sample
    assert v.edge, v.reason
    assert s["rank_ic_ci"][0] > 0 and s["auc"] > 0.6 and s["trades"] >= MIN_TRADES
    assert s["expectancy_bps"] > s["rules_expectancy_bps"] and s["expectancy_bps"] > 0
    assert s["ece_constant_baseline"] is not None and 0 <= s["deflated_sharpe"] <= 1
    assert v == assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1), "pinned bootstrap"


def test_noise_is_refused_because_its_interval_includes_zero() -> None:
    v = assess(oof(skill=0.0, scale=3.0), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert not v.edge and "includes 0" in v.reason
    lo, hi = v.out_of_sample["rank_ic_ci"]
    assert lo <= 0 <= hi


def test_a_flat_calibrator_is_no_edge_whatever_else_it_shows() -> None:
    """Slope 0 states the base rate on every bar: a constant P(up) that must never trade."""
    for cal in (PlattCalibrator(0.0, 0.1, 500), None):
        v = assess(oof(skill=1.5), cal, threshold=0.7, cost_bps=4.0, horizon=1)
        assert not v.edge and ("flat" in v.reason or "calibrate" in v.reason)


def test_too_few_gated_trades_or_costs_that_eat_the_edge_are_no_edge() -> None:
    shy = assess(oof(skill=1.5, scale=0.15), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert not shy.edge and "out-of-sample bars reach P(up) 70%" in shy.reason
    costly = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=500.0, horizon=1)
    assert not costly.edge and "no profit" in costly.reason


def test_no_better_than_the_rule_without_the_model_is_no_edge() -> None:
    rows = oof(skill=1.5)
    rows["momentum"] = np.where(rows["ret"] > 0.005, 0.9, 0.1)  # the rule alone knows the big moves ahead
    v = assess(rows, SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert not v.edge and "no better than the rule without it" in v.reason


def test_the_deflated_sharpe_falls_as_more_configurations_were_tried() -> None:
    r = np.random.default_rng(3).normal(0.001, 0.01, 200)
    one, many = deflated_sharpe(r, 1), deflated_sharpe(r, 1_000)
    assert one is not None and many is not None and 0 < many < one < 1
    assert deflated_sharpe(np.array([1.0, 1.0]), 1) is None


def test_no_forward_return_crosses_the_close_or_reads_past_its_horizon() -> None:
    idx = pd.date_range("2025-03-04 14:30", periods=78, freq="5min", tz="UTC").append(
        pd.date_range("2025-03-05 14:30", periods=78, freq="5min", tz="UTC"))
    close = np.linspace(10, 20, len(idx))
    y = make_labels(close, 6, idx, intraday=True)
    ret = forward_returns(close, 6, y)
    assert np.isnan(ret[72:78]).all() and np.isnan(ret[-6:]).all(), "the last six of a session read tomorrow"
    assert ret[0] == pytest.approx(close[6] / close[0] - 1)
    later = close.copy()
    later[100:] *= 3  # rewriting later bars changes no earlier return
    assert np.array_equal(forward_returns(later, 6, y)[:94], ret[:94], equal_nan=True)


def test_a_file_made_of_copies_of_one_stretch_is_no_edge() -> None:
    """Out-of-sample bars that repeat the training bars (a file pasted together from scaled
    copies) let a model score on what it memorised: once granted an edge of +215 bps a trade."""
    rng = np.random.default_rng(5)
    stretch = np.cumsum(rng.normal(0, 0.02, 900))
    close = 20 * np.exp(np.concatenate([stretch, stretch + stretch[-1], stretch + 2 * stretch[-1]]))
    from app.engine.ml.edge import repeated_share

    assert repeated_share(close, 1_800) > 0.9
    walk = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, 2_700)))
    assert repeated_share(walk, 1_800) == 0.0
    v = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1, repeated=0.95)
    assert not v.edge and "repeat sequences of its training bars" in v.reason


def test_a_verdict_edited_by_hand_is_checked_against_the_numbers_saved_beside_it() -> None:
    from app.engine.ml.edge import recheck

    v = assess(oof(skill=0.0, scale=3.0), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    meta = {"edge": True, "out_of_sample": v.out_of_sample, "calibrator": SLOPE.to_dict()}
    assert not v.edge and "say otherwise" in (recheck(meta) or "")
    good = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert recheck({"edge": True, "out_of_sample": good.out_of_sample, "calibrator": SLOPE.to_dict()}) is None
    assert "missing" in (recheck({"edge": True}) or "")
