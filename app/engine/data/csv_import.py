"""Reading OHLCV CSV files the way they come in the wild.

Files from brokers, yfinance exports and spreadsheets disagree on column
names and order, time zones, epoch vs ISO times, byte-order marks and what
goes in an empty cell. This module finds the columns by name, parses every
timestamp form we have met, and turns bad rows into counted rejections with
line numbers, so one stray "N/A" never costs the user the whole file. Only a
file that cannot be used at all raises :class:`DataError`.

A file may carry a symbol column (``symbol``/``ticker``) and hold several
stocks. Its rows are then split by symbol before anything else, so each
stock's bars are checked and cleaned on their own (the same time in SPY and
PLTR is two bars, not a duplicate). A cell there that is not a ticker refuses
the whole file, unlike a bad price: a row whose stock is unknown cannot be
put anywhere safely, and junk in that column usually means it is not what its
name says.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.engine.clock import NY
from app.engine.data.frame import ADJ_CLOSE, INDEX_NAME, MAX_PRICE, DataError, normalize_symbol
from app.engine.dates import DATE_ORDER

EXAMPLES_PER_REASON = 5
MAX_HEADER_CHARS = 10_000  # a header of bars is a few dozen names
MAX_COLUMNS = 200  # Date, OHLCV, adjusted close, a symbol... and whatever an export adds
MAX_FILE_BYTES = 2 * 2**30  # one import is read whole into memory; a file this large is split first

_TIME_NAMES = ("datetime", "timestamp", "date_time", "time_stamp")
_SYMBOL_NAMES = ("symbol", "ticker", "sym")
_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume", "vol"),
    ADJ_CLOSE: ("adj_close", "adjclose", "adjusted_close", "adj_close_price"),
}
_NA_TEXT = {"", "nan", "na", "n/a", "null", "none", "-", "--"}
_EPOCH = r"\d{9,13}(?:\.\d+)?"
_DATE_ONLY = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}/\d{1,2}/\d{4}|\d{8}"
_ZONED = r".*(?:[Zz]|UTC|GMT|[+-]\d{2}:?\d{2}|\d:\d\d(?::\d\d(?:\.\d+)?)?\s*[+-]\d{2})"  # "...-05": PostgreSQL's
# a date in a cell: a time alone ("09:31", "9:30 AM") or a year alone is read by pandas' general
# parser as that time today, or as New Year's Day: refused instead
_HAS_DATE = (r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|(?<!\d)\d{8}(?!\d)|[A-Za-z]{3,}\.? \d{1,2},? \d{4}"
             r"|\d{1,2} [A-Za-z]{3,}\.?,? \d{4}")
# an offset other than UTC's: New York's changes in the year, which the parser's one pass cannot
# take (it fails at the first change, having read everything up to there)
_OFFSET_NOT_UTC = r".*\d ?[+-](?!00:?00$)\d{2}:?\d{2}"
_UTC_WORD = r".*\d:\d\d\s*(?:UTC|GMT)"  # "2024-03-05 14:30:00 UTC"
_UTC_WORD_END = r"(?<=\d)\s*(?:UTC|GMT)\s*$"
_SPACED_OFFSET = r".*\d:\d\d [+-]\d{2}:?\d{2}"  # "2024-03-05 09:30:00 -0500"
_CLOCK_WORDS = ("now", "today")  # exactly these, to pandas' parsers: the time they are read at


@dataclass
class ImportResult:
    """What a CSV gave: the accepted rows as a canonical frame, and why others were dropped."""

    frame: pd.DataFrame
    accepted: int
    rejected: int
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)  # reason -> file line numbers
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> name in the file
    symbol: str | None = None  # the ticker the file's symbol column gives these rows; None without one

    @property
    def has_adjusted(self) -> bool:
        return ADJ_CLOSE in self.frame.columns

    def reason_lines(self) -> list[str]:
        """Human-readable 'reason: count (lines 4, 9)' lines, most frequent first."""
        out = []
        for reason, n in self.reasons.most_common():
            lines = ", ".join(str(x) for x in self.examples.get(reason, []))
            out.append(f"{reason}: {n}" + (f" (lines {lines})" if lines else ""))
        return out


MALFORMED = "malformed line (wrong number of fields)"


@dataclass(frozen=True)
class _Skipped:
    """The lines the parser left out: ``rows`` the 1-based file line each row it read starts on
    (None: nothing was left out but the header, row i is on line i + 2), and the lines it skipped
    for having more fields than the header (``malformed``: how many; ``bad``: which, where known)."""

    rows: np.ndarray | None = None
    malformed: int = 0
    bad: tuple[int, ...] = ()
    malformed_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))  # kept by the parser
    lines_known: bool = True  # False: lines were skipped where they could not be found, so no row is named


@dataclass
class _Table:
    """A file's cells as text, before any row is judged."""

    name: str
    raw: pd.DataFrame
    columns: dict[str, str]
    lines: np.ndarray  # the 1-based file line of each row of ``raw``, by its index
    skipped: _Skipped


def read_csv(path: str | Path, symbol: str | None = None) -> ImportResult:
    """Read one OHLCV CSV file; raises :class:`DataError` only when nothing can be used.

    With a symbol column the result is the rows of ``symbol``: a file holding
    several stocks must be told which, and one without ``symbol`` is refused
    naming the ones it holds. Without such a column ``symbol`` is not checked.
    """
    table = _load(Path(path))
    symbols = _row_symbols(table)
    if symbols is None:
        return _build(table, table.raw)
    held = list(symbols.unique())
    if symbol is None and len(held) > 1:
        raise DataError(f"{table.name} holds several symbols ({', '.join(held)}): name the one to use")
    wanted = held[0] if symbol is None else normalize_symbol(symbol)
    if wanted not in held:
        raise DataError(f"{table.name} holds {', '.join(held)}, not {wanted}")
    return _part(table, symbols, wanted, first=wanted == held[0])


def read_csv_each(path: str | Path) -> list[ImportResult]:
    """One result per symbol in the file's symbol column, in order of appearance,
    read in one pass; a file without that column gives one result (symbol None)."""
    table = _load(Path(path))
    symbols = _row_symbols(table)
    if symbols is None:
        return [_build(table, table.raw)]
    return [_part(table, symbols, s, first=i == 0) for i, s in enumerate(symbols.unique())]


def column_symbols(path: str | Path) -> list[str]:
    """The tickers in a file's symbol column, in order of appearance; [] without one."""
    table = _load(Path(path))
    symbols = _row_symbols(table)
    return [] if symbols is None else list(symbols.unique())


def _load(path: Path) -> _Table:
    raw, skipped = _parse_table(_read_source(path), path.name)
    raw, header_lines = _unstack_yfinance_header(raw)
    columns = _find_columns(list(raw.columns), path.name)
    if raw.empty:
        raise DataError(f"{path.name} has a header but no data rows")
    lines = np.arange(len(raw)) + header_lines + 1 if skipped.rows is None else skipped.rows[header_lines - 1:]
    return _Table(path.name, raw, columns, lines, skipped)


def _row_symbols(table: _Table) -> pd.Series | None:
    """Each row's ticker from the symbol column (None without one). Each distinct
    cell is checked once, so a million-row file pays for a handful of checks."""
    col = table.columns.get("symbol")
    if col is None:
        return None
    cells = table.raw[col].astype(str).str.strip()
    checked: dict[str, str] = {}
    for cell in cells.unique():
        missing = cell.lower() in _NA_TEXT  # "NA" would pass as a ticker, but means none
        try:
            checked[cell] = normalize_symbol("" if missing else cell)
        except DataError:
            line = int(table.lines[cells.index[(cells == cell).to_numpy()][0]])
            where = f"line {line}" if table.skipped.lines_known else "a row"
            what = f"the symbol is missing ({cell!r})" if missing else f"{cell!r} is not a ticker symbol"
            raise DataError(f"{table.name} {where}: {what} in column {col}; "
                            "fix the file, nothing was read from it") from None
    return cells.map(checked)


def _part(table: _Table, symbols: pd.Series, symbol: str, first: bool) -> ImportResult:
    """One symbol's rows; lines the parser skipped belong to no known symbol and
    are counted once, with the file's first symbol."""
    rows = table.raw[(symbols == symbol).to_numpy()]
    return _build(table, rows, symbol, with_skipped=first)


# ---------------------------------------------------------------- reading
HEAD_BYTES = 1 << 16  # what is read before the parser: the first line's checks, the binary check


class _Source:
    """A file read by the C parser from its path, as ``pandas.read_csv`` does (twice as fast as
    from a buffer); only its head is read here first, for the checks. A file that is not UTF-8
    (Latin-1, UTF-16) is read whole and decoded."""

    def __init__(self, path: Path, head: bytes, size: int) -> None:
        self.path, self.size, self._head = path, size, head
        self.utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))  # Excel's "Unicode text" export
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            data = _read_bytes(self.path)
            if self.utf16:
                text = data.decode("utf-16", errors="replace")
            else:
                try:
                    text = data.decode("utf-8-sig")
                except UnicodeDecodeError:
                    text = data.decode("latin-1")  # numbers and names survive; only odd symbols don't
            self._text = text.lstrip("\ufeff")
        return self._text

    def head(self) -> str:
        """The start of the text: enough for the first line's checks."""
        if self.utf16:
            return self.text[: MAX_HEADER_CHARS + 2]
        return self._head.decode("utf-8-sig", errors="replace").lstrip("\ufeff")

    def newlines(self) -> int:
        """Line ends in the file (and one for a last line without one): each line at most once."""
        if self._text is not None or self.utf16:
            return self.text.count("\n") + (not self.text.endswith("\n"))
        count, last = 0, b""
        try:
            with self.path.open("rb") as f:  # in 4 MB chunks: no copy of the whole file
                while chunk := f.read(1 << 22):
                    count, last = count + chunk.count(b"\n"), chunk[-1:]
        except OSError as exc:
            raise DataError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        return count + (last != b"\n")

    def whole(self) -> bool:
        return self.size <= len(self._head)


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(limit)
    except FileNotFoundError:
        raise DataError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_source(path: Path) -> _Source:
    try:
        if path.is_dir():
            raise DataError(f"cannot read {path}: it is a folder, not a CSV file")
        if path.exists() and not path.is_file():  # a pipe or a device: reading it could wait forever
            raise DataError(f"cannot read {path}: it is not a regular file (a pipe or a device), not a CSV file")
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:  # also /proc and /sys files, which say 0 and may wait forever when read
        raise DataError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path.name} is {size / 2**30:.1f} GB: more than the {MAX_FILE_BYTES / 2**30:.0f} GB "
                        "one import reads into memory; split it by year or by symbol")
    src = _Source(path, _read_bytes(path, HEAD_BYTES), size)
    if not src.utf16 and b"\x00" in src._head[:4096]:
        raise DataError(f"cannot read {path.name}: it is a binary file, not a CSV")
    if not src.head().strip() and (src.whole() or not src.text.strip()):
        raise DataError(f"{path.name} is empty")
    return src


def _parse_table(src: _Source, name: str) -> tuple[pd.DataFrame, _Skipped]:
    """The cells, plus the lines the parser left out (blank ones, and those with too many fields).
    Price and volume columns whose every cell is a number come as numbers (one pass of the C
    parser, as ``pandas.read_csv``); any other column, and every column of a file whose header
    is not plain, comes as text, so bad cells become counted rejections."""
    first = src.head().lstrip()[:MAX_HEADER_CHARS + 1].split("\n", 1)[0]
    if len(first) > MAX_HEADER_CHARS:  # minified JSON, a log on one line: parsing it takes minutes
        raise DataError(f"{name} is not a CSV of bars: its first line is over {MAX_HEADER_CHARS:,} characters long")
    sep = max((",", ";", "\t", "|"), key=first.count)
    if first.count(sep) >= MAX_COLUMNS:
        raise DataError(f"{name} is not a CSV of bars: its first line has {first.count(sep) + 1:,} columns")
    options: dict[str, Any] = {"sep": sep, **_column_types(first, sep, name, src.head()), "keep_default_na": False,
                               "skipinitialspace": True, "skip_blank_lines": True, "on_bad_lines": "skip",
                               # never the leading columns as an index, when the first row (or every row:
                               # a trailing comma) has more fields than the header: that once crashed
                               "index_col": False}
    raw = _read_cells(src, name, options)
    dates = options.get("parse_dates")
    if dates and _fractions(raw.iloc[:, dates[0]]):  # read again as text: "now" and "today" are refused there
        raw = _read_cells(src, name, {k: v for k, v in options.items() if k not in ("parse_dates", "date_format")})
    keep = _first_row_width(src.head(), sep)
    if not keep and src.newlines() - 1 <= len(raw):  # no line was skipped: no pass over the text for blank lines
        return raw, _Skipped()
    found = _skipped_lines(src.text, sep, len(raw), keep)
    if found.rows is None or not len(found.malformed_rows):
        return raw, found
    drop = np.zeros(len(raw), dtype=bool)
    drop[found.malformed_rows] = True
    return raw[~drop].reset_index(drop=True), replace(found, rows=found.rows[~drop], malformed_rows=np.empty(0, int))


def _first_row_width(head: str, sep: str) -> int:
    """The first data row's field count where it has more than the header (0 otherwise): the parser
    then keeps every row up to that width and drops the fields past the header's without a word."""
    records = [r for r in itertools.islice(csv.reader(io.StringIO(head, newline=""), delimiter=sep,
                                                      skipinitialspace=True), 50)
               if len(r) > 1 or "".join(r).strip()][:2]
    return len(records[1]) if len(records) == 2 and len(records[1]) > len(records[0]) else 0


def _skipped_lines(text: str, sep: str, rows: int, keep: int = 0) -> _Skipped:
    """Where the parser's ``rows`` rows start in ``text``, and which lines have more fields than
    the header: skipped by the parser, or (up to ``keep`` fields, where the first row is that wide)
    kept with their extra fields dropped, which are refused here where those hold anything. From
    one pass of Python's csv reader (quoted cells may span lines). Where that pass does not find
    the parser's rows, only the count of skipped lines is known."""
    body = text.strip()
    if not keep and body.count("\n") == rows:  # only blank lines around the header and rows: no pass
        above = text[: len(text) - len(text.lstrip())].count("\n")
        return _Skipped(np.arange(rows) + 2 + above if above else None)
    starts: list[int] = []
    bad: list[int] = []
    kept_bad: list[int] = []  # rows the parser kept with fields past the header's: their positions
    width = limit = 0
    at = 1
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    try:
        for record in reader:
            line, at = at, reader.line_num + 1
            if len(record) <= 1 and not "".join(record).strip():
                continue  # a blank line: skipped by the parser too
            if not width:
                width = len(record)  # the header
                limit = max(width, keep)
            elif len(record) > limit:
                bad.append(line)
            else:
                if len(record) > width and any(f.strip() for f in record[width:]):  # a trailing comma is no field
                    bad.append(line)
                    kept_bad.append(len(starts))
                starts.append(line)
    except csv.Error:
        starts = []
    if len(starts) == rows:
        return _Skipped(np.asarray(starts), len(bad), tuple(bad), np.asarray(kept_bad, dtype=int))
    return _Skipped(None, max(0, sum(1 for ln in text.splitlines() if ln.strip()) - 1 - rows), lines_known=False)


def _read_cells(src: _Source, name: str, options: dict[str, Any]) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if src.utf16 or src.head().startswith("\ufeff"):  # UTF-16, or a second byte-order mark
                    raise UnicodeDecodeError("utf-8", b"", 0, 1, "read from the decoded text")
                # "skip", not "warn": only then does pandas 3 read the file on several threads
                return pd.read_csv(src.path, encoding="utf-8-sig", **options)
            except UnicodeDecodeError:  # not UTF-8 (Latin-1, UTF-16): from the decoded text
                return pd.read_csv(io.StringIO(src.text), **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot read {name}: {_parser_words(exc)}") from None


def _fractions(times: pd.Series) -> bool:
    """Whether any time the parser read has a fraction of a second: rare in bars, and what the
    words "now" and "today" (:data:`_CLOCK_WORDS`) read as, the clock's time to the microsecond."""
    if not pd.api.types.is_datetime64_any_dtype(times.dtype):
        return False  # some cell was no ISO-8601 time: the column came as text
    ticks = times.array.asi8
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[times.dt.unit]
    return bool(((ticks % per_second != 0) & ~times.isna().to_numpy()).any())


def _parser_words(exc: Exception) -> str:
    """The parser's complaint in a user's words ("C error: EOF inside string starting at row 7")."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    quote = re.search(r"EOF inside string starting at row (\d+)", msg)
    if quote:
        return (f"a quote (\") opened on line {int(quote.group(1)) + 1} is never closed, so the rest of the "
                "file reads as one cell: fix or remove that quote")
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if fields:
        return (f"line {fields.group(2)} has {fields.group(3)} fields where the header has {fields.group(1)}")
    if "No columns to parse" in msg:
        return "it holds no columns (an empty or blank file)"
    return msg


def _column_types(first: str, sep: str, name: str, head: str) -> dict[str, Any]:
    """How the parser reads the columns: as text (str), unless the header is a plain one whose
    price and volume columns are found; those are then read as numbers where every cell is one
    (a column with any other cell still comes as text), and a time column whose first cell is
    no number is read as ISO-8601 times by the parser itself (three times as fast as the text
    read and then parsed; any cell that is not ISO-8601 leaves the whole column as text, for
    :func:`parse_times`)."""
    names = [n.strip().strip('"') for n in first.rstrip("\r").split(sep)]
    if len(set(names)) != len(names):
        return {"dtype": str}
    try:
        found = _find_columns(names, name)
    except DataError:
        return {"dtype": str}  # a yfinance three-line header, or a file to be refused with the careful path's words
    numeric = {found[c] for c in ("open", "high", "low", "close", "volume", ADJ_CLOSE) if c in found}
    types: dict[str, Any] = {}
    if "time_of_day" not in found:  # a column of epoch seconds comes as numbers; dates stay text all the same
        numeric.add(found["time"])
        lines = head.lstrip().split("\n", 2)
        row = lines[1].rstrip("\r") if len(lines) > 2 else ""
        cells = row.split(sep) if '"' not in first + row else []  # a quoted cell may hold the separator
        column = names.index(found["time"])
        cell = cells[column].strip() if len(cells) == len(names) else ""
        if cell and not re.fullmatch(_EPOCH, cell) and not re.fullmatch(_OFFSET_NOT_UTC, cell):
            types = {"parse_dates": [column], "date_format": "ISO8601"}
    return {"dtype": {n: str for n in names if n not in numeric}, **types}


def _unstack_yfinance_header(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``DataFrame.to_csv`` of a yfinance download writes three header lines
    (``Price,Close,...`` / ``Ticker,PLTR,...`` / ``Datetime,,,``); keep the names
    from the first and the time column's name from the third."""
    if len(raw.columns) == 0 or _norm(raw.columns[0]) != "price" or len(raw) < 2:
        return raw, 1
    first = [_norm(str(v)) for v in raw.iloc[:2, 0]]
    if first[0] != "ticker" or first[1] not in ("date", "datetime", "timestamp"):
        return raw, 1
    out = raw.iloc[2:].rename(columns={raw.columns[0]: str(raw.iloc[1, 0])})
    return out.reset_index(drop=True), 3


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def _find_columns(names: list[str], file_name: str) -> dict[str, str]:
    normal: dict[str, str] = {}
    for n in names:
        normal.setdefault(_norm(n), n)
    found: dict[str, str] = {}
    for n in _TIME_NAMES:
        if n in normal:
            found["time"] = normal[n]
            break
    else:
        if "date" in normal and "time" in normal:
            found["time"] = normal["date"]
            found["time_of_day"] = normal["time"]
        elif "date" in normal or "time" in normal:
            found["time"] = normal.get("date") or normal["time"]
        elif names and _norm(names[0]) in ("", "unnamed_0", "index"):  # pandas to_csv(): dates, no name
            found["time"] = names[0]
    for canon, aliases in (*_ALIASES.items(), ("symbol", _SYMBOL_NAMES)):
        for a in aliases:
            if a in normal:
                found[canon] = normal[a]
                break
    missing = [c for c in ("time", "open", "high", "low", "close", "volume") if c not in found]
    if missing:
        shown = ", ".join(str(n) for n in names[:10]) or "none"
        label = ["date/time" if m == "time" else m for m in missing]
        raise DataError(f"{file_name} lacks required column(s): {', '.join(label)} (found: {shown})")
    return found


# ---------------------------------------------------------------- rows
def _build(table: _Table, raw: pd.DataFrame, symbol: str | None = None, with_skipped: bool = True) -> ImportResult:
    """``raw``'s rows of ``table`` judged; the lines the parser skipped are counted where
    ``with_skipped`` (once per file: they belong to no known symbol)."""
    columns, name = table.columns, table.name
    n = len(raw)
    reason = np.full(n, "", dtype=object)

    def reject(mask: np.ndarray, why: str) -> None:
        if mask.any():  # most files: no cell is rejected, and no pass over the reasons is paid
            reason[mask & (reason == "")] = why

    try:
        times = None
        if "time_of_day" in columns:  # a date column and a time column: each read once per distinct cell
            times = _date_and_time(raw[columns["time"]], raw[columns["time_of_day"]])
            if times is None:
                time_text = (raw[columns["time"]].astype(str).str.strip() + " "
                             + raw[columns["time_of_day"]].astype(str).str.strip())
                times = parse_times(time_text)
        else:
            times = parse_times(raw[columns["time"]])
    except DataError as exc:
        raise DataError(f"{name}: {exc}" if name else str(exc)) from None
    reject(np.asarray(times.isna()), "unreadable date/time")

    names = [c for c in ("open", "high", "low", "close", "volume", ADJ_CLOSE) if c in columns]
    block = np.empty((len(names), n))  # one row per column: the frame's own block, never stacked again
    for row, canon in zip(block, names, strict=True):
        row[:] = _numeric(raw[columns[canon]], canon, reject)

    keep = reason == ""
    every = bool(keep.all())  # most files: no copies made to drop nothing
    idx = pd.DatetimeIndex(times if every else times[keep], name=INDEX_NAME)
    frame = pd.DataFrame((block if every else block[:, keep]).T, columns=names, index=idx, copy=False)
    reasons: Counter[str] = Counter()
    examples: dict[str, list[int]] = {}
    for i in np.flatnonzero(~keep):
        why = str(reason[i])
        reasons[why] += 1
        if table.skipped.lines_known and len(examples.setdefault(why, [])) < EXAMPLES_PER_REASON:
            examples[why].append(int(table.lines[raw.index[i]]))  # the file's 1-based line
    malformed = table.skipped.malformed if with_skipped else 0
    if malformed:
        reasons[MALFORMED] += malformed
        if table.skipped.bad:
            examples[MALFORMED] = list(table.skipped.bad[:EXAMPLES_PER_REASON])
    return ImportResult(frame, int(keep.sum()), int((~keep).sum()) + malformed, reasons,
                        examples, {k: v for k, v in columns.items() if k != "time_of_day"}, symbol)


def _numeric(col: pd.Series, name: str, reject: Callable[[np.ndarray, str], None]) -> np.ndarray:
    """Text -> float, rejecting (in order) missing, text, infinite, non-positive, huge."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        arr: np.ndarray = np.array(col.to_numpy(dtype="float64"), dtype="float64")  # numbers, as the parser read them
    else:
        arr = np.array(pd.to_numeric(col, errors="coerce"), dtype="float64")  # a writable copy
    nan = np.isnan(arr)  # "nan" is a number to the parser: a missing price all the same
    na_text = np.zeros(len(arr), dtype=bool)
    if nan.any():  # only odd cells pay for the string work
        odd = col[nan].astype(str).str.strip()
        retry = pd.to_numeric(odd.str.replace("$", "", regex=False), errors="coerce")
        arr[nan] = np.asarray(retry, dtype="float64")
        na_text[nan] = odd.str.lower().isin(_NA_TEXT).to_numpy()
        nan = np.isnan(arr)
    reject(nan & na_text, f"missing {name}")
    reject(nan & ~na_text, f"text in {name}")
    with np.errstate(invalid="ignore"):
        reject(np.isinf(arr), f"infinite {name}")
        if name == "volume":
            reject(arr < 0, "negative volume")
        else:
            reject(arr <= 0, "zero or negative price")
            reject(arr > MAX_PRICE, "implausible price (> 10,000,000)")
    return arr


def parse_times(values: pd.Series) -> pd.DatetimeIndex:
    """Strings -> UTC bar start times (NaT where unreadable).

    Zoned times keep their offset (rows may mix offsets); naive times are New
    York wall time, the exchange's clock; a bare date is that trading day (its
    New York midnight, as yfinance and Alpaca stamp daily bars); 9-13 digit
    numbers are epoch seconds (or milliseconds).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        return _parsed_times(values)  # the parser read every cell as ISO-8601
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        fast = _all_epoch(values.reset_index(drop=True))  # the parser read them as numbers: epoch seconds?
        if fast is not None:
            return fast
    s = values.astype(str).reset_index(drop=True)  # an empty cell stays missing (NaN) until the strict pass
    head = str(s.iloc[0]).strip() if len(s) else ""
    if re.fullmatch(_UTC_WORD, head):  # "2024-03-05 14:30:00 UTC": an offset, or each cell goes to dateutil (100x)
        s = s.str.replace(_UTC_WORD_END, "+00:00", regex=True)
        head = str(s.iloc[0]).strip()
    elif re.fullmatch(_SPACED_OFFSET, head):  # the strict pass reads an offset after a space 20x slower (3 s a million)
        s = s.str.replace(" -", "-", regex=False).str.replace(" +", "+", regex=False)
        head = str(s.iloc[0]).strip()
    if re.fullmatch(_ZONED, head):  # offsets that change in the year (New York's): strict formats first
        fast = _strict_zoned(s)  # before the clock words are looked for: it refuses them itself
        if fast is not None:
            return fast
    s = _no_clock_words(s.fillna(""))
    fast = _mostly_iso(s)  # most files: (nearly) every cell clean ISO-8601, read in one call without stripping
    if fast is not None:
        return fast
    s = _no_clock_words(s.str.strip())
    fast = _mostly_iso(s)
    if fast is not None:
        return fast
    return _each_cell(s)


def _each_cell(s: pd.Series) -> pd.DatetimeIndex:
    """The careful path: stripped text cells read by their own shape (epoch, date, zoned, naive),
    position by position (NaT where unreadable)."""
    fast = _all_epoch(s) if re.fullmatch(_EPOCH, s.iloc[0]) else _all_zoned(s)
    if fast is not None:
        return fast
    s = _slash_dates_to_iso(s)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    epoch = s.str.fullmatch(_EPOCH)
    date_only = s.str.fullmatch(_DATE_ONLY) & ~epoch
    dated = s.str.contains(_HAS_DATE)
    zoned = s.str.fullmatch(_ZONED) & ~epoch & ~date_only & dated
    naive = (s != "") & ~epoch & ~date_only & ~zoned & dated
    if epoch.any():
        num = pd.to_numeric(s[epoch], errors="coerce")
        num = num.where(num < 1e11, num / 1000.0)  # 13 digits: milliseconds
        out[epoch] = pd.to_datetime(num, unit="s", utc=True, errors="coerce")
    if zoned.any():
        out[zoned] = _to_datetime(s[zoned], utc=True)
    for mask in (date_only, naive):
        if mask.any():
            local = _to_datetime(s[mask], utc=False)
            if getattr(local.dt, "tz", None) is not None:  # "mixed" found a zone after all
                out[mask] = local.dt.tz_convert("UTC")
                continue
            ny = local.dt.tz_localize(NY, ambiguous="NaT", nonexistent="NaT")
            out[mask] = ny.dt.tz_convert("UTC")
    return pd.DatetimeIndex(out, name=INDEX_NAME).as_unit("ns")


def _no_clock_words(s: pd.Series) -> pd.Series:
    """``s`` with the words pandas reads as the clock's time ("now", "today") blanked: unreadable,
    not a bar stamped the day of the import."""
    words = s.isin(_CLOCK_WORDS)
    return s.mask(words, "") if words.any() else s


def _parsed_times(values: pd.Series) -> pd.DatetimeIndex:
    """Times the parser read (ISO-8601 in every cell, empty ones NaT): zoned ones to UTC, naive
    ones as New York wall time (one the clock skipped or met twice is NaT: unreadable), and
    those a nanosecond index cannot hold NaT, as :func:`parse_times` reads the same text."""
    got = _fit_ns(values.reset_index(drop=True))
    if got.dt.tz is None:
        got = got.dt.tz_localize(NY, ambiguous="NaT", nonexistent="NaT")
    return pd.DatetimeIndex(got.dt.tz_convert("UTC"), name=INDEX_NAME).as_unit("ns")

_SLASH = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?!\d)(.*)$")  # 04/03/2025, 04.03.2025, 04-03-2025


def _slash_dates_to_iso(s: pd.Series) -> pd.Series:
    """``03/04/2025`` is March 4th to an American export and 3 April to a European one;
    pandas reads it month-first and silently moves a day-first file's bars into the wrong
    months. The user decides (:data:`DATE_ORDER`: ``--dayfirst``, ``--monthfirst``), else
    the file: a first field above 12 anywhere means day-first, a second one month-first;
    when neither says, the order whose dates lie closer together wins (consecutive trading
    days, not months apart); a tie (one day's bars) is refused, never guessed. Cells are
    rewritten as ISO dates; a file that says both is left for the rows to be refused."""
    parts = s.str.extract(_SLASH)
    found = parts[0].notna()
    if not found.any():
        return s
    a, b = parts.loc[found, 0].astype(int), parts.loc[found, 2].astype(int)
    year = parts.loc[found, 3].astype(int)
    year = year.where(year >= 100, year + 2000)
    order = DATE_ORDER.get()
    if order:  # the user said: rows that contradict it are refused as unreadable
        day_first = order == "dmy"
    elif (a > 12).any() and (b > 12).any():  # says both: every such date refused, none guessed
        out = s.copy()
        out[found] = ""
        return out
    elif (a > 12).any() or (b > 12).any():
        day_first = bool((a > 12).any())
    else:
        dmy, mdy = _spread(year, b, a), _spread(year, a, b)
        if dmy == mdy and (a != b).any():
            sample = s[found].iloc[int(np.argmax((a != b).to_numpy()))]
            raise DataError(f"dates like {sample.split()[0]} can be read day-first or month-first, and the file "
                            "does not say which: pass --dayfirst or --monthfirst (or write dates as YYYY-MM-DD)")
        day_first = dmy < mdy
    month, day = (b, a) if day_first else (a, b)
    iso = (year.astype(str).str.zfill(4) + "-" + month.astype(str).str.zfill(2) + "-" + day.astype(str).str.zfill(2)
           + parts.loc[found, 4].str.replace(r"^[ T]?", " ", regex=True).where(parts.loc[found, 4] != "", ""))
    out = s.copy()
    out[found] = iso
    return out


def _spread(year: pd.Series, month: pd.Series, day: pd.Series) -> float:
    """The median gap in days between the distinct dates read this way (inf: not dates)."""
    dates = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
    if dates.isna().any():
        return float("inf")
    unique = np.sort(dates.unique())
    if len(unique) < 2:
        return 0.0
    return float(np.median(np.diff(unique).astype("timedelta64[D]").astype(float)))


def _mostly_iso(s: pd.Series) -> pd.DatetimeIndex | None:
    """A column of ISO-8601 times but for a few cells (a garbage cell, a slash date, a wall time
    the clock skipped): the rest read in one call, and only those few down the careful path,
    which reads each cell by its own shape, whatever its neighbours (every cell of a million went
    there for one bad cell: 4 s). None when most cells are no ISO-8601, or the column mixes
    zones (the careful path reads it whole)."""
    if s.empty or re.fullmatch(_EPOCH, str(s.iloc[0])):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = pd.to_datetime(s, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):
        return None  # mixed offsets, or naive mixed with zoned
    out = _parsed_times(got).tz_localize(None).to_numpy(copy=True)  # UTC, NaT where unread
    odd = np.isnat(out) & (s != "").to_numpy()
    if 2 * np.count_nonzero(odd) > len(s):
        return None
    if odd.any():
        cells = _no_clock_words(s[odd].str.strip().reset_index(drop=True))
        out[odd] = _odd_cells(cells)
    return pd.DatetimeIndex(out, name=INDEX_NAME).tz_localize("UTC").as_unit("ns")


def _odd_cells(cells: pd.Series) -> np.ndarray:
    """The few cells a column's one-call read left (UTC, naive): each by its own shape. Slash dates
    among them that neither order settles (one 04/03/2025 among ISO dates) are refused, not the
    whole file: one stray cell costs its row."""
    try:
        got = _each_cell(cells)
    except DataError:
        got = _each_cell(cells.mask(cells.str.match(_SLASH), ""))
    return np.asarray(got.tz_localize(None))


def _all_epoch(s: pd.Series) -> pd.DatetimeIndex | None:
    """Every cell epoch seconds (or milliseconds), in one vectorised pass; None when one is not."""
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    if not np.isfinite(num).all() or not ((num >= 1e8) & (num < 1e13)).all():
        return None
    secs = np.where(num < 1e11, num, num / 1000.0)  # 13 digits: milliseconds
    return pd.DatetimeIndex(pd.to_datetime(secs, unit="s", utc=True), name=INDEX_NAME).as_unit("ns")


def _strict_zoned(s: pd.Series) -> pd.DatetimeIndex | None:
    """Every cell ``YYYY-MM-DD[T ]HH:MM:SS`` with its own offset, in one strict pass (a cell
    without an offset fails it, so none is taken for UTC); None sends the column on."""
    head = str(s.iloc[0])
    if len(head) < 20 or head[10] not in "T ":
        return None
    fmt = f"%Y-%m-%d{head[10]}%H:%M:%S%z"  # the first cell's shape: one strict pass, no second guess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            got = _fit_ns(pd.to_datetime(s, format=fmt, utc=True, errors="coerce"))
        except (ValueError, TypeError, OverflowError):
            return None
    out = got.dt.tz_localize(None).to_numpy(copy=True)  # UTC
    ticks = out.view("i8")
    # a fraction of a second: a clock word, read as the time now (the format writes none)
    unread = np.isnat(out) | (ticks % 1_000_000_000 != 0)
    if not unread.any():
        return pd.DatetimeIndex(out, name=INDEX_NAME).tz_localize("UTC").as_unit("ns")
    odd = unread & (s.fillna("") != "").to_numpy()
    if 2 * np.count_nonzero(odd) > len(s):
        return None
    out[unread] = np.datetime64("NaT")
    if odd.any():  # a few odd cells (garbage, a naive time): each read by its own shape, the rest kept
        cells = _no_clock_words(s[odd].str.strip().reset_index(drop=True))
        out[odd] = _odd_cells(cells)
    return pd.DatetimeIndex(out, name=INDEX_NAME).tz_localize("UTC").as_unit("ns")


def _date_and_time(dates: pd.Series, tods: pd.Series) -> pd.DatetimeIndex | None:
    """A date column and a time-of-day column (``04/03/2025`` and ``09:30``), New York wall
    time, read once per distinct date and distinct time (a minute file repeats each date 390
    times) and put together; None when a cell is missing or unreadable, or a time carries a
    zone: the careful path then reads the joined text and says which rows it refuses."""
    d_codes, d_uniq = pd.factorize(dates.astype(str).reset_index(drop=True))
    t_codes, t_uniq = pd.factorize(tods.astype(str).reset_index(drop=True))
    if (d_codes < 0).any() or (t_codes < 0).any() or not len(d_uniq) or not len(t_uniq):
        return None
    day_text = _slash_dates_to_iso(pd.Series(d_uniq, dtype=object).astype(str).str.strip())
    if not day_text.str.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}|\d{8}").all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        days = pd.to_datetime(day_text, format="mixed", errors="coerce")
        clock = pd.Series(t_uniq, dtype=object).astype(str).str.strip()
        if not clock.str.fullmatch(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[AaPp][Mm])?").all():
            return None  # a zone, a date, words: the careful path
        at = pd.to_datetime("2000-01-03 " + clock, format="mixed", errors="coerce")
    if days.isna().any() or at.isna().any() or getattr(at.dt, "tz", None) is not None:
        return None
    offset = (at - pd.Timestamp("2000-01-03")).to_numpy()
    naive = pd.DatetimeIndex(days.to_numpy()[d_codes] + offset[t_codes])
    ny = naive.tz_localize(NY, ambiguous="NaT", nonexistent="NaT")
    if ny.isna().any():
        return None  # a wall time the clock skipped or met twice: the careful path says which
    return pd.DatetimeIndex(ny.tz_convert("UTC"), name=INDEX_NAME).as_unit("ns")


def _all_zoned(s: pd.Series) -> pd.DatetimeIndex | None:
    """Every cell ISO-8601 with its own offset (New York's -05:00 and -04:00 across a year), read
    in one call; None when a cell lacks a zone or does not parse (the careful path decides)."""
    if not s.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).all():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _fit_ns(pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce"))
    except (ValueError, TypeError, OverflowError):
        return None
    if got.isna().any():
        return None
    return pd.DatetimeIndex(got, name=INDEX_NAME).as_unit("ns")


def _to_datetime(s: pd.Series, utc: bool) -> pd.Series:
    """ISO-8601 first (fast, strict); anything left is tried with pandas' mixed parser."""
    try:
        got = _fit_ns(pd.to_datetime(s, format="ISO8601", utc=utc, errors="coerce"))
    except (ValueError, TypeError, OverflowError):  # offsets among cells read as naive: none read here
        got = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    bad = got.isna()
    if bad.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                retry = _fit_ns(pd.to_datetime(s[bad], format="mixed", utc=utc, errors="coerce"))
            except (ValueError, TypeError):
                retry = None
        if retry is not None and not retry.isna().all():
            if got.isna().all():  # none read as ISO: the retry's type (a zone it found) is the column's
                got = pd.Series(pd.NaT, index=got.index, dtype=retry.dtype)
            got[bad] = retry
    return got


def _fit_ns(got: pd.Series) -> pd.Series:
    """Times a nanosecond index cannot hold (before 1678 or after 2261) become NaT,
    an unreadable row, instead of an overflow that would refuse the whole file."""
    if not pd.api.types.is_datetime64_any_dtype(got) or getattr(got.dt, "unit", "ns") == "ns":
        return got
    lo, hi = got.min(), got.max()
    if pd.isna(lo) or (lo.year > 1677 and hi.year < 2262):  # the common case: no year to look at
        return got.dt.as_unit("ns")
    years = got.dt.year
    return got.where((years > 1677) & (years < 2262)).dt.as_unit("ns")
