"""The price chart: candlesticks, volume, signal and fill markers, stop lines, P(up).

x is the bar index (no gaps overnight); the axis labels map indices back to
times. The candle item paints only the bars inside the visible range, so the
cost of a frame depends on what is on screen, not on the length of history.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.engine.clock import NY
from app.engine.types import Bar

UP = QColor("#26a69a")
DOWN = QColor("#ef5350")
MAX_DRAWN = 4000  # beyond this many visible bars, draw a decimated range


class CandleItem(pg.GraphicsObject):
    def __init__(self) -> None:
        super().__init__()
        self.o = self.h = self.l = self.c = np.empty(0)

    def set_data(self, o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.o, self.h, self.l, self.c = o, h, l, c
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        if len(self.c) == 0:
            return QRectF()
        lo, hi = float(np.nanmin(self.l)), float(np.nanmax(self.h))
        return QRectF(-1, lo, len(self.c) + 1, max(hi - lo, 1e-9))

    def paint(self, p: QPainter, *args: object) -> None:
        n = len(self.c)
        if n == 0:
            return
        vb = self.getViewBox()
        x0, x1 = (0, n) if vb is None else vb.viewRange()[0]
        i0, i1 = max(0, int(x0) - 1), min(n, int(x1) + 2)
        step = max(1, (i1 - i0) // MAX_DRAWN)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for color, mask in ((UP, self.c >= self.o), (DOWN, self.c < self.o)):
            idx = [i for i in range(i0, i1, step) if mask[i]]
            if not idx:
                continue
            pen = QPen(color)
            pen.setCosmetic(True)
            p.setPen(pen)
            p.setBrush(color)
            p.drawLines([QLineF(i, self.l[i], i, self.h[i]) for i in idx])
            p.drawRects([QRectF(i - 0.35, self.o[i], 0.7, self.c[i] - self.o[i] or 1e-6) for i in idx])


class TimeAxis(pg.AxisItem):
    def __init__(self, chart: CandleChart) -> None:
        super().__init__(orientation="bottom")
        self._chart = chart

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        out = []
        for v in values:
            i = int(round(v))
            t = self._chart.time_at(i)
            out.append(t.astimezone(NY).strftime("%m-%d %H:%M") if t else "")
        return out


class CandleChart(QWidget):
    """Candles with volume below and the ensemble's P(up) beneath that."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chart")
        self.setToolTip("Price chart: drag to pan, wheel to zoom, hover for OHLCV")
        self.bars: list[Bar] = []
        self._forming: Bar | None = None
        self._markers: dict[str, tuple[int, float, str]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.readout = QLabel("")
        self.readout.setObjectName("chartReadout")
        layout.addWidget(self.readout)
        self.glw = pg.GraphicsLayoutWidget()
        layout.addWidget(self.glw)
        self.price = self.glw.addPlot(row=0, col=0, axisItems={"bottom": TimeAxis(self)})
        self.volume = self.glw.addPlot(row=1, col=0)
        self.pup = self.glw.addPlot(row=2, col=0)
        self.glw.ci.layout.setRowStretchFactor(0, 5)
        self.glw.ci.layout.setRowStretchFactor(1, 1)
        self.glw.ci.layout.setRowStretchFactor(2, 1)
        for plot in (self.volume, self.pup):
            plot.setXLink(self.price)
            plot.hideAxis("bottom")
        for plot in (self.price, self.volume, self.pup):
            plot.getAxis("left").setWidth(64)  # aligned panes: same x pixels for the same bar
        self.price.showGrid(x=True, y=True, alpha=0.15)
        self.volume.setMaximumHeight(110)
        self.pup.setMaximumHeight(110)
        self.pup.setYRange(0, 1)
        self.pup.setLabel("left", "P(up)")
        for level, color in ((0.8, "#ef6c00"), (0.7, "#fdd835"), (0.3, "#fdd835"), (0.2, "#ef6c00")):
            self.pup.addItem(pg.InfiniteLine(level, angle=0, pen=pg.mkPen(color, style=Qt.PenStyle.DashLine)))
        self.candles = CandleItem()
        self.price.addItem(self.candles)
        self.vol_bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush="#5c6bc0")
        self.volume.addItem(self.vol_bars)
        self.pup_curve = self.pup.plot([], [], pen=pg.mkPen("#42a5f5", width=2))
        self.pup_curve.setClipToView(True)
        self.pup_x: list[int] = []
        self.pup_y: list[float] = []
        self.sma_fast = self.price.plot([], [], pen=pg.mkPen("#ffb74d", width=1))
        self.sma_slow = self.price.plot([], [], pen=pg.mkPen("#ba68c8", width=1))
        self.signal_marks = pg.ScatterPlotItem(size=13)
        self.price.addItem(self.signal_marks)
        self.stop_lines: list[pg.InfiniteLine] = []
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", width=1))
        self.price.addItem(self.vline, ignoreBounds=True)
        self.price.scene().sigMouseMoved.connect(self._on_mouse)
        self._follow = True
        self.price.vb.sigRangeChangedManually.connect(self._stop_following)
        self.price.scene().sigMouseClicked.connect(self._on_click)

    def _stop_following(self, *_: object) -> None:
        self._follow = False

    def _on_click(self, event: object) -> None:
        if getattr(event, "double", lambda: False)():
            self._follow = True  # double-click: follow the newest bar again
            self._redraw()

    # --------------------------------------------------------------- data
    def time_at(self, i: int) -> datetime | None:
        return self.bars[i].time if 0 <= i < len(self.bars) else None

    def set_history(self, bars: tuple[Bar, ...] | list[Bar]) -> None:
        self.bars = list(bars)
        self._redraw()

    def add_bars(self, bars: tuple[Bar, ...]) -> None:
        self.bars.extend(bars)
        self._forming = None
        self._redraw()

    def set_forming(self, bar: Bar) -> None:
        if self.bars and bar.time <= self.bars[-1].time:
            return
        self._forming = bar
        self._redraw()

    def add_prediction(self, time: datetime, p_up: float) -> None:
        idx = self._index_of(time)
        if idx is not None:
            self.pup_x.append(idx)
            self.pup_y.append(p_up)
            self.pup_curve.setData(self.pup_x[-5000:], self.pup_y[-5000:])

    def add_signal_marker(self, time: datetime, price: float, kind: str, key: str = "") -> None:
        """kind: pending, executed, rejected, buy_fill, sell_fill. A marker with the
        same ``key`` (a signal id) is replaced, so a pending signal turns grey
        when it expires."""
        idx = self._index_of(time)
        if idx is None:
            idx = len(self.bars) - 1
        self._markers[key or f"{idx}-{kind}-{price}"] = (idx, price, kind)
        while len(self._markers) > 500:
            self._markers.pop(next(iter(self._markers)))
        styles = {
            "pending": ("t1", "#fdd835"), "executed": ("t1", "#00e676"), "rejected": ("x", "#9e9e9e"),
            "buy_fill": ("t1", "#26a69a"), "sell_fill": ("t", "#ef5350"),
        }
        spots = [{"pos": (i, p), "symbol": styles.get(k, ("o", "#fff"))[0],
                  "brush": styles.get(k, ("o", "#fff"))[1], "pen": None} for i, p, k in self._markers.values()]
        self.signal_marks.setData(spots)

    def set_stops(self, stops: list[tuple[float, bool]]) -> None:
        for line in self.stop_lines:
            self.price.removeItem(line)
        self.stop_lines = []
        for price, trailing in stops:
            color = "#ffa726" if trailing else "#ef5350"
            line = pg.InfiniteLine(price, angle=0, pen=pg.mkPen(color, style=Qt.PenStyle.DashLine),
                                   label=("trailing " if trailing else "stop ") + f"{price:.2f}",
                                   labelOpts={"color": color, "position": 0.05})
            self.price.addItem(line)
            self.stop_lines.append(line)

    def _index_of(self, time: datetime) -> int | None:
        for i in range(len(self.bars) - 1, max(-1, len(self.bars) - 400), -1):
            if self.bars[i].time == time:
                return i
        return None

    def _redraw(self) -> None:
        bars = self.bars + ([self._forming] if self._forming else [])
        if not bars:
            return
        arr = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars[-20000:]], dtype=float)
        offset = len(bars) - len(arr)
        if offset:
            arr = np.vstack([np.full((offset, 5), np.nan), arr])
        self.candles.set_data(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
        x = np.arange(len(arr))
        self.vol_bars.setOpts(x=x[-2000:], height=np.nan_to_num(arr[-2000:, 4]), width=0.7)
        closes = arr[:, 3]
        for curve, n in ((self.sma_fast, 10), (self.sma_slow, 20)):
            if len(closes) >= n:
                sma = np.convolve(closes[-3000:], np.ones(n) / n, mode="valid")
                curve.setData(x[-len(sma):], sma)
        if self._follow:
            n = len(arr)
            lo = max(0, n - 160)
            self.price.setXRange(lo, n + 2, padding=0)
            visible = arr[lo:]
            self.price.setYRange(float(np.nanmin(visible[:, 2])), float(np.nanmax(visible[:, 1])), padding=0.05)
            self.volume.setYRange(0, float(np.nanmax(visible[:, 4])) * 1.1 or 1.0, padding=0)

    def _on_mouse(self, pos: QPointF) -> None:
        if not self.price.sceneBoundingRect().contains(pos):
            return
        x = self.price.vb.mapSceneToView(pos).x()
        i = int(round(x))
        self.vline.setPos(i)
        if 0 <= i < len(self.bars):
            b = self.bars[i]
            self.readout.setText(
                f"{b.symbol}  {b.time.astimezone(NY):%Y-%m-%d %H:%M} ET   O {b.open:.2f}  H {b.high:.2f}"
                f"  L {b.low:.2f}  C {b.close:.2f}  V {b.volume:,.0f}")

