"""A self-contained HTML report: metrics, equity and drawdown plots, price with
trades, and the trade list. Plots are inline SVG, so the file needs nothing
else to open, keep or share."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from app.engine.backtest.runner import BacktestResult
from app.engine.types import Bar

W, H, PAD = 900, 220, 40

_PCT = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure", "buy_and_hold_return"}


def _polyline(y: np.ndarray, color: str, lo: float, hi: float) -> str:
    n = len(y)
    if n < 2:
        return ""
    step = max(1, n // 1500)  # at most ~1500 points per line
    ys = y[::step]
    xs = np.linspace(PAD, W - 10, len(ys))
    span = (hi - lo) or 1.0
    pts = " ".join(f"{x:.1f},{H - 20 - (v - lo) / span * (H - 40):.1f}" for x, v in zip(xs, ys, strict=True))
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'


def _svg(title: str, body: str, lo: float, hi: float, fmt: str = "{:,.0f}") -> str:
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {W} {H}" width="100%" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="{W}" height="{H}" fill="#1e2127"/>'
            f'<text x="4" y="16" fill="#aaa" font-size="11">{fmt.format(hi)}</text>'
            f'<text x="4" y="{H - 22}" fill="#aaa" font-size="11">{fmt.format(lo)}</text>'
            f"{body}</svg></figure>")


def _fmt(key: str, v: object) -> str:
    if isinstance(v, float):
        if not np.isfinite(v):
            return "n/a"
        return f"{v:.2%}" if key in _PCT else f"{v:,.3f}"
    return html.escape(str(v))


def render_html(result: BacktestResult, bars: Sequence[Bar]) -> str:
    cfg = result.config
    eq = result.equity
    dd = eq / np.maximum.accumulate(eq) - 1.0
    closes = np.array([b.close for b in bars])
    index = {b.time: i for i, b in enumerate(bars)}
    marks = []
    lo_p, hi_p = float(closes.min()), float(closes.max())
    n = len(closes)
    for t in result.trades:
        for when, price, color in ((t.entry_time, t.entry_price, "#26a69a"), (t.exit_time, t.exit_price, "#ef5350")):
            i = index.get(when)
            if i is None:
                continue
            x = PAD + i / max(n - 1, 1) * (W - 10 - PAD)
            y = H - 20 - (price - lo_p) / ((hi_p - lo_p) or 1.0) * (H - 40)
            marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')
    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_fmt(k, v)}</td></tr>"
                   for k, v in result.metrics.items())
    trades = "".join(
        f"<tr><td>{t.entry_time:%Y-%m-%d %H:%M}</td><td>{t.exit_time:%Y-%m-%d %H:%M}</td>"
        f"<td>{t.qty:g}</td><td>{t.entry_price:.2f}</td><td>{t.exit_price:.2f}</td>"
        f"<td class={'pos' if t.pnl > 0 else 'neg'}>{t.pnl:+,.2f}</td><td>{html.escape(t.exit_reason)}</td></tr>"
        for t in result.trades[:2000])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    mode = "plain (no risk limits, no session rules, whole cash per trade)" if cfg.plain else \
        "product rules (risk limits, stops, session and end-of-day rules)"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Backtest {html.escape(cfg.symbol)} {html.escape(cfg.strategy)}</title>
<style>body{{font-family:sans-serif;background:#15171b;color:#dcdfe4;max-width:960px;margin:auto;padding:16px}}
table{{border-collapse:collapse;margin:8px 0}}td,th{{padding:3px 10px;border-bottom:1px solid #333;text-align:right}}
th{{text-align:left;color:#aaa}}.pos{{color:#26a69a}}.neg{{color:#ef5350}}figcaption{{color:#aaa}}</style></head>
<body><h1>Backtest: {html.escape(cfg.symbol)} {html.escape(cfg.timeframe)}, strategy {html.escape(cfg.strategy)}</h1>
<p>{result.bars:,} bars from {bars[0].time:%Y-%m-%d %H:%M} to {bars[-1].time:%Y-%m-%d %H:%M} UTC;
{mode}; cash {cfg.cash:,.0f}; slippage {cfg.slippage_bps:g} bps; commission {cfg.commission_per_share:g}/share
+ {cfg.commission_rate:g} of value. Engine time {result.elapsed_seconds:.2f} s.</p>
<ul>{notes}</ul>
<h2>Metrics</h2><table>{rows}</table>
{_svg("Equity", _polyline(eq, "#42a5f5", float(eq.min()), float(eq.max())), float(eq.min()), float(eq.max()))}
{_svg("Drawdown", _polyline(dd, "#ef5350", float(dd.min()), 0.0), float(dd.min()), 0.0, "{:.1%}")}
{_svg("Price with entries (green) and exits (red)", _polyline(closes, "#dcdfe4", lo_p, hi_p) + "".join(marks),
      lo_p, hi_p, "{:,.2f}")}
<h2>Trades ({len(result.trades)})</h2>
<table><tr><th>Entry</th><th>Exit</th><th>Qty</th><th>Entry price</th><th>Exit price</th><th>P&amp;L</th>
<th>Exit reason</th></tr>{trades}</table></body></html>"""
