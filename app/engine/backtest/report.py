"""A self-contained HTML report: metrics, equity and drawdown plots, price with
trades, and the trade list. Plots are inline SVG, so the file needs nothing
else to open, keep or share."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from app.engine.backtest.config import describe_used
from app.engine.backtest.runner import BacktestResult
from app.engine.types import Bar, Trade

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


def _price_plot(symbol: str, bars: Sequence[Bar], trades: Sequence[Trade]) -> str:
    closes = np.array([b.close for b in bars])
    index = {b.time: i for i, b in enumerate(bars)}
    lo_p, hi_p = float(closes.min()), float(closes.max())
    n = len(closes)
    marks = []
    for t in trades:
        for when, price, color in ((t.entry_time, t.entry_price, "#26a69a"), (t.exit_time, t.exit_price, "#ef5350")):
            i = index.get(when)
            if i is None:
                continue
            x = PAD + i / max(n - 1, 1) * (W - 10 - PAD)
            y = H - 20 - (price - lo_p) / ((hi_p - lo_p) or 1.0) * (H - 40)
            marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')
    return _svg(f"{symbol}: price with entries (green) and exits (red)",
                _polyline(closes, "#dcdfe4", lo_p, hi_p) + "".join(marks), lo_p, hi_p, "{:,.2f}")


def _per_symbol_table(per_symbol: dict[str, dict[str, object]]) -> str:
    """One column per symbol: each symbol's sleeve of the account, the portfolio's keys."""
    if len(per_symbol) < 2:
        return ""
    symbols = list(per_symbol)
    head = "".join(f"<th>{html.escape(s)}</th>" for s in symbols)
    keys = list(next(iter(per_symbol.values())))
    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th>"
                   + "".join(f"<td>{_fmt(k, per_symbol[s][k])}</td>" for s in symbols) + "</tr>"
                   for k in keys)
    return ("<h2>Each symbol</h2><p>Each symbol's sleeve of the one account: the starting cash plus that "
            "symbol's P&amp;L, so the symbols' returns add up to the portfolio's.</p>"
            f"<table><tr><th></th>{head}</tr>{rows}</table>")


def render_html(result: BacktestResult, bars: Sequence[Bar]) -> str:
    cfg = result.config
    eq = result.equity
    dd = eq / np.maximum.accumulate(eq) - 1.0
    by_symbol: dict[str, list[Bar]] = {}
    for b in bars:
        by_symbol.setdefault(b.symbol, []).append(b)
    prices = "".join(_price_plot(s, own, [t for t in result.trades if t.symbol == s])
                     for s, own in sorted(by_symbol.items()))
    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_fmt(k, v)}</td></tr>"
                   for k, v in result.metrics.items())
    trades = "".join(
        f"<tr><td>{html.escape(t.symbol)}</td><td>{t.entry_time:%Y-%m-%d %H:%M}</td>"
        f"<td>{t.exit_time:%Y-%m-%d %H:%M}</td>"
        f"<td>{t.qty:g}</td><td>{t.entry_price:.2f}</td><td>{t.exit_price:.2f}</td>"
        f"<td class={'pos' if t.pnl > 0 else 'neg'}>{t.pnl:+,.2f}</td><td>{html.escape(t.exit_reason)}</td></tr>"
        for t in result.trades[:2000])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    used = "".join(f"<li>{html.escape(n)}</li>" for n in describe_used(result.used)) if result.used else ""
    held = int(result.metrics.get("open_positions", 0) or 0)
    open_line = (f"<p><b>Open at the end: {held} position(s)</b>, marked to market at the last close: in the "
                 "return and the equity, not in the trades, win rate or profit factor.</p>" if held else "")
    mode = "plain (no risk limits, no session rules, whole cash per trade)" if cfg.plain else \
        "product rules (risk limits, stops, session and end-of-day rules)"
    what = "bars" if len(by_symbol) < 2 else f"bars of {len(by_symbol)} symbols on one account"
    first, last = min(b.time for b in bars), max(b.time for b in bars)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Backtest {html.escape(cfg.symbol)} {html.escape(cfg.strategy)}</title>
<style>body{{font-family:sans-serif;background:#15171b;color:#dcdfe4;max-width:960px;margin:auto;padding:16px}}
table{{border-collapse:collapse;margin:8px 0}}td,th{{padding:3px 10px;border-bottom:1px solid #333;text-align:right}}
th{{text-align:left;color:#aaa}}.pos{{color:#26a69a}}.neg{{color:#ef5350}}figcaption{{color:#aaa}}</style></head>
<body><h1>Backtest: {html.escape(", ".join(sorted(by_symbol)))} {html.escape(cfg.timeframe)},
strategy {html.escape(cfg.strategy)}</h1>
<p>{result.bars:,} {what} from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC;
{mode}; cash {cfg.cash:,.0f}. Engine time {result.elapsed_seconds:.2f} s.</p>
<ul class=used>{used}</ul>
{open_line}
<ul>{notes}</ul>
<h2>Metrics</h2><table>{rows}</table>
{_per_symbol_table(result.per_symbol)}
{_svg("Equity", _polyline(eq, "#42a5f5", float(eq.min()), float(eq.max())), float(eq.min()), float(eq.max()))}
{_svg("Drawdown", _polyline(dd, "#ef5350", float(dd.min()), 0.0), float(dd.min()), 0.0, "{:.1%}")}
{prices}
<h2>Trades ({len(result.trades)})</h2>
<table><tr><th>Symbol</th><th>Entry</th><th>Exit</th><th>Qty</th><th>Entry price</th><th>Exit price</th>
<th>P&amp;L</th><th>Exit reason</th></tr>{trades}</table></body></html>"""
