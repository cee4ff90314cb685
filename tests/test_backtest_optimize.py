"""Optimisation through the same engine, walked forward, and said plainly: in-sample vs out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_bars_csv
from test_backtest import _walk

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.optimize import Param, optimize, parse_param
from app.engine.backtest.runner import run_backtest
from app.engine.settings import Settings
from app.engine.strategy.sma_cross import SmaCrossModel

CFG = BacktestConfig(symbol="TEST", timeframe="1m", cash=100_000, slippage_bps=2.0, plain=True)
GRID = [Param("fast", (5.0, 10.0, 20.0)), Param("slow", (20.0, 40.0))]


@pytest.fixture(scope="module")
def noise():  # type: ignore[no-untyped-def]
    return _walk(2400, seed=21)


@pytest.fixture(scope="module")
def searched(noise):  # type: ignore[no-untyped-def]
    return optimize(noise, CFG, Settings(), GRID, "sharpe", folds=3, train_blocks=2, workers=1)


def test_each_fold_trades_what_won_on_its_own_earlier_bars(noise, searched) -> None:  # type: ignore[no-untyped-def]
    """The walk forward, rebuilt by hand: each fold's choice is the best Sharpe on its in-sample
    blocks, and its out-of-sample return is that choice run on the next block, which it never saw."""
    opt = searched
    assert opt.tried == 5 and len(opt.skipped) == 1 and "fast=20, slow=20" in opt.skipped[0]
    assert len(opt.folds) == 3
    growth = 1.0
    for f in opt.folds:
        assert f.train[1] < f.test[0], "the out-of-sample block comes after the in-sample one"
        train = [b for b in noise if f.train[0] <= b.time <= f.train[1]]
        scores = {}
        for fast in (5, 10, 20):
            for slow in (20, 40):
                if fast < slow:
                    model = SmaCrossModel(fast, slow).precompute(noise)
                    scores[(fast, slow)] = run_backtest(train, CFG, Settings(), model=model).metrics["sharpe"]
        best = max(scores, key=lambda k: scores[k])
        assert (f.best["fast"], f.best["slow"]) == best and f.train_score == pytest.approx(scores[best])
        test = [b for b in noise if f.test[0] <= b.time <= f.test[1]]
        model = SmaCrossModel(*best).precompute(noise)
        oos = run_backtest(test, CFG, Settings(), model=model)
        assert f.test_metrics["total_return"] == pytest.approx(oos.metrics["total_return"])
        growth *= 1 + oos.metrics["total_return"]
    assert opt.oos_metrics["total_return"] == pytest.approx(growth - 1), "the blocks are stitched, compounding"


def test_the_in_sample_best_is_discounted_for_the_tries_behind_it(noise, searched) -> None:  # type: ignore[no-untyped-def]
    """The deflated Sharpe ratio of the best of 5 is below what the same curve would score as a lone try."""
    from app.engine.ml.edge import deflated_sharpe

    opt = searched
    assert opt.best_metrics["sharpe"] == max(opt.scores.values())
    best = run_backtest(noise, CFG, Settings(), model=SmaCrossModel(int(opt.best["fast"]),
                                                                    int(opt.best["slow"])).precompute(noise))
    r = np.diff(best.equity) / best.equity[:-1]
    assert opt.deflated_sharpe == pytest.approx(deflated_sharpe(r, 5))
    assert opt.deflated_sharpe < deflated_sharpe(r, 1)
    x, y, xs, ys, grid = opt.heatmap()
    assert (x, y, xs, ys) == ("fast", "slow", [5.0, 10.0, 20.0], [20.0, 40.0])
    assert np.isnan(grid[0, 2]), "fast 20 / slow 20 was refused: no cell"
    assert grid[1, 0] == pytest.approx(opt.scores[(5.0, 40.0)])


def test_processes_give_the_same_answer_as_one(noise, searched) -> None:  # type: ignore[no-untyped-def]
    two = optimize(noise, CFG, Settings(), GRID, "sharpe", folds=3, train_blocks=2, workers=2)
    assert two.workers == 2
    assert two.scores == searched.scores and two.best == searched.best
    assert [f.best for f in two.folds] == [f.best for f in searched.folds]
    assert np.array_equal(two.oos_equity, searched.oos_equity)


def test_a_risk_setting_can_be_searched_and_its_rules_still_hold(noise) -> None:  # type: ignore[no-untyped-def]
    """trailing_pct must stay below trailing_start_pct: combinations that break it are refused, not run."""
    cfg = BacktestConfig(symbol="TEST", timeframe="1m", strategy="sma_cross", cash=100_000, plain=True)
    params = [parse_param("trailing_pct=0.02:0.06:0.02", "sma_cross"), parse_param("stop_loss_pct=0.01,0.03",
                                                                                     "sma_cross")]
    opt = optimize(noise, cfg, Settings(), params, "total_return", folds=0, workers=1)
    assert opt.tried == 4 and any("trailing_pct" in s for s in opt.skipped) and not opt.folds


@pytest.mark.parametrize("text, said", [("speed=1:2:1", "not a parameter of sma_cross"),
                                        ("fast=30:5:5", "STOP >= START"),
                                        ("fast=1:1000:1", "at most 200"),
                                        ("fast=2.5,3", "whole numbers only"),
                                        ("stop_loss_pct=0.5", "outside 0.005 to 0.2"),
                                        ("fast", "NAME=START:STOP:STEP"),
                                        ("fast=nan:3:1", "STOP >= START")])
def test_a_grid_it_cannot_mean_is_refused_with_why(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_param(text, "sma_cross")


def test_cli_reports_out_of_sample_beside_in_sample_with_a_heatmap(tmp_path: Path, app_home: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    csv = tmp_path / "TEST.csv"
    write_bars_csv(csv, _walk(1500, seed=8))
    out_json, out_html = tmp_path / "o.json", tmp_path / "o.html"
    assert main(["--data-dir", str(app_home), "backtest", "--csv", str(csv), "--timeframe", "1m", "--plain",
                 "--optimize", "fast=5:15:5", "--optimize", "slow=20:30:10", "--folds", "2", "--workers", "1",
                 "--json", str(out_json), "--html", str(out_html)]) == 0
    out = capsys.readouterr().out
    assert "IN-SAMPLE best (fast=" in out and "walk-forward (out of sample, stitched): return" in out
    assert "deflated Sharpe ratio" in out and "6 combinations run" in out
    doc = json.loads(out_json.read_text())["optimization"]
    assert doc["combinations"] == 6 and len(doc["walk_forward"]["folds"]) == 2
    assert doc["in_sample_best"]["note"].startswith("IN-SAMPLE")
    assert len(doc["heatmap"]["values"]) == 2 and len(doc["heatmap"]["values"][0]) == 3
    page = out_html.read_text()
    assert "Heatmap: IN-SAMPLE sharpe" in page and "Walk-forward (out of sample)" in page
    assert page.count('<td style="background:') == 6
    assert main(["--data-dir", str(app_home), "backtest", "--csv", str(csv), "--timeframe", "1m",
                 "--optimize", "fast=1:200:1", "--optimize", "slow=2:200:1"]) == 2
    assert "combinations: at most 2,000" in capsys.readouterr().err


@pytest.mark.parametrize("text, plain, said", [
    ("fast=5:30:5e-324", False, "more than 200 values"),
    ("stop_loss_pct=0.005:0.2:1e-320", False, "more than 200 values"),
    ("fast=5,10,5,,", False, "an empty value"),
    ("stop_loss_pct=0.01:0.05:0.01", True, "a plain backtest has no stops"),
    ("weight_lstm=0.1:0.5:0.1", False, "only the ensemble has weights"),
])
def test_review_grids_are_refused_in_one_line(text: str, plain: bool, said: str) -> None:
    """An outside review crashed a tiny step (OverflowError) and searched settings that change nothing."""
    with pytest.raises(ValueError, match=said):
        parse_param(text, "sma_cross", plain)


def test_a_profit_factor_with_no_losing_trade_ranks_first_and_says_inf() -> None:
    from app.engine.backtest.optimize import _score

    assert _score({"profit_factor": float("inf")}, "profit_factor") > _score({"profit_factor": 9.0}, "profit_factor")
    assert _score({"profit_factor": float("nan")}, "profit_factor") == float("-inf")


def test_a_portfolios_walk_forward_buy_and_hold_is_an_equal_weight_basket() -> None:
    """It once divided one symbol's last close by another's first open (+1822% for SPY and PLTR)."""
    from app.engine.backtest.optimize import _basket
    from app.engine.types import Bar

    t0 = _walk(2)[0].time
    bars = [Bar("AAA", t0, 10.0, 10, 10, 10.0, 1), Bar("BBB", t0, 100.0, 100, 100, 100.0, 1),
            Bar("AAA", t0 + (t0 - t0).__class__(minutes=1), 20.0, 20, 20, 20.0, 1),
            Bar("BBB", t0 + (t0 - t0).__class__(minutes=1), 110.0, 110, 110, 110.0, 1)]
    first, last = _basket(bars)
    assert last / first - 1 == pytest.approx((2.0 + 1.1) / 2 - 1), "the mean of +100% and +10%"


def test_the_search_passes_on_the_models_own_notes(tmp_path: Path, app_home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Momentum's UNCALIBRATED note (and a saved model's IN-SAMPLE) were dropped by --optimize."""
    from app.main import main

    csv = tmp_path / "TEST.csv"
    write_bars_csv(csv, _walk(1500, seed=8))
    assert main(["--data-dir", str(app_home), "backtest", "--csv", str(csv), "--timeframe", "1m", "--plain",
                 "--strategy", "momentum", "--optimize", "auto_threshold=0.6:0.8:0.1", "--folds", "2",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "note: momentum is UNCALIBRATED" in out and "0% of the runs done" in out
