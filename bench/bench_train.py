"""Training the default watchlist model: 60 sessions of 5-minute bars for 5 symbols.

Runs the same path as ``python main.py train --timeframe 5m --csv PLTR=... --csv AAPL=...``
(the product's full ensemble: LSTM 64/32 over 60 bars, 200-tree forest, gradient boosting,
momentum; a 5-fold walk-forward with purge and embargo; the final fit; the verdicts; the
bundles saved) and prints the wall time against the target of 3 minutes, and the verdict.

The symbols: PLTR, AAPL, MSFT and SPY from ../shared/data (2025-12-23 .. 2026-03-20, real
bars), and a fifth, DEMO, from the app's simulated market over the same sessions (the shared
data holds four real 5-minute files for that window).

Needs ../shared/data. Run: .venv/bin/python bench/bench_train.py [--folds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AI_TRADER_TF_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
FILES = {"PLTR": DATA / "PLTR_5m_2025-12-23_2026-03-20.csv",
         **{s: DATA / "intraday" / f"{s}_5m_2025-12-23_2026-03-20.csv" for s in ("AAPL", "MSFT", "SPY")}}
TARGET_S = 180.0


def demo_csv(folder: Path) -> Path:
    """The simulated market's DEMO over the sessions of the real files."""
    from app.engine.clock import MarketCalendar
    from app.engine.data.frame import bars_to_frame
    from app.engine.ml.dataset import load_csv_bars
    from app.engine.simmarket import watchlist_markets

    real = load_csv_bars(FILES["PLTR"], "5m")
    calendar = MarketCalendar()
    days = sorted({t.tz_convert("America/New_York").date() for t in real.index})
    sessions = [s for d in days if (s := calendar.session(d)) is not None]
    market = watchlist_markets(("DEMO", "OTHER"), 7, calendar)[0]
    frame = bars_to_frame(market.history(sessions))
    path = folder / "DEMO_5m.csv"
    frame.rename_axis("timestamp").to_csv(path)
    return path


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if not all(p.exists() for p in FILES.values()):
        print(f"skipped: {DATA} lacks the 5-minute files")
        return 0
    from app.cli.ml import add_ml_parsers, run_ml_command
    from app.engine.paths import AppPaths

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        specs = [f"{s}={p}" for s, p in FILES.items()] + [f"DEMO={demo_csv(folder)}"]
        argv = ["train", "--timeframe", "5m", "--folds", str(args.folds), "--json", str(folder / "m.json")]
        for spec in specs:
            argv += ["--csv", spec]
        cli = argparse.ArgumentParser()
        add_ml_parsers(cli.add_subparsers(dest="command"))
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        rc = run_ml_command(cli.parse_args(argv), AppPaths(folder / "home"), stdout=out, stderr=err,
                            probe_yfinance=lambda: False)
        wall = time.perf_counter() - started
        if rc:
            print(err.getvalue()[-2000:])
            return rc
        metrics = json.loads((folder / "m.json").read_text())
    oos, cs = metrics["out_of_sample"], metrics["cross_sectional"]
    print(out.getvalue())
    print(f"symbols: {', '.join(metrics['info']['symbols'])}; bars: {metrics['info']['bars']:,}; "
          f"folds: {args.folds}")
    print(f"training wall time: {wall:.1f} s (target <= {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'NOT met'})")
    print(f"pooled: AUC {oos['auc']} {oos['auc_ci']}, rank IC {oos['rank_ic']} {oos['rank_ic_ci']}, "
          f"trades {oos['trades']}, expectancy {oos['expectancy_bps']} bps vs rule {oos['rules_expectancy_bps']} "
          f"bps; cross-sectional rank IC {cs['rank_ic']} {cs['rank_ic_ci']}; edge: {metrics['edge']} "
          f"({metrics['edge_reason']})")
    for s, v in metrics["per_symbol"].items():
        o = v["out_of_sample"]
        print(f"  {s}: AUC {o['auc']} {o['auc_ci']}, rank IC {o['rank_ic']} {o['rank_ic_ci']}, ECE {r3(o['ece'])} "
              f"(constant {r3(o['ece_constant_baseline'])}), trades {o['trades']}, rule {o['rules_expectancy_bps']} "
              f"bps, edge {v['edge']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_s": round(wall, 1), "target_s": TARGET_S, **metrics},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
