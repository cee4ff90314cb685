"""Bars of several symbols for a backtest or a replay, from ``SYM=FILE`` or bare paths.

``--csv QQQ=a.csv --csv NVDA=b.csv`` names each file's symbol; a bare path takes
it from the file (a symbol column, else a name like ``SPY_5m_....csv``); a file
that says nothing is the one ``--symbol`` names, when it is the only file. A
symbol given twice is refused rather than merged: two files of one symbol
would double its bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.engine.data.frame import DataError, normalize_symbol
from app.engine.data.service import load_bars, symbols_in_file
from app.engine.types import Bar


def bar_files(specs: Sequence[str], symbol: str | None = None) -> list[tuple[str, Path]]:
    """Each ``SYM=FILE`` or bare ``FILE`` as (symbol, path); ``symbol`` names a lone bare file
    that does not say its own."""
    if not specs:
        raise DataError("name at least one CSV file of bars")
    out: list[tuple[str, Path]] = []
    for spec in specs:
        named, path = _split(spec)
        if named is not None:
            out.append((named, path))
            continue
        held = symbols_in_file(path)
        if symbol is not None and len(specs) == 1 and len(held) <= 1:
            out.append((normalize_symbol(symbol), path))  # the user said which
        elif held:
            out += [(s, path) for s in held]
        elif len(specs) == 1:
            out.append(("PLTR", path))  # the one-symbol default, as before
        else:
            raise DataError(f"cannot tell which ticker {path.name} holds: write it as SYM={spec}, "
                            "or name the file like SPY_5m_....csv")
    first: dict[str, Path] = {}
    for s, path in out:
        if s in first:
            raise DataError(f"{s} is given twice ({first[s].name} and {path.name}): one file per symbol")
        first[s] = path
    return out


def _split(spec: str) -> tuple[str | None, Path]:
    """``SYM=FILE`` -> (SYM, FILE); a path that merely holds ``=`` stays a path."""
    head, sep, tail = spec.partition("=")
    if sep and tail and not Path(spec).exists():
        try:
            return normalize_symbol(head), Path(tail).expanduser()
        except DataError:
            pass
    return None, Path(spec).expanduser()


GAPS_SHOWN = 3  # a file's gaps listed by name; the rest are counted


def load_portfolio(specs: Sequence[str], symbol: str | None, timeframe: str,
                   keep_extended: bool = False, hint: str = "use") -> tuple[list[Bar], list[str]]:
    """Every file's clean bars, one list over all symbols, and for the user a line per file
    with what its cleaning did under it (bars dropped, duplicates, gaps, splits): a backtest's
    numbers come from these bars, not from every row of the file."""
    bars: list[Bar] = []
    lines: list[str] = []
    for s, path in bar_files(specs, symbol):
        got, result, report = load_bars(path, s, timeframe, keep_extended=keep_extended, hint=hint)
        bars += got
        lines.append(f"{s}: {len(got):,} bars from {path.name}"
                     + (f" ({result.rejected:,} rows rejected)" if result.rejected else ""))
        lines += [f"  {s} rejected: {x}" for x in result.reason_lines()]  # why, and on which lines
        lines += [f"  {s} cleaning: {x}" for x in report.lines(max_gaps=GAPS_SHOWN)]
    return bars, lines
