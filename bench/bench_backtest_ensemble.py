"""The ensemble backtest over a year of 5-minute bars (issue #7: <= 60 s, training excluded).

Uses the real CLIs in subprocesses, so the figures include what a user waits
for: Python start-up, the TensorFlow import, loading the model and the batch
prediction. A model is trained first if HOME has none (on the file's last
4,500 bars; its time is printed and excluded). The backtest runs a year of SPY
5-minute bars from ../shared/data; the model has seen part of it, so the run is
flagged IN-SAMPLE: this measures speed, not skill.
Run: .venv/bin/python bench/bench_backtest_ensemble.py [HOME]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT.parent / "shared" / "data" / "SPY_5m_2024-03-26_2025-04-02.csv"
TRAIN_BARS = 4_500


def _main_py(home: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(home), *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"main.py {args[0]} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    if not CSV.exists():
        raise SystemExit(f"{CSV} is absent: nothing to measure")
    home = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-ensemble-"))
    if not (home / "models" / "SPY_5m" / "metadata.json").exists():
        lines = CSV.read_text().splitlines()
        recent = home / "spy-recent.csv"
        home.mkdir(parents=True, exist_ok=True)
        recent.write_text("\n".join([lines[0], *lines[-TRAIN_BARS:]]) + "\n")
        seconds, _ = _main_py(home, "train", "--symbol", "SPY", "--timeframe", "5m", "--csv", str(recent))
        print(f"trained the ensemble on the last {TRAIN_BARS:,} bars in {seconds:.0f} s (excluded)")
    out = home / "backtest.json"
    wall, stdout = _main_py(home, "backtest", "--symbol", "SPY", "--csv", str(CSV), "--timeframe", "5m",
                            "--strategy", "ensemble", "--retrain-every", "0", "--start", "2024-04-01",
                            "--end", "2025-04-01", "--json", str(out))
    data = json.loads(out.read_text())
    print(f"bars: {data['bars']:,} SPY 5-minute bars, 2024-04-01 .. 2025-03-31, strategy ensemble (saved model)")
    print(f"engine {data['elapsed_seconds']:.2f} s, model {data['model_seconds']:.2f} s "
          f"(load and batch prediction), wall {wall:.1f} s including start-up and the TensorFlow import "
          f"(target <= 60 s); {data['metrics']['trades']} trades")
    for note in data["notes"]:
        print(f"  note: {note}")


if __name__ == "__main__":
    main()
