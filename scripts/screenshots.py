"""Render the README's pictures from the current code, offscreen.

    .venv/bin/python scripts/screenshots.py

Writes docs/main-window.png (a demo session after a few seconds at 3000x),
docs/settings-dialog.png and docs/backtest-report.png (the plots of an HTML
backtest report of sma_cross on generated bars).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main_window(home: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "main.py"), "--demo", "--data-dir", home, "--speed", "3000",
                    "--screenshot", str(DOCS / "main-window.png"), "--after", "15"], check=True)


def settings_dialog(app: object) -> None:
    from app.engine.settings import Settings
    from app.theme import apply_theme
    from app.widgets.settings_dialog import SettingsDialog

    apply_theme(app, "dark")  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        dlg = SettingsDialog(Settings(), Path(tmp) / ".env")
        dlg.resize(760, 1500)
        dlg.editors["risk_per_trade"].setText("0.5")  # type: ignore[attr-defined]  # show a refusal
        dlg.show()
        dlg.grab().save(str(DOCS / "settings-dialog.png"))


def backtest_report() -> None:
    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer
    from test_backtest import _walk

    from app.engine.backtest.config import BacktestConfig
    from app.engine.backtest.report import render_html
    from app.engine.backtest.runner import run_backtest

    bars = _walk(3000, seed=5)
    page = render_html(run_backtest(bars, BacktestConfig(symbol="DEMO", timeframe="1m", plain=True)), bars)
    (DOCS / "backtest-report.html").write_text(page)
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    img = QImage(900, 220 * len(svgs), QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    for i, svg in enumerate(svgs):
        QSvgRenderer(QByteArray(svg.encode())).render(painter, QRectF(0, 220 * i, 900, 220))
    painter.end()
    img.save(str(DOCS / "backtest-report.png"))


if __name__ == "__main__":
    from loguru import logger
    from PySide6.QtWidgets import QApplication

    logger.remove()
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        main_window(home)
    qapp = QApplication([])
    settings_dialog(qapp)
    backtest_report()
    print("wrote", ", ".join(p.name for p in sorted(DOCS.glob("*.png"))))
