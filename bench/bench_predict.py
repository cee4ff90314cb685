"""Prediction and training speed, and the walk-forward metrics, on real PLTR bars.

Prints, for the default ensemble (LSTM 64/32 over 60 bars, 200-tree forest,
momentum):

* training time on PLTR daily (~1,400 bars) and on 60 sessions of 5-minute
  bars: the 5-fold walk-forward and the final fit separately (target for the
  fit: <= 2 min), with the out-of-sample metrics table next to the baselines;
* one live prediction (``EnsembleSignalModel.predict`` on a newly closed bar:
  features for the 400-bar tail, LSTM, forest, momentum, calibration), p50/p99
  after warm-up (target p99 <= 10 ms);
* batch prediction over 100k synthetic 5-minute bars (target <= 30 s).

Needs ../shared/data. Run: .venv/bin/python bench/bench_predict.py [--skip-daily] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AI_TRADER_TF_THREADS", "2")

import numpy as np
import pandas as pd
from loguru import logger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
FILES = {"1d": "PLTR_1d_2020-09-30_2026-03-31_merged.csv", "5m": "PLTR_5m_2025-12-23_2026-03-20.csv"}


def train_and_report(timeframe: str, models: Path) -> tuple[dict, Path]:
    from app.engine.ml.artifacts import save_bundle
    from app.engine.ml.dataset import build_dataset, load_csv_bars
    from app.engine.ml.train import TrainConfig, build_ensemble, fit_calibrator, walk_forward
    from app.engine.paths import model_dir
    from app.engine.settings import Settings

    frame = load_csv_bars(DATA / FILES[timeframe], timeframe)
    settings, config = Settings(timeframe=timeframe), TrainConfig(timeframe=timeframe)
    ds = build_dataset(frame, timeframe)
    t0 = time.perf_counter()
    report = walk_forward(ds, settings, config)
    t1 = time.perf_counter()
    ens = build_ensemble(settings, config, ds.columns, ds.horizon)
    ens.fit(ds.X, ds.y)
    t2 = time.perf_counter()
    ens.calibrator = fit_calibrator(report.oof, config)
    info = {"symbol": "PLTR", "timeframe": timeframe, "horizon": ds.horizon,
            "last_label": ds.index[np.flatnonzero(np.isfinite(ds.y))[-1]].isoformat()}
    folder = save_bundle(model_dir(models, "PLTR", timeframe), ens, info, report.to_dict())
    epochs = ens.components["lstm"].params()["epochs_run"] if "lstm" in ens.components else 0
    print(f"\n== PLTR {timeframe}: {len(ds)} bars, {ds.labelled} labelled, horizon {ds.horizon}")
    print(f"training: walk-forward (5 folds) {t1 - t0:.1f} s, final fit {t2 - t1:.1f} s "
          f"(LSTM {epochs} epochs), total {t2 - t0:.1f} s (target for the fit: <= 120 s)")
    for line in report.lines():
        print(line)
    return {"bars": len(ds), "walk_forward_s": t1 - t0, "final_fit_s": t2 - t1,
            "metrics": report.to_dict()}, folder


def live_latency(folder: Path, frame: pd.DataFrame, n: int = 400) -> dict:
    from app.engine.data.frame import frame_to_bars
    from app.engine.ml.artifacts import load_bundle
    from app.engine.ml.live import EnsembleSignalModel
    from app.engine.settings import Settings

    t0 = time.perf_counter()
    bundle = load_bundle(folder)
    load_s = time.perf_counter() - t0
    model = EnsembleSignalModel(bundle, Settings().ensemble_weights(), max_age=pd.Timedelta(days=10_000))
    bars = frame_to_bars(frame, "PLTR")
    closes = frame["close"].to_numpy()
    start = len(bars) - n - 50
    times = []
    gc.collect()
    for i in range(start, len(bars)):
        window = bars[max(0, i - 599): i + 1]  # what the bot keeps: 600 bars
        t = time.perf_counter()
        out = model.predict(closes[max(0, i - 599): i + 1], window)
        times.append(time.perf_counter() - t)
        assert out is not None and out.version.startswith("ensemble")
    ms = np.array(times[50:]) * 1e3  # the first 50 are warm-up
    print(f"\nlive prediction (one closed 5m bar -> ModelOutput), {len(ms)} bars after warm-up: "
          f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
          f"max {ms.max():.2f} ms (target p99 <= 10 ms); bundle load {load_s:.1f} s")
    if out is not None:
        print(f"  last output: {out.p_up:.3f} {out.reasons[0]}")
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "load_s": load_s}


def synthetic_5m(n: int, seed: int = 0) -> pd.DataFrame:
    from app.engine.clock import NY
    from app.engine.data.frame import make_frame

    rng = np.random.default_rng(seed)
    sessions = pd.bdate_range("2019-01-02", periods=n // 78 + 1)
    starts = sessions.tz_localize(NY) + pd.Timedelta(hours=9, minutes=30)
    idx = (starts.repeat(78) + pd.to_timedelta(np.tile(np.arange(78) * 5, len(starts)), unit="m"))[:n]
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = close * np.exp(rng.normal(0, 0.001, n))
    return make_frame(idx.tz_convert("UTC"), open_, np.maximum(open_, close) * 1.002,
                      np.minimum(open_, close) * 0.998, close, rng.integers(10_000, 500_000, n))


def batch(folder: Path, n: int = 100_000) -> dict:
    from app.engine.ml.artifacts import load_bundle
    from app.engine.ml.live import predict_frame
    from app.engine.settings import Settings

    frame = synthetic_5m(n)
    bundle = load_bundle(folder)
    t = time.perf_counter()
    preds = predict_frame(bundle, frame, Settings().ensemble_weights())
    secs = time.perf_counter() - t
    print(f"\nbatch prediction over {n:,} 5m bars: {secs:.1f} s ({len(preds):,} predictions, "
          f"{n / secs:,.0f} bars/s; target <= 30 s)")
    return {"bars": n, "seconds": secs}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--skip-daily", action="store_true")
    p.add_argument("--json", help="write every figure here")
    args = p.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: this benchmark needs the shared PLTR data")
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    results: dict = {"threads": os.environ["AI_TRADER_TF_THREADS"], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        if not args.skip_daily:
            results["daily"], _ = train_and_report("1d", models)
        results["5m"], folder = train_and_report("5m", models)
        from app.engine.ml.dataset import load_csv_bars

        results["live"] = live_latency(folder, load_csv_bars(DATA / FILES["5m"], "5m"))
        results["batch"] = batch(folder)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
