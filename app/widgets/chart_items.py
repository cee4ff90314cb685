"""The chart's graphics items: candles and volume that paint only what is on screen.

A frame's cost follows the visible range, not the length of history: the
items slice their numpy arrays to the view, and when more candles are in view
than the plot has pixels for, merge them into blocks (open of the first,
highest high, lowest low, close of the last), so zooming out over 100k
candles stays as cheap as 160 and no spike disappears.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from app.widgets.chart_series import C, H, L, O, V

UP = QColor("#26a69a")
DOWN = QColor("#ef5350")


def _visible(item: pg.GraphicsObject, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """x positions, OHLCV rows and body width of the candles to paint.

    Only the visible slice is touched. When there are more candles than half
    the plot's pixels, blocks of ``step`` candles are merged (open of the
    first, highest high, lowest low, close of the last, peak volume), so a
    zoomed-out frame costs what the screen can show and no spike is lost."""
    n, vb = len(data), item.getViewBox()
    x0, x1 = (0, n) if vb is None else vb.viewRange()[0]
    i0, i1 = max(0, int(x0) - 1), min(n, int(x1) + 2)
    if i1 <= i0:
        return np.empty(0), np.empty((0, 5)), 0.7
    step = max(1, -(-(i1 - i0) // max(int(vb.width() if vb else 1000) // 2, 50)))
    if step == 1:
        return np.arange(i0, i1), data[i0:i1], 0.7
    i0 -= i0 % step  # blocks on fixed boundaries: candles do not shimmer while panning
    d = data[i0:i1]
    cut = np.arange(0, len(d), step)
    out = np.empty((len(cut), 5))
    out[:, O], out[:, C] = d[cut, O], d[np.r_[cut[1:] - 1, len(d) - 1], C]
    out[:, H], out[:, L] = np.maximum.reduceat(d[:, H], cut), np.minimum.reduceat(d[:, L], cut)
    out[:, V] = np.maximum.reduceat(d[:, V], cut)
    return i0 + cut + (step - 1) / 2, out, 0.7 * step


class CandleItem(pg.GraphicsObject):
    """Candles for an (n, 5) OHLCV array; paints the visible slice only."""

    def __init__(self) -> None:
        super().__init__()
        self.data = np.empty((0, 5))
        self._bounds = QRectF()

    def set_data(self, ohlcv: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.data = ohlcv
        if len(ohlcv):  # cached: boundingRect is asked many times per frame
            lo, hi = float(np.nanmin(ohlcv[:, L])), float(np.nanmax(ohlcv[:, H]))
            self._bounds = QRectF(-1, lo, len(ohlcv) + 1, max(hi - lo, 1e-9))
        else:
            self._bounds = QRectF()
        self.update()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, p: QPainter, *args: object) -> None:
        xs, d, width = _visible(self, self.data)
        up = d[:, C] >= d[:, O]
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for color, sel in ((UP, up), (DOWN, ~up)):
            x, r = xs[sel].tolist(), d[sel]
            if not x:
                continue
            pen = QPen(color)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.setBrush(color)
            p.drawLines([QLineF(i, lo, i, hi) for i, lo, hi in zip(x, r[:, L].tolist(), r[:, H].tolist(), strict=True)])
            p.drawRects([QRectF(i - width / 2, o, width, (c - o) or 1e-6)
                         for i, o, c in zip(x, r[:, O].tolist(), r[:, C].tolist(), strict=True)])


class VolumeItem(CandleItem):
    """Volume bars, coloured like their candle; same visible-slice painting."""

    def set_data(self, ohlcv: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.data = ohlcv
        top = float(np.nanmax(ohlcv[:, V])) if len(ohlcv) else 0.0
        self._bounds = QRectF(-1, 0, len(ohlcv) + 1, max(top, 1e-9))
        self.update()

    def paint(self, p: QPainter, *args: object) -> None:
        xs, d, width = _visible(self, self.data)
        up = d[:, C] >= d[:, O]
        p.setPen(Qt.PenStyle.NoPen)
        for color, sel in ((UP, up), (DOWN, ~up)):
            c = QColor(color)
            c.setAlpha(150)
            p.setBrush(c)
            p.drawRects([QRectF(i - width / 2, 0, width, v)
                         for i, v in zip(xs[sel].tolist(), d[sel, V].tolist(), strict=True)])
