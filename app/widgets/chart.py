"""The price chart: candlesticks, volume, overlays, signal and fill markers, stop lines, P(up).

x is the candle index (no gaps overnight); the axis labels map indices back to
times. Bars live in numpy buffers (:mod:`app.widgets.chart_series`) that grow
by appending, and the candle and volume items paint only the candles inside
the visible range, so a frame costs what is on screen, not the length of
history: 100k candles pan as smoothly as 100. The timeframe selector
aggregates the engine's bars for display only (5m -> 15m, 30m); markers and
P(up) stay attached to the engine's bars and are mapped onto the candles.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.engine.types import NY, Bar
from app.widgets.chart_items import CandleItem, VolumeItem
from app.widgets.chart_series import BarSeries, C, H, L, V, bollinger, display_index, ema, sma

KEEP_BARS = 20_000  # engine bars a running chart keeps (beyond the history it was opened with)
TRIM_SLACK = 2_000  # trimmed this many bars past the bound: a rebuild now and then, not on each bar

FOLLOW_CANDLES = 160  # how many candles the chart shows while following the newest
WARMUP = 200  # candles computed before the visible range so EMAs and bands have settled
FACTORS = (1, 3, 6)  # display timeframes as multiples of the engine's bar
MARKERS = {  # kind -> (symbol, colour)
    "pending": ("t1", "#fdd835"), "executed": ("t1", "#00e676"), "rejected": ("x", "#9e9e9e"),
    "buy_fill": ("t1", "#26a69a"), "sell_fill": ("t", "#ef5350"),
}
OVERLAYS = {  # name -> (label, tooltip, [(curve key, color, pen style)])
    "sma": ("SMA 10/20", "Simple moving averages of the close over 10 and 20 candles",
            [("sma10", "#ffb74d", Qt.PenStyle.SolidLine), ("sma20", "#ba68c8", Qt.PenStyle.SolidLine)]),
    "ema": ("EMA 12/26", "Exponential moving averages of the close over 12 and 26 candles",
            [("ema12", "#4dd0e1", Qt.PenStyle.SolidLine), ("ema26", "#f06292", Qt.PenStyle.SolidLine)]),
    "bb": ("Bollinger 20/2", "Bollinger bands: SMA 20 +/- 2 standard deviations",
           [("bb_mid", "#90a4ae", Qt.PenStyle.DotLine), ("bb_up", "#90a4ae", Qt.PenStyle.DashLine),
            ("bb_lo", "#90a4ae", Qt.PenStyle.DashLine)]),
}


class TimeAxis(pg.AxisItem):
    def __init__(self, chart: CandleChart) -> None:
        super().__init__(orientation="bottom")
        self._chart = chart

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            t = self._chart.time_at(int(round(v)))
            out.append(t.astimezone(NY).strftime("%m-%d %H:%M") if t else "")
        return out


class CandleChart(QWidget):
    """Candles with volume below and the ensemble's P(up) beneath that."""

    stopDragged = Signal(float, float)  # (the stop's price, where the user dropped it): to be re-validated

    def __init__(self, bar_minutes: int = 5, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chart")
        self.setToolTip("Price chart: drag to pan, wheel to zoom, double-click to follow, hover for OHLCV")
        self.bar_minutes = bar_minutes
        self.bars: list[Bar] = []
        self._keep = KEEP_BARS
        self.series = BarSeries(bar_minutes * 60)
        self.view = self.series.view()
        self.factor = 1
        self._forming: Bar | None = None
        self._markers: dict[str, tuple[int, float, str]] = {}  # key -> (engine bar index, price, kind)
        self._overlay_window: tuple[int, int] | None = None
        self._redrawing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._build_controls())
        self.glw = pg.GraphicsLayoutWidget()
        layout.addWidget(self.glw)
        self._build_plots()
        self.price.scene().sigMouseMoved.connect(self._on_mouse)
        self._follow = True
        self.price.vb.sigRangeChangedManually.connect(self._stop_following)
        self.price.vb.sigXRangeChanged.connect(self._on_range)
        self.price.scene().sigMouseClicked.connect(self._on_click)

    # ------------------------------------------------------------- building
    def _build_controls(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setContentsMargins(4, 0, 4, 0)
        self.symbol_label = QLabel("")  # which symbol of the watchlist this chart shows
        self.symbol_label.setObjectName("chartSymbol")
        self.symbol_label.setStyleSheet("font-weight: bold; font-size: 14px; padding-right: 8px;")
        row.addWidget(self.symbol_label)
        self.readout = QLabel("")
        self.readout.setObjectName("chartReadout")
        row.addWidget(self.readout, 1)
        self.timeframe = QComboBox()
        self.timeframe.setObjectName("chartTimeframe")
        self.timeframe.setToolTip("Candle size on the chart (display only: the engine still trades "
                                  f"{self.bar_minutes}-minute bars)")
        for f in FACTORS:
            self.timeframe.addItem(_label(self.bar_minutes * f), f)
        self.timeframe.currentIndexChanged.connect(lambda i: self.set_factor(int(self.timeframe.itemData(i))))
        row.addWidget(self.timeframe)
        self.overlay_boxes: dict[str, QCheckBox] = {}
        for name, (label, tip, _) in OVERLAYS.items():
            box = QCheckBox(label)
            box.setObjectName(f"overlay_{name}")
            box.setToolTip(tip)
            box.setChecked(name == "sma")
            box.toggled.connect(lambda on, name=name: self.show_overlay(name, on))
            self.overlay_boxes[name] = box
            row.addWidget(box)
        return row

    def _build_plots(self) -> None:
        self.price = self.glw.addPlot(row=0, col=0, axisItems={"bottom": TimeAxis(self)})
        self.volume = self.glw.addPlot(row=1, col=0)
        self.pup = self.glw.addPlot(row=2, col=0)
        self.glw.ci.layout.setRowStretchFactor(0, 5)
        for plot in (self.volume, self.pup):
            plot.setXLink(self.price)
            plot.hideAxis("bottom")
            plot.setMaximumHeight(110)
        for plot in (self.price, self.volume, self.pup):
            plot.getAxis("left").setWidth(64)  # aligned panes: same x pixels for the same bar
        grid = pg.GridItem(textPen=None)  # the axes' own grid costs ~30 ms a frame in software rendering
        grid.setPen(pg.mkPen("#2b3038"))
        self.price.addItem(grid, ignoreBounds=True)
        self.volume.setMouseEnabled(y=False)
        self.pup.setYRange(0, 1)
        self.pup.setLabel("left", "P(up)")
        for level, color in ((0.8, "#ef6c00"), (0.7, "#fdd835"), (0.3, "#fdd835"), (0.2, "#ef6c00")):
            self.pup.addItem(pg.InfiniteLine(level, angle=0, pen=pg.mkPen(color, style=Qt.PenStyle.DashLine)))
        self.candles = CandleItem()
        self.price.addItem(self.candles)
        self.vol_bars = VolumeItem()
        self.volume.addItem(self.vol_bars)
        self.pup_curve = self.pup.plot([], [], pen=pg.mkPen("#42a5f5", width=2))
        self.pup_curve.setClipToView(True)
        self.pup_x: list[int] = []
        self.pup_y: list[float] = []
        self.curves: dict[str, pg.PlotDataItem] = {}
        for name, (_, _, lines) in OVERLAYS.items():
            for key, color, style in lines:
                curve = self.price.plot([], [], pen=pg.mkPen(color, width=1, style=style))
                curve.setClipToView(True)
                curve.setDownsampling(auto=True, method="peak")
                curve.setVisible(name == "sma")
                self.curves[key] = curve
        # One scatter item per marker kind: a uniform style lets pyqtgraph skip per-spot
        # symbol rendering (per-spot styles cost ~6 ms per update at 500 markers).
        self.marker_items: dict[str, pg.ScatterPlotItem] = {}
        for kind, (symbol, color) in MARKERS.items():
            item = pg.ScatterPlotItem(size=13, symbol=symbol, brush=pg.mkBrush(color), pen=None)
            self.price.addItem(item)
            self.marker_items[kind] = item
        self._stops: list[tuple[float, bool]] = []
        self.stop_lines: list[pg.InfiniteLine] = []
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", width=1))
        self.price.addItem(self.vline, ignoreBounds=True)
        # the full crosshair: the horizontal line says the price under the mouse, at the right edge
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#888", width=1),
                                     label="{value:.2f}", labelOpts={"position": 0.98, "color": "#ddd",
                                                                     "fill": pg.mkBrush(40, 44, 52, 220)})
        self.price.addItem(self.hline, ignoreBounds=True)
        self.hline.hide()
        # the last price, tagged at the right edge: where the market is, whatever is scrolled to
        self.last_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#42a5f5", width=1,
                                                                              style=Qt.PenStyle.DotLine),
                                         label="{value:.2f}", labelOpts={"position": 0.98, "color": "#fff",
                                                                         "fill": pg.mkBrush("#1565c0")})
        self.price.addItem(self.last_line, ignoreBounds=True)
        self.last_line.hide()

    def _stop_following(self, *_: object) -> None:
        self._follow = False

    def _on_click(self, event: object) -> None:
        if getattr(event, "double", lambda: False)():
            self._follow = True  # double-click: follow the newest bar again
            self._redraw()

    # --------------------------------------------------------------- data
    def time_at(self, i: int) -> datetime | None:
        if 0 <= i < len(self.view):
            return datetime.fromtimestamp(int(self.view.times[i]), tz=UTC)
        return None

    def set_history(self, bars: tuple[Bar, ...] | list[Bar]) -> None:
        self.bars = list(bars)
        self._keep = max(KEEP_BARS, len(self.bars))  # a long history given is shown whole; what follows is bounded
        self.series.reset(self.bars)
        self._forming = None
        self._redraw()

    def add_bars(self, bars: tuple[Bar, ...]) -> None:
        self.bars.extend(bars)
        if len(self.bars) > self._keep + TRIM_SLACK:
            self._trim()
        else:
            self.series.append(bars)  # append to the cached arrays: no rebuild from Bar objects
        self._forming = None
        self._redraw()

    def _trim(self) -> None:
        """A session left running for days: the oldest bars go (every TRIM_SLACK bars, not on
        each), with the P(up) points and markers on them; the rest keep their times."""
        drop = len(self.bars) - self._keep
        n = len(self.series)
        preds = [(self.bars[x].time, y) for x, y in zip(self.pup_x, self.pup_y, strict=True) if drop <= x < n]
        marks = [(key, self.bars[i].time, price, kind) for key, (i, price, kind) in self._markers.items()
                 if drop <= i < n]
        self.bars = self.bars[drop:]
        self.series.reset(self.bars)
        self.set_annotations(preds, marks)

    def set_forming(self, bar: Bar) -> None:
        if self.bars and bar.time <= self.bars[-1].time:
            return
        self._forming = bar
        self._redraw()

    def set_factor(self, factor: int) -> None:
        """Show candles of ``factor`` engine bars; keeps the left edge on the same time."""
        if factor == self.factor:
            return
        x0, x1 = self.price.vb.viewRange()[0]
        left = int(self.view.first[min(max(int(x0), 0), len(self.view) - 1)]) if len(self.view) else 0
        old, self.factor = self.factor, factor
        self.timeframe.setCurrentIndex(FACTORS.index(factor) if factor in FACTORS else 0)
        self._redraw()
        self._render_markers()
        self._render_pup()
        if not self._follow and len(self.view):
            i = int(display_index(self.view, left))
            self.price.setXRange(i, i + max((x1 - x0) * old / factor, 10), padding=0)

    def show_overlay(self, name: str, on: bool) -> None:
        for key, _, _ in OVERLAYS[name][2]:
            self.curves[key].setVisible(on)
        if self.overlay_boxes[name].isChecked() != on:
            self.overlay_boxes[name].setChecked(on)
        self._update_overlays(force=True)

    def add_prediction(self, time: datetime, p_up: float) -> None:
        idx = self._index_of(time)
        if idx is not None and idx < len(self.series):
            self.pup_x.append(idx)
            self.pup_y.append(p_up)
            del self.pup_x[:-5000], self.pup_y[:-5000]
            self._render_pup()

    def set_annotations(self, predictions: list[tuple[datetime, float]],
                        markers: list[tuple[str, datetime, float, str]]) -> None:
        """Replace the P(up) line and the markers at once (another symbol is charted):
        ``markers`` as (key, time, price, kind), placed on the bars now shown."""
        self.pup_x, self.pup_y = [], []
        n = len(self.series)
        for time, p_up in predictions[-5000:]:
            idx = self._index_of(time)
            if idx is not None and idx < n:
                self.pup_x.append(idx)
                self.pup_y.append(p_up)
        self._markers = {}
        for key, time, price, kind in markers[-500:]:
            idx = self._index_of(time)
            self._markers[key] = (n - 1 if idx is None else idx, price, kind)
        self._render_pup()
        self._render_markers()

    def add_signal_marker(self, time: datetime, price: float, kind: str, key: str = "") -> None:
        """kind: pending, executed, rejected, buy_fill, sell_fill. A marker with the
        same ``key`` (a signal id) is replaced, so a pending signal turns grey
        when it expires."""
        idx = self._index_of(time)
        if idx is None:
            idx = len(self.series) - 1
        self._markers[key or f"{idx}-{kind}-{price}"] = (idx, price, kind)
        while len(self._markers) > 500:
            self._markers.pop(next(iter(self._markers)))
        self._render_markers()

    def set_stops(self, stops: list[tuple[float, bool]]) -> None:
        if stops == self._stops:  # called on every portfolio update: rebuild only on a change
            return
        self._stops = list(stops)
        for line in self.stop_lines:
            self.price.removeItem(line)
        self.stop_lines = []
        for price, trailing in stops:
            color = "#ffa726" if trailing else "#ef5350"
            line = pg.InfiniteLine(price, angle=0, pen=pg.mkPen(color, style=Qt.PenStyle.DashLine),
                                   movable=True, hoverPen=pg.mkPen(color, width=3),
                                   label=("trailing " if trailing else "stop ") + f"{price:.2f}",
                                   labelOpts={"color": color, "position": 0.12})  # clear of the price axis
            line.setToolTip("Drag to move this stop: it is checked (below the market; looser than the "
                            "initial stop only when you confirm) and the broker's stop follows")
            line.sigPositionChangeFinished.connect(lambda ln, was=price: self._stop_dropped(ln, was))
            self.price.addItem(line)
            self.stop_lines.append(line)
        if stops and self._follow:
            self._redraw()  # the view takes the new stop in

    def set_last_price(self, price: float) -> None:
        """The last-price tag at ``price`` (the latest trade: the forming bar's close, else the last bar's)."""
        if np.isfinite(price) and price > 0:
            self.last_line.show()  # first: a hidden line's label does not follow its value
            self.last_line.setPos(price)

    def _stop_dropped(self, line: pg.InfiniteLine, was: float) -> None:
        """The line goes back where the stop is; it moves when the engine has moved the stop."""
        dropped = float(line.value())
        line.blockSignals(True)
        line.setValue(was)
        line.blockSignals(False)
        if abs(dropped - was) >= 0.005:
            self.stopDragged.emit(was, round(dropped, 2))

    # ------------------------------------------------------------ drawing
    def _index_of(self, time: datetime) -> int | None:
        """The engine bar holding ``time``; len(series) when it is past the last closed bar."""
        n = len(self.series)
        if not n:
            return None
        t = int(time.timestamp())
        i = int(np.searchsorted(self.series.base.times[:n], t, side="right")) - 1
        if i < 0:
            return None
        return n if i == n - 1 and t >= self.series.base.times[n - 1] + self.series.bar_seconds else i

    def _to_view(self, base_idx: list[int]) -> np.ndarray:
        arr = np.asarray(base_idx, dtype=np.int64)
        return arr if self.factor == 1 else display_index(self.view, arr)

    def _render_markers(self) -> None:
        for kind, item in self.marker_items.items():
            marks = [(i, p) for i, p, k in self._markers.values() if k == kind]
            item.setData(x=self._to_view([i for i, _ in marks]), y=np.array([p for _, p in marks], dtype=float))

    def _render_pup(self) -> None:
        self.pup_curve.setData(self._to_view(self.pup_x), np.asarray(self.pup_y, dtype=float))

    def _redraw(self) -> None:
        self.view = self.series.view(self.factor, self._forming)
        d = self.view.ohlcv
        if not len(d):
            return
        self.candles.set_data(d)
        self.vol_bars.set_data(d)
        self._redrawing = True
        try:
            if self._follow:
                n = len(d)
                lo = max(0, n - FOLLOW_CANDLES)
                self.price.setXRange(lo, n + 7, padding=0)  # room at the right for the last-price tag
                low, high = float(np.nanmin(d[lo:, L])), float(np.nanmax(d[lo:, H]))
                stops = [p for p, _ in self._stops if p > 0]  # a position's stops stay in view
                self.price.setYRange(min([low, *stops]), max([high, *stops]), padding=0.05)
            self.set_last_price(float(d[-1, C]))
            self._fit_volume()
        finally:
            self._redrawing = False
        self._update_overlays(force=True)

    def _on_range(self, *_: object) -> None:
        if not self._redrawing:
            self._fit_volume()
            self._update_overlays()

    def _fit_volume(self) -> None:
        x0, x1 = self.price.vb.viewRange()[0]
        i0, i1 = max(0, int(x0)), min(len(self.view), int(x1) + 1)
        if i1 > i0:
            self.volume.setYRange(0, float(np.nanmax(self.view.ohlcv[i0:i1, V])) * 1.1 or 1.0, padding=0)

    def _update_overlays(self, force: bool = False) -> None:
        """Recompute the visible overlays over the view plus a margin, only when
        the view leaves what was computed (or the data changed)."""
        if not any(box.isChecked() for box in self.overlay_boxes.values()):
            return
        n = len(self.view)
        x0, x1 = self.price.vb.viewRange()[0]
        need0, need1 = max(0, int(x0) - 1), min(n, int(x1) + 2)
        win = self._overlay_window
        if not force and win and (win[0] == 0 or win[0] + WARMUP <= need0) and win[1] >= min(need1, n):
            return
        margin = max(int(x1 - x0), 50)
        c0, c1 = max(0, need0 - margin - WARMUP), min(n, need1 + margin)
        self._overlay_window = (c0, c1)
        close = self.view.ohlcv[c0:c1, C]
        x = np.arange(c0, c1)
        values: dict[str, np.ndarray] = {}
        if self.overlay_boxes["sma"].isChecked():
            values.update(sma10=sma(close, 10), sma20=sma(close, 20))
        if self.overlay_boxes["ema"].isChecked():
            values.update(ema12=ema(close, 12), ema26=ema(close, 26))
        if self.overlay_boxes["bb"].isChecked():
            values["bb_mid"], values["bb_up"], values["bb_lo"] = bollinger(close, 20, 2.0)
        skip = 0 if c0 == 0 else WARMUP  # hide the warm-up: it has not settled yet
        for key, y in values.items():
            self.curves[key].setData(x[skip:], y[skip:], connect="finite")

    def _on_mouse(self, pos: QPointF) -> None:
        if not self.price.sceneBoundingRect().contains(pos):
            return
        point = self.price.vb.mapSceneToView(pos)
        i = int(round(point.x()))
        self.vline.setPos(i)
        self.hline.show()
        self.hline.setPos(point.y())
        t = self.time_at(i)
        if t is not None and self.bars:
            o, h, lo, c, v = self.view.ohlcv[i].tolist()
            self.readout.setText(
                f"{self.bars[-1].symbol} {_label(self.bar_minutes * self.factor)}  "
                f"{t.astimezone(NY):%Y-%m-%d %H:%M} ET   O {o:.2f}  H {h:.2f}  L {lo:.2f}  C {c:.2f}  V {v:,.0f}")


def _label(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


__all__ = ["CandleChart", "CandleItem", "TimeAxis", "VolumeItem"]
