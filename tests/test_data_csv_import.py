"""CSV import against small files with the defects real exports have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.engine.data.csv_import import parse_times, read_csv, read_csv_each
from app.engine.data.frame import DataError
from app.engine.data.service import load_bars, symbols_in_file
from app.engine.dates import DATE_ORDER, DateOrder
from app.main import main as cli_main

DATA = Path(__file__).parent / "data"


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_bom_odd_order_extra_columns_and_mixed_zones() -> None:
    r = read_csv(DATA / "bom_mixed_zones.csv")
    assert (r.accepted, r.rejected) == (5, 0)
    assert r.columns["time"] == "Timestamp" and r.columns["open"] == "Open"
    assert list(r.frame.columns) == ["open", "high", "low", "close", "volume"]
    expected = pd.date_range("2025-12-23 14:30", periods=5, freq="5min", tz="UTC")
    assert list(r.frame.index) == list(expected)
    assert str(r.frame.index.tz) == "UTC" and r.frame.index.name == "time"
    # columns were matched by name, not position: open < close in every row of this file
    assert (r.frame["close"] > r.frame["open"]).all()
    assert r.frame["volume"].tolist() == [1000, 1001, 1002, 1003, 1004]


def test_epoch_seconds() -> None:
    r = read_csv(DATA / "epoch_seconds.csv")
    assert r.accepted == 5
    assert r.frame.index[0] == _utc("2025-12-23 14:30")
    assert r.frame.index[-1] == _utc("2025-12-23 14:50")


def test_naive_intraday_is_new_york_time_and_naive_dates_are_the_date() -> None:
    r = read_csv(DATA / "half_day_15m.csv")
    assert r.frame.index[0] == _utc("2025-12-24 14:30")  # 09:30 in New York (EST)
    d = read_csv(DATA / "daily_split_unadjusted.csv")
    first = d.frame.index[0]
    assert first.tz_convert("America/New_York").date().isoformat() == "2024-06-03"
    assert first.tz_convert("UTC").date().isoformat() == "2024-06-03"


def test_bad_rows_are_counted_with_reasons_and_line_numbers() -> None:
    r = read_csv(DATA / "defects_5m.csv")
    assert (r.accepted, r.rejected) == (11, 8)
    assert r.reasons == {
        "missing open": 1, "text in close": 1, "zero or negative price": 2,
        "implausible price (> 10,000,000)": 1, "infinite open": 1,
        "unreadable date/time": 1, "negative volume": 1,
    }
    assert r.examples["missing open"] == [8]
    assert r.examples["text in close"] == [9]
    assert r.examples["zero or negative price"] == [10, 11]
    assert r.examples["unreadable date/time"] == [17]
    assert any("lines 10, 11" in line for line in r.reason_lines())
    assert np.isfinite(r.frame.to_numpy()).all()


def test_adjusted_close_column_is_kept_for_cleaning() -> None:
    r = read_csv(DATA / "daily_split_adj_close.csv")
    assert r.has_adjusted and r.columns["adj_close"] == "Adj Close"
    assert not read_csv(DATA / "daily_split_unadjusted.csv").has_adjusted


@pytest.mark.parametrize(("name", "message"), [
    ("empty.csv", "is empty"),
    ("header_only.csv", "no data rows"),
    ("missing_columns.csv", "lacks required column(s): low, volume"),
])
def test_unusable_files_raise_one_clear_line(name: str, message: str) -> None:
    with pytest.raises(DataError) as err:
        read_csv(DATA / name)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="folder"):
        read_csv(tmp_path)
    binary = tmp_path / "chart.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    with pytest.raises(DataError, match="binary"):
        read_csv(binary)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n  \n")
    with pytest.raises(DataError, match="empty"):
        read_csv(blank)


def test_semicolon_files_and_split_date_time_columns(tmp_path: Path) -> None:
    f = tmp_path / "eu.csv"
    f.write_text("Date;Time;Open;High;Low;Close;Volume\n"
                 "2025-12-23;09:30;10;11;9;10.5;100\n2025-12-23;09:35;10.5;11;10;10.8;0\n")
    r = read_csv(f)
    assert r.accepted == 2
    assert r.frame.index[1] == _utc("2025-12-23 14:35")


def test_yfinance_to_csv_three_line_header(tmp_path: Path) -> None:
    f = tmp_path / "yf.csv"
    f.write_text("Price,Close,High,Low,Open,Volume\nTicker,PLTR,PLTR,PLTR,PLTR,PLTR\n"
                 "Datetime,,,,,\n"
                 "2025-12-23 14:30:00+00:00,194.18,195.37,192.72,192.82,1749932\n"
                 "2025-12-23 14:35:00+00:00,194.70,194.80,abc,194.14,525137\n")
    r = read_csv(f)
    assert (r.accepted, r.rejected) == (1, 1)
    assert r.frame["open"].iloc[0] == 192.82 and r.columns["time"] == "Datetime"
    assert r.examples["text in low"] == [5]


def test_lines_with_extra_fields_are_counted(tmp_path: Path) -> None:
    f = tmp_path / "ragged.csv"
    f.write_text("date,open,high,low,close,volume\n2025-12-22,1,2,0.5,1.5,10\n"
                 "2025-12-23,1,2,0.5,1.5,10,oops,more\n2025-12-24,1,2,0.5,1.5\n")
    r = read_csv(f)
    assert r.accepted == 1 and r.rejected == 2
    assert r.reasons == {"malformed line (wrong number of fields)": 1, "missing volume": 1}
    # each by its own line: the skipped one once moved every later line number up by one
    assert r.examples == {"malformed line (wrong number of fields)": [3], "missing volume": [4]}
    assert r.reason_lines()[0].endswith("(lines 3)") or r.reason_lines()[1].endswith("(lines 3)")


def test_line_numbers_count_the_lines_the_parser_skipped(tmp_path: Path) -> None:
    """Blank lines, lines with extra fields and a quoted cell over two lines are all lines of the
    file: a refusal names the line the user finds in an editor."""
    f = tmp_path / "gappy.csv"
    f.write_text("\ntimestamp,open,high,low,close,volume,note\n"  # a blank line before the header
                 "2024-03-05 14:30:00+00:00,1,1,1,1,1,ok\n"  # line 3
                 "\n   \n"
                 "2024-03-05 14:31:00+00:00,1,1,1,1,1,ok,extra\n"  # line 6: too many fields
                 '2024-03-05 14:32:00+00:00,1,1,1,1,1,"two\nlines"\n'  # lines 7-8
                 "2024-03-05 14:33:00+00:00,1,x,1,1,1,ok\n")  # line 9
    r = read_csv(f)
    assert len(r.frame) == 2
    assert r.examples == {"malformed line (wrong number of fields)": [6], "text in high": [9]}


@pytest.mark.parametrize("above, below, line", [("", "\n\n", 3), ("\n\n", "\n", 5)])
def test_blank_lines_around_the_rows_keep_the_line_numbers(tmp_path: Path, above: str, below: str,
                                                           line: int) -> None:
    f = tmp_path / "blank.csv"
    f.write_text(f"{above}timestamp,open,high,low,close,volume\n2024-03-05 14:30:00+00:00,1,1,1,1,1\n"
                 f"2024-03-05 14:31:00+00:00,1,x,1,1,1\n{below}")
    assert read_csv(f).examples == {"text in high": [line]}


def test_skipped_lines_are_still_counted_where_their_numbers_cannot_be_found(tmp_path: Path) -> None:
    """A cell over Python's csv field limit (128 KB of junk) stops the pass that numbers the lines:
    the malformed line is still counted and the file still read, but no row is named by a line
    that could be wrong (the blank line moved every later one)."""
    f = tmp_path / "junk.csv"
    f.write_text("timestamp,open,high,low,close,volume\n"
                 f"2024-03-05 14:30:00+00:00,1,1,1,1,{'9' * 200_000}\n\n"
                 "2024-03-05 14:31:00+00:00,1,1,1,1,1,extra\n"
                 "2024-03-05 14:32:00+00:00,1,x,1,1,1\n"
                 "2024-03-05 14:33:00+00:00,1,1,1,1,1\n")
    r = read_csv(f)
    assert len(r.frame) == 1 and r.reasons["malformed line (wrong number of fields)"] == 1
    assert r.reasons["text in high"] == 1 and r.examples == {}


def test_a_bad_ticker_is_named_by_its_line_after_skipped_lines(tmp_path: Path) -> None:
    f = tmp_path / "two.csv"
    f.write_text("symbol,timestamp,open,high,low,close,volume\n"
                 "SPY,2024-03-05 14:30:00+00:00,1,1,1,1,1\n\n\n"
                 "SPY,2024-03-05 14:31:00+00:00,1,1,1,1,1,9\n"
                 "PLTR,2024-03-05 14:31:00+00:00,1,1,1,1,\n"
                 "$$$,2024-03-05 14:32:00+00:00,1,1,1,1,1\n")
    with pytest.raises(DataError, match="line 7"):
        read_csv(f, "SPY")
    f.write_text(f.read_text().replace("$$$", "SPY"))
    spy, pltr = read_csv_each(f)
    assert spy.examples == {"malformed line (wrong number of fields)": [5]}  # counted once, with the first
    assert pltr.examples == {"missing volume": [6]} and "malformed" not in " ".join(pltr.reasons)


def test_parse_times_forms() -> None:
    s = pd.Series(["2025-12-23 14:30:00+00:00", "2025-12-23 09:35:00-05:00", "2025-12-23T14:40:00Z",
                   "2025-12-23 09:45", "1766501400", "1766501700000", "12/23/2025 10:00",
                   "garbage", "", "2025-03-09 02:30:00"])  # the last one never existed in New York
    got = parse_times(s)
    want = ["14:30", "14:35", "14:40", "14:45", "14:50", "14:55", "15:00"]
    assert [t.strftime("%H:%M") for t in got[:7]] == want
    assert got[7:].isna().all()


# ---------------------------------------------------------------- a symbol column
def write_two_symbols(path: Path) -> Path:
    """Rows of PLTR and SPY interleaved at the same times (as a screener export lists them)."""
    rows = ["Date Time,Ticker,Open,High,Low,Close,Volume"]
    for i in range(5):
        t = f"2025-12-23 {14 + (30 + 5 * i) // 60}:{(30 + 5 * i) % 60:02d}:00+00:00"
        rows.append(f"{t},pltr,{190 + i},{191 + i},{189 + i},{190.5 + i},{1000 + i}")
        rows.append(f"{t},SPY,{680 + i},{681 + i},{679 + i},{680.5 + i},{5000 + i}")
    rows.append("2025-12-23 14:55:00+00:00,PLTR,195,196,194,195.5,abc")  # line 12: one bad PLTR row
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_symbol_column_splits_the_rows_by_stock(tmp_path: Path) -> None:
    f = write_two_symbols(tmp_path / "watch.csv")
    spy = read_csv(f, "spy")
    assert spy.symbol == "SPY" and spy.columns["symbol"] == "Ticker"
    assert (spy.accepted, spy.rejected) == (5, 0)
    assert spy.frame["open"].tolist() == [680, 681, 682, 683, 684]
    pltr = read_csv(f, "PLTR")
    assert (pltr.accepted, pltr.rejected) == (5, 1)
    assert pltr.examples["text in volume"] == [12]  # the file's own line, not the line within PLTR's rows
    assert [r.symbol for r in read_csv_each(f)] == ["PLTR", "SPY"]
    with pytest.raises(DataError, match=r"holds several symbols \(PLTR, SPY\)"):
        read_csv(f)


def test_load_bars_takes_one_stock_and_names_the_held_ones_when_asked_for_another(tmp_path: Path) -> None:
    f = write_two_symbols(tmp_path / "watch.csv")
    bars, _, _ = load_bars(f, "SPY", "5m")
    assert len(bars) == 5 and {b.symbol for b in bars} == {"SPY"}
    assert all(b.close > 600 for b in bars), "no PLTR price leaked into SPY's bars"
    with pytest.raises(DataError, match="holds PLTR, SPY, not NVDA"):
        load_bars(f, "NVDA", "5m")


def test_symbols_in_file_by_column_else_by_name(tmp_path: Path) -> None:
    assert symbols_in_file(write_two_symbols(tmp_path / "SPY_5m_watch.csv")) == ["PLTR", "SPY"]  # content first
    named = tmp_path / "QQQ_5m_2025-12-23.csv"
    named.write_bytes((DATA / "epoch_seconds.csv").read_bytes())
    assert symbols_in_file(named) == ["QQQ"]
    assert symbols_in_file(DATA / "epoch_seconds.csv") == []


@pytest.mark.parametrize(("cell", "shown"), [("SP Y!", "'SP Y!' is not a ticker symbol"),
                                             ("N/A", "the symbol is missing ('N/A')")])
def test_a_bad_ticker_in_the_symbol_column_refuses_the_file(tmp_path: Path, cell: str, shown: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("timestamp,symbol,open,high,low,close,volume\n"
                 "2025-12-23 14:30:00+00:00,SPY,680,681,679,680.5,5000\n"
                 f"2025-12-23 14:35:00+00:00,{cell},680,681,679,680.5,5000\n")
    with pytest.raises(DataError) as err:
        read_csv(f, "SPY")
    assert f"bad.csv line 3: {shown} in column symbol" in str(err.value)


@pytest.mark.parametrize("rows, first", [
    (["13/01/2025", "14/01/2025", "15/01/2025"], "2025-01-13"),  # a day above 12: day-first, said by the file
    (["01/13/2025", "01/14/2025", "01/15/2025"], "2025-01-13"),  # a second field above 12: month-first
    (["02/01/2025", "03/01/2025", "06/01/2025", "07/01/2025"], "2025-01-02"),  # days apart, not months: day-first
    (["01/02/2025", "01/03/2025", "01/06/2025", "01/07/2025"], "2025-01-02"),  # month-first, as US exports
    (["02/01/2025 09:30", "02/01/2025 09:35", "03/01/2025 09:30"], "2025-01-02"),  # with times
])
def test_slash_dates_are_read_in_the_order_the_file_says(tmp_path: Path, rows: list[str], first: str) -> None:
    """dd/mm/yyyy was silently read as mm/dd/yyyy, moving bars into the wrong months."""
    path = tmp_path / "bars.csv"
    path.write_text("date,open,high,low,close,volume\n" + "".join(f"{r},10,11,9,10.5,100\n" for r in rows))
    result = read_csv(path)
    days = [t.tz_convert("America/New_York").strftime("%Y-%m-%d") for t in result.frame.index]
    assert result.rejected == 0 and days[0] == first
    assert all(d.startswith("2025-01") for d in days), days


ONE_DAY = "date,time,open,high,low,close,volume\n" + "".join(
    f"04/03/2025,09:{m:02d},100,101,99,100.5,1000\n" for m in (30, 35, 40))


@pytest.fixture
def date_order() -> Iterator[DateOrder]:
    yield DATE_ORDER
    DATE_ORDER.set("")  # what a test said is not the next one's


def test_dates_that_read_both_ways_are_refused_not_guessed(tmp_path: Path, date_order: DateOrder) -> None:
    """One day's bars stamped 04/03/2025: 4 March to a European export, April 3rd to an
    American one. Nothing in the file says which, so the user is asked, never guessed for."""
    path = tmp_path / "PLTR_5m.csv"
    path.write_text(ONE_DAY)
    with pytest.raises(DataError, match=r"PLTR_5m\.csv: dates like 04/03/2025 .* --dayfirst or --monthfirst"):
        read_csv(path)
    date_order.set("dmy")
    assert {t.strftime("%Y-%m-%d") for t in read_csv(path).frame.index} == {"2025-03-04"}
    date_order.set("mdy")
    assert {t.strftime("%Y-%m-%d") for t in read_csv(path).frame.index} == {"2025-04-03"}


def test_a_file_that_says_its_date_order_is_read_without_asking(tmp_path: Path) -> None:
    path = tmp_path / "PLTR_5m.csv"
    path.write_text(ONE_DAY.replace("04/03/2025", "13/03/2025"))  # only day-first makes sense
    assert {t.strftime("%Y-%m-%d") for t in read_csv(path).frame.index} == {"2025-03-13"}
    path.write_text(ONE_DAY.replace("04/03/2025", "03/03/2025"))  # the same date either way
    assert {t.strftime("%Y-%m-%d") for t in read_csv(path).frame.index} == {"2025-03-03"}


def test_the_command_line_takes_dayfirst_before_or_after_the_command(app_home: Path, tmp_path: Path,
                                                                     date_order: DateOrder,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "PLTR_5m.csv"
    path.write_text(ONE_DAY)
    assert cli_main(["data", "import", str(path)]) == 2
    assert "--dayfirst or --monthfirst" in capsys.readouterr().err
    assert cli_main(["data", "import", str(path), "--dayfirst"]) == 0
    assert "2025-03-04 .. 2025-03-04" in capsys.readouterr().out
    assert cli_main(["--monthfirst", "data", "import", str(path), "--replace"]) == 0
    assert "2025-04-03 .. 2025-04-03" in capsys.readouterr().out


@pytest.mark.parametrize("sep", [".", "-"])
def test_day_first_dates_with_dots_or_dashes_are_read_as_slashes_are(tmp_path: Path, sep: str,
                                                                     date_order: DateOrder) -> None:
    """dd.mm.yyyy is the everyday German form: it was read month-first, silently."""
    path = tmp_path / "PLTR_5m.csv"
    path.write_text(ONE_DAY.replace("04/03/2025", f"04{sep}03{sep}2025"))
    with pytest.raises(DataError, match="--dayfirst or --monthfirst"):
        read_csv(path)
    date_order.set("dmy")
    assert {t.strftime("%Y-%m-%d") for t in read_csv(path).frame.index} == {"2025-03-04"}
    date_order.set("")
    path.write_text(ONE_DAY.replace("04/03/2025", f"13{sep}03{sep}2025"))
    assert {t.strftime("%Y-%m-%d") for t in read_csv(path).frame.index} == {"2025-03-13"}


@pytest.mark.parametrize("content, message", [
    ('{"bars": [' + ",".join(f'{{"t": {i}, "c": 1.5}}' for i in range(60_000)) + "]}\n",
     "its first line is over 10,000 characters long"),
    (",".join(f"c{i}" for i in range(300)) + "\n" + ",".join("1" for _ in range(300)) + "\n",
     "its first line has 300 columns"),
], ids=["minified-json", "300-columns"])
def test_a_file_on_one_huge_line_is_refused_at_once(tmp_path: Path, content: str, message: str) -> None:
    """Each of these once took the parser tens of seconds (and gigabytes) before a refusal."""
    path = tmp_path / "PLTR.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_csv(path)


def test_an_unnamed_first_column_of_dates_is_the_time_column(tmp_path: Path) -> None:
    """What pandas' DataFrame.to_csv() writes (backtesting.py's own GOOG.csv): once refused."""
    path = tmp_path / "GOOG.csv"
    path.write_text(",Open,High,Low,Close,Volume\n2004-08-19,100.0,104.06,95.96,100.34,22351900\n"
                    "2004-08-20,101.01,109.08,100.5,108.31,11428600\n")
    result = read_csv(path)
    assert len(result.frame) == 2 and result.frame["close"].iloc[-1] == 108.31
    assert str(result.frame.index[0].date()) == "2004-08-19"


def test_backtesting_pys_own_goog_file_is_read() -> None:
    goog = pytest.importorskip("backtesting.test").__file__
    path = Path(goog).parent / "GOOG.csv"
    if not path.exists():
        pytest.skip("backtesting.py ships no GOOG.csv here")
    result = read_csv(path)
    assert len(result.frame) > 2_000 and result.rejected == 0


def test_a_quote_never_closed_is_said_in_words(tmp_path: Path) -> None:
    """The parser said "C error: EOF inside string starting at row 2"."""
    path = tmp_path / "PLTR.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-01-02 14:30:00+00:00,1,2,0.5,1.5,100\n"
                    '2024-01-02 14:31:00+00:00,"1,2,0.5,1.5,100\n2024-01-02 14:32:00+00:00,1,2,0.5,1.5,100\n')
    with pytest.raises(DataError, match=r'a quote \(\"\) opened on line 3 is never closed'):
        read_csv(path)


@pytest.mark.parametrize("rows, first", [
    (["2020-01-02,1,2,0.5,1.5,100,x,y", "2020-01-03,1,2,0.5,1.5,100"], "2020-01-03"),  # two extra fields on row 1
    (["2020-01-02,1,2,0.5,1.5,100,", "2020-01-03,1,2,0.5,1.5,100,"], "2020-01-02"),  # a trailing comma (Excel)
])
def test_extra_fields_never_turn_the_dates_into_an_index(tmp_path: Path, rows: list[str], first: str) -> None:
    """An outside review got a TypeError traceback, and "invalid literal for int()" for trailing commas.
    A first row with extra fields is refused as malformed; a trailing comma is no field."""
    path = tmp_path / "SPY.csv"
    path.write_text("date,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    r = read_csv(path)
    assert r.accepted + r.rejected == 2 and set(r.frame["close"]) == {1.5}
    assert str(r.frame.index[0].date()) == first


def test_new_york_offsets_and_epoch_seconds_read_as_the_careful_path_does(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-08 14:30", periods=6, freq="1D", tz="UTC")  # across the DST change
    ny = tmp_path / "NY.csv"
    ny.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{t.tz_convert('America/New_York').isoformat()},1,2,0.5,1.5,100\n" for t in times))
    epoch = tmp_path / "EP.csv"
    epoch.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{int(t.timestamp())},1,2,0.5,1.5,100\n" for t in times))
    for path in (ny, epoch):
        got = read_csv(path).frame.index
        assert list(got) == list(times), path.name


# ------------------------------------------------------------ the fast layouts read as the careful path does
def _minutes() -> pd.DatetimeIndex:
    """Two sessions either side of a clock change (EST then EDT), one bar every 7 minutes."""
    days = [pd.date_range(f"{d} 09:30", f"{d} 15:59", freq="7min", tz="America/New_York")
            for d in ("2025-03-07", "2025-03-10")]
    return days[0].append(days[1])


def _bars(times: pd.Series | pd.Index, n: int, **extra: object) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    c = 20 + np.cumsum(rng.normal(0, 0.05, n))
    return pd.DataFrame({**extra, "time": times, "open": c, "high": c + 0.1, "low": c - 0.1, "close": c,
                         "volume": 100})


def test_a_date_column_and_a_time_column_read_once_per_cell_as_the_joined_text_reads(tmp_path: Path) -> None:
    ny = _minutes()
    split = _bars(ny.strftime("%I:%M %p"), len(ny)).rename(columns={"time": "Time"})
    split.insert(0, "Date", ny.strftime("%d/%m/%Y"))  # day-first: the 10th says so
    split.to_csv(tmp_path / "split.csv", index=False)
    joined = _bars(ny.strftime("%Y-%m-%d %H:%M:%S"), len(ny))
    joined.to_csv(tmp_path / "joined.csv", index=False)
    a, b = read_csv(tmp_path / "split.csv"), read_csv(tmp_path / "joined.csv")
    assert a.accepted == b.accepted == len(ny)
    assert list(a.frame.index) == list(b.frame.index) == list(ny.tz_convert("UTC"))
    split.loc[3, "Time"] = "soon"  # one cell the fast path cannot read: the careful path names the row
    split.to_csv(tmp_path / "split.csv", index=False)
    c = read_csv(tmp_path / "split.csv")
    assert (c.accepted, c.rejected) == (len(ny) - 1, 1) and c.reasons == {"unreadable date/time": 1}


def test_epoch_numbers_and_new_york_offsets_read_as_the_careful_path_does(tmp_path: Path) -> None:
    ny = _minutes()
    utc = ny.tz_convert("UTC")
    _bars(utc.as_unit("s").asi8, len(ny)).to_csv(tmp_path / "secs.csv", index=False)
    _bars(utc.as_unit("ms").asi8, len(ny)).to_csv(tmp_path / "ms.csv", index=False)
    offsets = ny.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"(\d\d)$", r":\1", regex=True)
    _bars(offsets, len(ny)).to_csv(tmp_path / "zoned.csv", index=False)
    for name in ("secs", "ms", "zoned"):
        r = read_csv(tmp_path / f"{name}.csv")
        assert r.accepted == len(ny) and list(r.frame.index) == list(utc), name
    mixed = _bars(offsets, len(ny))
    mixed.loc[2, "time"] = ny[2].strftime("%Y-%m-%dT%H:%M:%S")  # one naive cell: New York time, not UTC
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    assert list(read_csv(tmp_path / "mixed.csv").frame.index) == list(utc)


@pytest.mark.parametrize("cells", [
    # UTC: an empty cell, one past what a nanosecond index holds, one with a fraction of a second
    ["2024-03-08 14:30:00+00:00", "", "2400-01-02 14:30:00+00:00", "2024-03-08 14:32:00.5+00:00"],
    # New York wall time: a time the clock skipped (2024-03-10 02:30) and one it met twice
    ["2024-03-08 09:30:00", "2024-03-10 02:30:00", "2024-11-03 01:30:00", "2024-11-04 09:30:00"],
    ["2024-03-08", "20240311", "2024-03-12"],  # daily dates: New York midnight
])
def test_times_the_parser_reads_itself_are_the_times_the_text_reads_to(tmp_path: Path, cells: list[str]) -> None:
    """ISO-8601 time columns are read by the CSV parser itself (three times as fast as text
    read, then parsed): the bars, and the rows refused as unreadable, are the same as from
    the text."""
    csv = tmp_path / "bars.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},10,11,9,10.5,100\n" for c in cells))
    got = read_csv(csv)
    from_text = parse_times(pd.Series(cells, dtype=object))
    assert list(got.frame.index) == [t for t in from_text if not pd.isna(t)]
    assert got.rejected == int(from_text.isna().sum())
    assert got.reasons.get("unreadable date/time", 0) == got.rejected


def test_a_quoted_name_holding_the_separator_does_not_move_the_time_column(tmp_path: Path) -> None:
    """A header and first row with a quoted comma before the time column once made the parser read
    the prices' column as dates: every bar refused as "implausible price", or volumes of 2000 read as
    the year 2000 in nanoseconds, silently."""
    csv = tmp_path / "bars.csv"
    rows = "".join(f'"Acme, Inc",2024-03-05T14:{30 + i:02d}:00+00:00,{3000 + i},{3005 + i},2995,3001,{2000 + i}\n'
                   for i in range(30))
    csv.write_text('"Name, Inc",timestamp,open,high,low,close,volume\n' + rows)
    got = read_csv(csv)
    assert got.rejected == 0 and len(got.frame) == 30
    assert got.frame["open"].iloc[0] == 3000 and got.frame["volume"].iloc[-1] == 2029
    assert got.frame.index[0] == _utc("2024-03-05 14:30")


@pytest.mark.parametrize("cells", [["2024-03-05T14:30:00+00:00", "2024-03-05T14:31:00z", "2024-03-05T14:32:00+00:00"],
                                   ["2024-03-05T14:30:00z", "2024-03-05T14:31:00z"]])
def test_a_lowercase_z_is_utc_not_a_traceback(tmp_path: Path, cells: list[str]) -> None:
    csv = tmp_path / "bars.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},1,1,1,1,1\n" for c in cells))
    got = read_csv(csv)
    assert got.rejected == 0 and got.frame.index[1] == _utc("2024-03-05 14:31")


@pytest.mark.parametrize("first, word", [("2024-03-05 14:30:00+00:00", "now"), ("2024-03-05 09:30:00", "today"),
                                         ("2024-03-05 14:30:00+00:00", "Today"),
                                         ("2024-03-05T09:30:00-05:00", " now")])  # read as text: New York's offsets
def test_the_words_now_and_today_are_refused_not_stamped_with_the_clock(tmp_path: Path, first: str,
                                                                        word: str) -> None:
    """pandas reads "now" and "today" as the clock's time: one such cell once became a bar dated the
    day of the import, and a backtest reported hundreds of thousands of missing bars up to it."""
    csv = tmp_path / "bars.csv"
    csv.write_text(f"timestamp,open,high,low,close,volume\n{first},1,1,1,1,1\n{word},1,1,1,1,1\n")
    got = read_csv(csv)
    assert len(got.frame) == 1 and got.rejected == 1
    assert list(got.examples.values()) == [[3]]  # line 3 refused, said as unreadable or as after the read
    assert got.frame.index[0] < _utc("2024-03-06")


def test_times_written_with_the_word_utc_are_utc(tmp_path: Path) -> None:
    """"2024-03-05 14:30:00 UTC" (a database export's way) is read as an offset in one pass; each
    cell once went to the slow general parser (45 s a million rows). A cell without it is still
    New York time, and a bad one is still refused."""
    csv = tmp_path / "bars.csv"
    cells = ["2024-03-05 14:30:00 UTC", "2024-03-05 14:31:00 GMT", "2024-03-05 09:32:00", "garbage",
             "2024-03-05 14:34:00UTC"]
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},1,1,1,1,1\n" for c in cells))
    got = read_csv(csv)
    assert list(got.frame.index) == [_utc(f"2024-03-05 14:3{m}") for m in (0, 1, 2, 4)]
    assert got.examples == {"unreadable date/time": [5]}


@pytest.mark.parametrize("cells, refused", [
    (["2024-03-08T09:30:00-05:00", "", "now", "2024-03-08T09:33:00", "2024-03-11T09:30:00-04:00"], [3, 4]),
    (["2024-03-08T09:30:00-05:00", "today", "2024-03-08T09:33:00-05:00", "2024-03-11T09:30:00-04:00"], [3]),
])
def test_new_york_offsets_with_an_empty_a_naive_and_a_clock_cell(tmp_path: Path, cells: list[str],
                                                                 refused: list[int]) -> None:
    """A column of New York offsets is parsed before its empty cells and clock words are looked at:
    an empty cell, "now" and "today" (which the strict pass reads as the clock's time) are still
    refused by line, and a cell without an offset is still New York wall time (not taken for UTC)."""
    csv = tmp_path / "bars.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},1,1,1,1,1\n" for c in cells))
    got = read_csv(csv)
    assert list(got.frame.index) == [_utc("2024-03-08 14:30"), _utc("2024-03-08 14:33"), _utc("2024-03-11 13:30")]
    assert got.examples == {"unreadable date/time": refused}


def test_offsets_written_after_a_space_are_read_as_offsets(tmp_path: Path) -> None:
    """"2024-03-08 09:30:00 -0500" (a space before the offset): the same times as without it; a
    cell without an offset is still New York time, and a bad one is still refused by line."""
    csv = tmp_path / "bars.csv"
    cells = ["2024-03-08 09:30:00 -0500", "2024-03-08 09:31:00 -05:00", "2024-03-08 14:32:00 +0000",
             "2024-03-08 09:33:00", "junk -0500", "2024-03-11 09:30:00 -0400"]
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},1,1,1,1,1\n" for c in cells))
    got = read_csv(csv)
    assert list(got.frame.index) == [_utc(f"2024-03-08 14:3{m}") for m in range(4)] + [_utc("2024-03-11 13:30")]
    assert got.examples == {"unreadable date/time": [6]}


@pytest.mark.parametrize("first", ["2024-03-05 09:30:00", "2024-03-05T14:30:00Z", "2024-03-05T09:30:00-05:00"])
def test_a_time_without_a_date_is_refused_not_dated_today(tmp_path: Path, first: str) -> None:
    """"09:31" or "9:30 AM" alone was read by pandas' general parser as that time on the day of the
    import (one such cell in a real file made "420 whole sessions missing"); a year alone became
    New Year's Day. Each is refused by its line."""
    csv = tmp_path / "bars.csv"
    cells = [first, "09:31", "9:32 AM", "12:00 -05:00", "2024", "T37"]
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},1,1,1,1,1\n" for c in cells))
    got = read_csv(csv)
    assert list(got.frame.index) == [_utc("2024-03-05 14:30")]
    assert got.examples == {"unreadable date/time": [3, 4, 5, 6, 7]}


def test_offsets_of_hours_alone_are_read(tmp_path: Path) -> None:
    """PostgreSQL writes "2024-03-05 09:30:00-05": such a column across a change of offset raised
    pandas' "Mixed timezones detected" (a traceback in a replay); it is read as offsets, beside a
    naive New York cell and a bad one refused by line."""
    csv = tmp_path / "bars.csv"
    cells = ["2024-03-05 09:30:00-05", "2024-03-05 09:31:00", "2024-03-15 09:32:00-04", "junk",
             "2024-03-15 13:33:00+00"]
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(f"{c},1,1,1,1,1\n" for c in cells))
    got = read_csv(csv)
    assert list(got.frame.index) == [_utc("2024-03-05 14:30"), _utc("2024-03-05 14:31"), _utc("2024-03-15 13:32"),
                                     _utc("2024-03-15 13:33")]
    assert got.examples == {"unreadable date/time": [5]}


def test_rows_with_extra_fields_are_refused_when_the_first_row_has_them_too(tmp_path: Path) -> None:
    """A first row wider than the header made the parser keep every row up to its width, dropping
    the fields past the header's without a word (a price written 1,234.5 became 1 and 234.5): such
    rows are refused by line like any row with extra fields. A trailing comma is no extra field."""
    f = tmp_path / "wide.csv"
    f.write_text("timestamp,open,high,low,close,volume\n"
                 "2024-03-05T14:31:00Z,10,11,9,10,100,1,2\n"  # line 2
                 "2024-03-05T14:32:00Z,10,11,9,10,100\n"
                 "\n"
                 "2024-03-05T14:33:00Z,10,11,9,10,100,\n"  # a trailing comma: kept
                 "2024-03-05T14:34:00Z,10,11,9,x,100\n"  # line 6
                 "2024-03-05T14:35:00Z,1,234.5,1,240,1,230,1,235\n")  # line 7: too wide for the parser too
    r = read_csv(f)
    assert list(r.frame.index) == [_utc("2024-03-05 14:32"), _utc("2024-03-05 14:33")]
    assert r.accepted + r.rejected == 5
    assert r.examples == {"malformed line (wrong number of fields)": [2, 7], "text in close": [6]}


def test_a_trailing_comma_on_every_row_keeps_the_rows_and_their_lines(tmp_path: Path) -> None:
    f = tmp_path / "trailing.csv"
    f.write_text("timestamp,open,high,low,close,volume\n\n2024-03-05T14:31:00Z,10,11,9,10,100,\n"
                 "2024-03-05T14:32:00Z,10,11,9,10,100,\n\n2024-03-05T14:33:00Z,10,11,9,x,100,\n")
    r = read_csv(f)
    assert len(r.frame) == 2 and r.examples == {"text in close": [6]}


def test_one_ambiguous_slash_date_among_iso_times_costs_its_row_not_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bars.csv"
    f.write_text("timestamp,open,high,low,close,volume\n2025-04-03 09:30:00,1,1,1,1,1\n"
                 "04/03/2025 09:31,1,1,1,1,1\n2025-04-03 09:32:00,1,1,1,1,1\n")
    r = read_csv(f)
    assert len(r.frame) == 2 and r.examples == {"unreadable date/time": [3]}


def test_slash_dates_that_say_both_orders_are_refused_not_guessed(tmp_path: Path) -> None:
    """13/04/2025 is day-first and 04/14/2025 month-first: 05/04/2025 cannot be told, and was read
    as May 4 without a word."""
    f = tmp_path / "bars.csv"
    f.write_text("date,open,high,low,close,volume\n13/04/2025,1,1,1,1,1\n04/14/2025,1,1,1,1,1\n"
                 "05/04/2025,1,1,1,1,1\n2025-04-15,1,1,1,1,1\n")
    r = read_csv(f)
    assert [str(t.date()) for t in r.frame.index] == ["2025-04-15"]
    assert r.examples == {"unreadable date/time": [2, 3, 4]}
