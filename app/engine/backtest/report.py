"""A self-contained HTML report: metrics, equity and drawdown plots, price with
trades, and the trade list. Plots are inline SVG, so the file needs nothing
else to open, keep or share."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from app.engine.backtest.config import BacktestConfig, describe_used, heat_color
from app.engine.backtest.optimize import Optimization
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


def _heatmap_table(opt: Optimization) -> str:
    x, y, xs, ys, grid = opt.heatmap()
    finite = grid[np.isfinite(grid)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    head = "".join(f"<th>{v:g}</th>" for v in xs)
    body = ""
    for i, yv in enumerate(ys):
        cells = "".join(f'<td style="background:{heat_color(v, lo, hi)}">'
                        f'{"inf" if v == np.inf else "" if not np.isfinite(v) else f"{v:.2f}"}</td>' for v in grid[i])
        label = f"{html.escape(y)} {yv:g}" if y else ""
        body += f"<tr><th>{label}</th>{cells}</tr>"
    return (f"<h2>Heatmap: IN-SAMPLE {html.escape(opt.maximize)}</h2>"
            f"<p>Each cell: the {html.escape(opt.maximize)} on all the bars"
            + (f" (the best over {', '.join(p.name for p in opt.params[2:])})" if len(opt.params) > 2 else "")
            + ". Grey: refused by the settings' rules or undefined.</p>"
            f'<table class=heat><tr><th>{html.escape(x)} &rarr;</th>{head}</tr>{body}</table>')


def render_optimization_html(opt: Optimization, cfg: BacktestConfig, used: dict[str, object], bars: int,
                             first: str, last: str) -> str:
    """The search's report: the walk-forward result first (the honest one), the in-sample best
    beside it, labelled, the heatmap, and each fold."""
    def params(p: dict[str, float]) -> str:
        return html.escape(", ".join(f"{k}={v:g}" for k, v in p.items()))

    oos = opt.oos_metrics
    keys = [k for k in ("total_return", "sharpe", "sortino", "calmar", "max_drawdown", "trades", "buy_and_hold_return")
            if k in opt.best_metrics]
    rows = "".join(f"<tr><th>{k.replace('_', ' ')}</th><td>{_fmt(k, oos[k]) if k in oos else 'n/a'}</td>"
                   f"<td>{_fmt(k, opt.best_metrics[k])}</td></tr>" for k in keys)
    folds = "".join(
        f"<tr><td>{k + 1}</td><td>{f.train[0]:%Y-%m-%d} .. {f.train[1]:%Y-%m-%d}</td><td>{params(f.best)}</td>"
        f"<td>{_fmt(opt.maximize, f.train_score)}</td><td>{f.test[0]:%Y-%m-%d} .. {f.test[1]:%Y-%m-%d}</td>"
        f"<td>{_fmt('total_return', f.test_metrics.get('total_return', float('nan')))}</td>"
        f"<td>{_fmt('sharpe', f.test_metrics.get('sharpe', float('nan')))}</td></tr>"
        for k, f in enumerate(opt.folds))
    deflated = ("n/a" if opt.deflated_sharpe is None else f"{opt.deflated_sharpe:.2f}")
    walk = (f"<h2>Walk-forward, out of sample ({len(opt.folds)} folds)</h2>"
            f"<table><tr><th>Fold</th><th>In-sample bars</th><th>Chosen</th><th>In-sample {opt.maximize}</th>"
            f"<th>Out-of-sample bars</th><th>Return</th><th>Sharpe</th></tr>{folds}</table>"
            + (_svg("Stitched out-of-sample equity", _polyline(opt.oos_equity, "#42a5f5", float(opt.oos_equity.min()),
                                                                 float(opt.oos_equity.max())),
                    float(opt.oos_equity.min()), float(opt.oos_equity.max())) if len(opt.oos_equity) > 1 else "")
            if opt.folds else "<p>No walk-forward (--folds 0): only the in-sample grid, which says nothing of "
                              "the future.</p>")
    used_lines = "".join(f"<li>{html.escape(n)}</li>" for n in describe_used(dict(used)))
    ranges = ", ".join(f"{p.name} {min(p.values):g}..{max(p.values):g}" for p in opt.params)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Optimisation {html.escape(cfg.symbol)} {html.escape(cfg.strategy)}</title>
<style>body{{font-family:sans-serif;background:#15171b;color:#dcdfe4;max-width:1000px;margin:auto;padding:16px}}
table{{border-collapse:collapse;margin:8px 0}}td,th{{padding:3px 8px;border-bottom:1px solid #333;text-align:right}}
th{{text-align:left;color:#aaa}}.heat td{{color:#fff;min-width:42px;text-align:center}}.warn{{color:#ffb74d}}
figcaption{{color:#aaa}}</style></head>
<body><h1>Optimisation: {html.escape(cfg.symbol)} {html.escape(cfg.timeframe)},
strategy {html.escape(cfg.strategy)}</h1>
<p>{bars:,} bars from {html.escape(first)} to {html.escape(last)}; maximising {html.escape(opt.maximize)} over
{opt.tried} combinations ({html.escape(ranges)})
in {opt.seconds:.1f} s on {opt.workers} process(es).</p>
<ul>{used_lines}</ul>
<h2>Result</h2>
<table><tr><th></th><th>Walk-forward (out of sample)</th><th class=warn>IN-SAMPLE best: {params(opt.best)}</th></tr>
{rows}</table>
<p class=warn>IN-SAMPLE: the best of {opt.tried} tries on the same bars it is scored on; its figures measure the
luck of the draw. Deflated Sharpe ratio {deflated}: the probability that its true Sharpe is above zero once
{opt.tried} tries are allowed for (0.95 or more would be evidence).</p>
{walk}
{_heatmap_table(opt)}
</body></html>"""
