"""``train`` and ``predict`` from the command line, errors as one line each."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

os.environ.setdefault("AI_TRADER_TF_THREADS", "1")

import numpy as np
import pandas as pd
import pytest

from app.cli.ml import add_ml_parsers, run_ml_command
from app.engine.data.frame import frame_to_bars
from app.engine.ml.dataset import load_csv_bars
from app.engine.ml.live import EnsembleSignalModel, load_signal_model
from app.engine.paths import AppPaths
from app.engine.pipeline import model_label
from app.engine.settings import Settings
from app.engine.strategy.rules import RulesModel


def write_daily_csv(path: Path, n: int = 520, seed: int = 11, planted: float = 0.0) -> pd.DataFrame:
    """A random walk that moves in the session (each day opens near the last close); with
    ``planted`` > 0, each day's move carries that share of the day before's (a momentum a model
    can learn, and the bot's trade, from the next open to its close, can collect)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2021-06-01", periods=n)
    r = rng.normal(0.0004, 0.02, n)
    for t in range(1, n):
        r[t] += planted * r[t - 1]
    gap = rng.normal(0, 0.002, n)
    close = 25 * np.exp(np.cumsum(r + gap))
    open_ = close * np.exp(-r)
    df = pd.DataFrame({"Date": days.strftime("%Y-%m-%d"), "Open": open_,
                       "High": np.maximum(open_, close) * 1.012, "Low": np.minimum(open_, close) * 0.988,
                       "Close": close, "Volume": rng.integers(1_000_000, 4_000_000, n)})
    df.to_csv(path, index=False)
    return df


def run(argv: list[str], home: Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="ai-trader")
    add_ml_parsers(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    rc = run_ml_command(parser.parse_args(argv), AppPaths(home), stdout=out, stderr=err,
                        probe_yfinance=lambda: False)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    csv = root / "pltr_daily.csv"
    write_daily_csv(csv)
    home = root / "home"
    rc, out, err = run(["train", "--symbol", "pltr", "--csv", str(csv), "--timeframe", "1d",
                        "--folds", "2", "--small", "--json", str(root / "metrics.json")], home)
    assert rc == 0, err
    return home, csv, root


def test_train_reports_walk_forward_and_saves_the_bundle(trained) -> None:
    home, _, root = trained
    metrics = json.loads((root / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and metrics["purge_bars"] > 1 and metrics["embargo_bars"] == 6  # 1% of 520
    for name in ("lstm", "random_forest", "momentum", "ensemble", "always_up"):
        assert {"accuracy", "balanced_accuracy", "roc_auc", "brier", "log_loss", "at_70", "at_80"} \
            <= set(metrics["overall"][name])
    assert metrics["calibration"]["method"] == "platt" and len(metrics["calibration"]["reliability"]) == 10
    assert metrics["info"]["symbol"] == "PLTR"
    meta = json.loads((home / "models" / "PLTR_1d" / "metadata.json").read_text())
    assert meta["timeframe"] == "1d" and meta["horizon"] == metrics["purge_bars"]
    assert "ensemble" in meta["metrics"]["overall"]
    oos = metrics["out_of_sample"]
    assert {"auc", "auc_ci", "rank_ic", "rank_ic_ci", "ece", "ece_constant_baseline", "trades", "expectancy_bps",
            "rules_expectancy_bps", "configs_tried", "deflated_sharpe"} <= set(oos)


def test_a_random_walk_has_no_edge_and_its_model_never_trades(trained) -> None:
    home, _, root = trained
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["edge"] is False and metrics["edge_reason"]
    model, notes = load_signal_model(AppPaths(home), Settings(timeframe="1d"))
    assert isinstance(model, RulesModel) and model_label(model) == "rules: model has no demonstrated edge"
    assert metrics["edge_reason"] in notes[0]
    meta_path = home / "models" / "PLTR_1d" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "edge": True}))  # the verdict flipped by hand
    try:
        model, notes = load_signal_model(AppPaths(home), Settings(timeframe="1d"))
        assert isinstance(model, RulesModel) and "its saved numbers say otherwise" in notes[0]
    finally:
        meta_path.write_text(json.dumps(meta))


def tight_exits(home: Path) -> Settings:
    """A desk with tight daily exits (1.5% stop, trailing 1% from +1.5%), saved for ``home``: its
    trades end in a day or two, so a few years of bars give enough of them, one at a time, to judge."""
    settings = Settings(timeframe="1d", stop_loss_pct=0.015, trailing_start_pct=0.015, trailing_pct=0.01)
    AppPaths(home).settings.parent.mkdir(parents=True, exist_ok=True)
    settings.save(AppPaths(home).settings)
    return settings


def test_a_planted_edge_is_found_and_its_model_trades(tmp_path: Path) -> None:
    csv = tmp_path / "pltr_daily.csv"
    write_daily_csv(csv, n=2_000, seed=3, planted=0.6)
    home = tmp_path / "home"
    settings = tight_exits(home)
    rc, out, err = run(["train", "--symbol", "PLTR", "--csv", str(csv), "--timeframe", "1d", "--folds", "3",
                        "--small", "--json", str(tmp_path / "m.json")], home)
    assert rc == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["edge"] is True, metrics["edge_reason"]
    assert "edge: yes" in out and metrics["out_of_sample"]["rank_ic_ci"][0] > 0
    model, _ = load_signal_model(AppPaths(home), settings)
    assert isinstance(model, EnsembleSignalModel)
    bars = frame_to_bars(load_csv_bars(csv, "1d"), "PLTR")
    calls = [model.predict(np.array([b.close for b in bars[: i + 1]]), bars[: i + 1]) for i in range(1_700, 2_000)]
    buys = [c for c in calls if c is not None and c.tradeable and c.confidence >= 0.7]
    assert len(buys) >= 3 and all(c.expected_bps > 0 for c in buys), "it reaches the approval threshold"
    learned = metrics["info"]["weights"]
    assert learned != settings.ensemble_weights() and sum(learned.values()) == pytest.approx(1.0, abs=1e-3), \
        "weights chosen by out-of-sample log loss, not the settings' starting shares"


def test_predict_writes_one_object_per_bar(trained, tmp_path: Path) -> None:
    home, csv, _ = trained
    out_file = tmp_path / "out.json"
    rc, out, err = run(["predict", "--symbol", "PLTR", "--csv", str(csv), "--timeframe", "1d",
                        "--json", str(out_file)], home)
    assert rc == 0, err
    rows = json.loads(out_file.read_text())
    assert out.startswith(f"wrote {len(rows)} predictions") and 400 < len(rows) < 520
    first = rows[0]
    assert set(first) == {"timestamp", "p_lstm", "p_rf", "p_hist_gb", "p_momentum", "p_up", "confidence",
                          "primary_buy", "expected_bps", "signal", "in_sample"}
    assert all(r["in_sample"] for r in rows) and "IN-SAMPLE" in err, "the file is the one it was trained on"
    assert "NO DEMONSTRATED EDGE" in err, "a random walk's model is refused: its answers are for study"
    for r in rows:  # P(the primary rule's long makes money): a buy where the rule calls one, never a sell
        assert r["confidence"] == pytest.approx(r["p_up"], abs=2e-6)
        assert r["signal"] == ("BUY" if r["primary_buy"] and r["p_up"] > 0.5 else "HOLD")
    assert {r["signal"] for r in rows} == {"BUY", "HOLD"}
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)


def test_predicting_bars_after_the_training_window_is_not_flagged(trained, tmp_path: Path) -> None:
    home, _, _ = trained
    later = tmp_path / "later.csv"
    full = write_daily_csv(tmp_path / "all.csv", n=700, seed=11)
    full.iloc[450:].to_csv(later, index=False)  # the trained file holds the first 520 of these days
    rc, _, err = run(["predict", "--symbol", "PLTR", "--csv", str(later), "--timeframe", "1d", "--json",
                      str(tmp_path / "p.json")], home)
    rows = json.loads((tmp_path / "p.json").read_text())
    assert rc == 0, err
    inside = [r for r in rows if r["in_sample"]]
    assert 0 < len(inside) < len(rows) and "IN-SAMPLE" in err and f"{len(inside)} of {len(rows)}" in err
    assert max(r["timestamp"] for r in inside) < min(r["timestamp"] for r in rows if not r["in_sample"])


def test_a_bars_prediction_does_not_depend_on_later_bars(trained, tmp_path: Path) -> None:
    home, csv, _ = trained
    full = pd.read_csv(csv)
    short = tmp_path / "short.csv"
    full.iloc[:300].to_csv(short, index=False)
    outputs = []
    for path in (csv, short):
        rc, out, err = run(["predict", "--symbol", "PLTR", "--csv", str(path), "--timeframe", "1d"], home)
        assert rc == 0, err
        outputs.append(json.loads(out))
    long_rows = {r["timestamp"]: r for r in outputs[0]}
    assert len(outputs[1]) > 150
    assert all(long_rows[r["timestamp"]] == r for r in outputs[1])


@pytest.mark.parametrize("argv, message", [
    (["predict", "--symbol", "MSFT", "--csv", "x.csv", "--timeframe", "1d"], "no trained model"),
    (["train", "--symbol", "PLTR", "--csv", "missing.csv", "--timeframe", "1d"], "no such file"),
    (["train", "--symbol", "PLTR", "--timeframe", "1d", "--source", "cache"], "no PLTR 1d bars"),
    (["train", "--symbol", "PL TR", "--csv", "x.csv"], "is not a ticker symbol"),
    (["train", "--symbol", "PLTR", "--csv", "x.csv", "--horizon", "0"], "--horizon 0: a time stop"),
    (["train", "--symbol", "PLTR", "--csv", "x.csv", "--folds", "0"], "--folds 0"),
    (["train", "--symbol", "PLTR", "--csv", "x.csv", "--folds", "700"], "--folds 700: the walk-forward takes 1 to 50"),
    (["train", "--symbol", "PLTR", "--csv", "x.csv", "--horizon", "10000000"], "is 1 to 10,000 bars"),
    (["train", "--symbol", "PLTR", "--csv", "x.csv", "--json", "/no/such/folder/m.json"], "no folder /no/such"),
])
def test_failures_are_one_line_without_traceback(tmp_path: Path, argv: list[str], message: str) -> None:
    rc, _, err = run(argv, tmp_path / "home")
    assert rc != 0
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_a_file_of_another_timeframe_is_refused(trained, tmp_path: Path) -> None:
    _, csv, _ = trained
    rc, _, err = run(["train", "--symbol", "PLTR", "--csv", str(csv), "--timeframe", "5m"], tmp_path)
    assert rc == 2 and "holds 1d bars, not 5m" in err


def test_ensemble_backtest_over_its_training_data_is_flagged_in_sample(trained, capsys) -> None:  # type: ignore[no-untyped-def]
    from app.main import main

    home, csv, root = trained
    out_json = root / "bt.json"
    code = main(["--data-dir", str(home), "backtest", "--symbol", "PLTR", "--csv", str(csv), "--timeframe", "1d",
                 "--strategy", "ensemble", "--json", str(out_json)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out_json.read_text())
    assert any("IN-SAMPLE" in n for n in data["notes"])
    assert any("NO DEMONSTRATED EDGE" in n for n in data["notes"]), "a random walk's model: it says so"
    assert data["bars"] == 520


def test_an_ensemble_backtest_after_the_training_window_is_not_flagged(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.main import main

    home, _, root = trained
    later = tmp_path / "later.csv"
    write_daily_csv(later, n=300, seed=3)
    text = later.read_text().splitlines()
    import pandas as pd

    days = pd.bdate_range("2024-01-02", periods=300).strftime("%Y-%m-%d")
    later.write_text("\n".join([text[0]] + [d + line[line.index(","):] for d, line in zip(days, text[1:])]) + "\n")
    out_json = root / "bt-later.json"
    assert main(["--data-dir", str(home), "backtest", "--symbol", "PLTR", "--csv", str(later), "--timeframe", "1d",
                 "--strategy", "ensemble", "--json", str(out_json)]) == 0
    assert not any("IN-SAMPLE" in n for n in json.loads(out_json.read_text())["notes"])


def test_a_symbol_that_no_file_names_is_refused_before_training(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    write_daily_csv(csv, n=300)
    rc, _, err = run(["train", "--symbol", "QQQ", "--csv", f"AAA={csv}", "--timeframe", "1d"], tmp_path / "h")
    assert rc != 0 and "--symbol QQQ is not among the files' symbols (AAA)" in err
    assert not (tmp_path / "h" / "models").exists()


@pytest.mark.parametrize("planted", [0.6, 0.0])
def test_one_model_learns_a_watchlist_and_is_judged_on_each_symbol(tmp_path: Path, planted: float) -> None:
    """Three stocks with the same planted momentum: one pooled model finds it, overall and
    across the symbols at each bar time; each symbol's copy is judged on its own trades too,
    and trades only where those grant it. Without the momentum none does."""
    argv = ["train", "--timeframe", "1d", "--folds", "3", "--small", "--json", str(tmp_path / "m.json")]
    for i, sym in enumerate(("AAA", "BBB", "CCC")):
        write_daily_csv(tmp_path / f"{sym}.csv", n=1_500, seed=20 + i, planted=planted)
        argv += ["--csv", f"{sym}={tmp_path / f'{sym}.csv'}"]
    home = tmp_path / "home"
    settings = tight_exits(home)
    rc, out, err = run(argv, home)
    assert rc == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["per_symbol"]) == {"AAA", "BBB", "CCC"} and metrics["info"]["symbols"] == ["AAA", "BBB", "CCC"]
    cross = metrics["cross_sectional"]
    assert cross["times"] > 30 and cross["rank_ic_ci"][0] is not None
    trading = []
    for sym, verdict in metrics["per_symbol"].items():
        model, notes = load_signal_model(AppPaths(home), settings.updated(watchlist=(sym,)))
        assert verdict["out_of_sample"]["bars"] > 100
        if verdict["edge"]:
            assert isinstance(model, EnsembleSignalModel) and model.bundle.symbol == sym
            trading.append(sym)
        else:
            assert isinstance(model, RulesModel) and "no demonstrated edge" in notes[0]
            why = "on " + sym + "'s own trades" if planted else "the pooled model has no demonstrated edge"
            assert why in verdict["edge_reason"]
    assert metrics["edge"] is bool(planted) and (cross["rank_ic_ci"][0] > 0) is bool(planted)
    assert bool(trading) is bool(planted), metrics["per_symbol"]
    assert out.count("'s copy to ") == 3


def test_a_watchlist_of_files_that_cannot_be_learned_as_one_is_refused_before_training(tmp_path: Path) -> None:
    """From a review: disjoint dates trained each symbol against itself as its market, and one
    file under two names had every trade counted twice and the copy judged on the other's prices."""
    early, late = tmp_path / "early.csv", tmp_path / "late.csv"
    write_daily_csv(early, n=300, seed=1)
    frame = write_daily_csv(late, n=300, seed=2)
    frame["Date"] = pd.bdate_range("2023-06-01", periods=300).strftime("%Y-%m-%d")
    frame.to_csv(late, index=False)
    argv = ["train", "--timeframe", "1d", "--small", "--folds", "2"]
    rc, _, err = run([*argv, "--csv", f"AAA={early}", "--csv", f"BBB={late}"], tmp_path / "h1")
    assert rc != 0 and "share 0% of their times with the other symbols'" in err, err
    rc, _, err = run([*argv, "--csv", f"AAA={early}", "--csv", f"COPY={early}"], tmp_path / "h2")
    assert rc != 0 and "COPY's bars make the same moves as AAA's on 100%" in err, err
    assert not (tmp_path / "h1" / "models").exists() and not (tmp_path / "h2" / "models").exists()
