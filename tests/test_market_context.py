"""Market context: the watchlist's move at each bar time, the same in training and live.

A model that learned "PLTR rises when the market fell less than it did" is useless live if the
live market feature is computed differently; these tests pin the two paths to each other, and
the features to the past.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

os.environ.setdefault("AI_TRADER_TF_THREADS", "1")

import numpy as np
import pandas as pd
import pytest

from app.engine.data.frame import make_frame
from app.engine.data.market import CONTEXT_FEATURES, MarketTape, context_features, market_returns
from app.engine.ml.dataset import build_dataset, feature_list
from app.engine.ml.live import market_note
from app.engine.types import Bar


def walk(n: int, seed: int, start: str = "2025-06-02 13:30", market: np.ndarray | None = None,
         beta: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.003, n) + (beta * market if market is not None else 0.0)
    c = 50 * np.exp(np.cumsum(r))
    o = np.r_[c[0], c[:-1]]
    idx = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    return make_frame(idx, o, np.maximum(o, c) * 1.001, np.minimum(o, c) * 0.999, c, np.full(n, 1e4))


def three(n: int = 400) -> dict[str, pd.DataFrame]:
    common = np.random.default_rng(0).normal(0, 0.004, n)
    frames = {s: walk(n, k + 1, market=common, beta=1.0) for k, s in enumerate(("AAA", "BBB", "CCC"))}
    frames["CCC"] = frames["CCC"].drop(frames["CCC"].index[[100, 101, 250]])  # CCC misses three bars
    return frames


def bar(symbol: str, t: pd.Timestamp, close: float) -> Bar:
    return Bar(symbol, t.to_pydatetime(), close, close, close, close, 1.0)


def test_the_market_is_the_mean_move_of_the_symbols_that_traded_then() -> None:
    frames = three()
    mkt = market_returns({s: f["close"] for s, f in frames.items()})
    t = frames["AAA"].index[50]
    own = [float(np.log(f["close"].loc[t] / f["close"].shift(1).loc[t])) for f in frames.values()]
    assert mkt.loc[t] == pytest.approx(np.mean(own), abs=1e-15)
    # CCC has no bar at 100: the market there is the other two; at 102 CCC's move is since its bar 99
    t100, t102 = frames["AAA"].index[100], frames["AAA"].index[102]
    two = [float(np.log(frames[s]["close"].iloc[100] / frames[s]["close"].iloc[99])) for s in ("AAA", "BBB")]
    assert mkt.loc[t100] == pytest.approx(np.mean(two), abs=1e-15)
    ccc = frames["CCC"]["close"]
    since = float(np.log(ccc.loc[t102] / ccc.loc[frames["AAA"].index[99]]))
    rest = [float(np.log(frames[s]["close"].iloc[102] / frames[s]["close"].iloc[101])) for s in ("AAA", "BBB")]
    assert mkt.loc[t102] == pytest.approx(np.mean(rest + [since]), abs=1e-15)
    assert np.isnan(mkt.iloc[0])  # nobody has a previous bar at the first time


def test_context_features_read_no_later_bar() -> None:
    rng = np.random.default_rng(3)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    mkt = rng.normal(0, 0.005, 300)
    before = context_features(close, mkt)
    close2, mkt2 = close.copy(), mkt.copy()
    close2[201:] *= 3.0
    mkt2[201:] = -0.2
    after = context_features(close2, mkt2)
    np.testing.assert_array_equal(before[:201], after[:201])
    assert not np.allclose(before[201:], after[201:], equal_nan=True)
    assert before.shape == (300, len(CONTEXT_FEATURES))
    assert np.isfinite(before[60:]).all()  # warmed up after the 40-bar volatility window


def test_the_newest_rows_alone_are_the_same_numbers_as_the_whole_history() -> None:
    rng = np.random.default_rng(4)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    mkt = rng.normal(0, 0.005, 400)
    mkt[[120, 390]] = np.nan  # a bar time nobody else traded: the windows over it are unknown
    full = context_features(close, mkt)
    np.testing.assert_array_equal(context_features(close, mkt, rows=60), full[-60:])
    assert np.isnan(full[-10:, CONTEXT_FEATURES.index("mkt_ret_1")]).sum() == 1


def test_one_symbol_is_its_own_market_and_moves_nothing_relative_to_it() -> None:
    frame = walk(300, 9)
    ds = build_dataset(frame, "5m")
    assert ds.columns == feature_list("5m") and ds.columns[-len(CONTEXT_FEATURES):] == CONTEXT_FEATURES
    ctx = ds.X[100:, -len(CONTEXT_FEATURES):]
    rel = ctx[:, CONTEXT_FEATURES.index("rel_ret_6")]
    np.testing.assert_allclose(rel, 0.0, atol=1e-12)
    np.testing.assert_allclose(ctx[:, CONTEXT_FEATURES.index("vol_ratio")],
                               ctx[:, CONTEXT_FEATURES.index("mkt_vol_ratio")], atol=1e-12)


def test_the_live_tape_gives_the_market_training_read() -> None:
    """The bot records a bar time's bars of every symbol, then the models read: the tape's
    returns must be the training market's, missing bars included."""
    frames = three()
    mkt = market_returns({s: f["close"] for s, f in frames.items()})
    tape = MarketTape()
    for t in frames["AAA"].index:
        for s, f in frames.items():
            if t in f.index:
                tape.record(bar(s, t, float(f["close"].loc[t])))
        tape.record(bar("AAA", t, float(frames["AAA"]["close"].loc[t])))  # the same bar again: once
    secs = frames["AAA"].index.as_unit("s").asi8.astype("float64")
    np.testing.assert_allclose(tape.returns(secs), mkt.reindex(frames["AAA"].index).to_numpy(),
                               rtol=1e-9, atol=1e-15)
    assert tape.symbols == ("AAA", "BBB", "CCC")


def test_a_symbol_that_goes_back_in_time_starts_over_alone() -> None:
    """A replay that starts over, or a symbol put back on the watchlist and warmed up with its
    recent bars: that symbol's returns start again; the others' stay (a review found the whole
    tape wiped and refilled with the one symbol's moves)."""
    tape = MarketTape()
    t0 = pd.Timestamp("2025-06-02 14:00", tz="UTC")
    at = [t0 + timedelta(minutes=5 * k) for k in range(4)]
    for k, (a, b) in enumerate(((10.0, 20.0), (11.0, 22.0), (12.1, 22.0), (12.1, 24.2))):
        tape.record(bar("AAA", at[k], a))
        tape.record(bar("BBB", at[k], b))
    secs = np.array([t.timestamp() for t in at])
    before = tape.returns(secs)
    tape.record(bar("BBB", at[1], 22.0))  # BBB warmed up again from its second bar
    tape.record(bar("BBB", at[2], 22.0))
    tape.record(bar("BBB", at[3], 24.2))
    np.testing.assert_allclose(tape.returns(secs), before, equal_nan=True)
    np.testing.assert_allclose(tape.returns(secs, ["AAA"]), [np.nan, np.log(1.1), np.log(1.1), 0.0], atol=1e-15)
    assert tape.symbols == ("AAA", "BBB")
    for k, (a, b) in enumerate(((10.0, 20.0), (11.0, 22.0))):  # a replay from the start: both are there
        tape.record(bar("AAA", at[k], a))
        tape.record(bar("BBB", at[k], b))
    assert tape.symbols == ("AAA", "BBB")


def test_a_symbol_that_left_the_desk_leaves_its_market() -> None:
    tape = MarketTape()
    t0 = pd.Timestamp("2025-06-02 14:00", tz="UTC")
    for k in range(8):
        tape.record(bar("AAA", t0 + timedelta(minutes=5 * k), 10.0 + k))
        if k < 4:  # CCC is taken off the watchlist after four bars
            tape.record(bar("CCC", t0 + timedelta(minutes=5 * k), 30.0 + k))
    assert tape.symbols == ("AAA",)
    note = market_note(["AAA", "CCC"], set(tape.symbols))
    assert note is not None and "CCC has no bars here" in note
    assert market_note(["AAA"], {"AAA", "ZZZ"}) is None, "other symbols on the desk change nothing it reads"


def test_the_bot_records_every_symbol_of_a_bar_time_before_any_model_speaks() -> None:
    from desk import Desk

    from app.engine.strategy.base import ModelOutput, SignalModel

    seen: list[tuple[str, float]] = []

    class Reader(SignalModel):
        wants_bars = True
        reads_market = True

        def __init__(self) -> None:
            self.tape: MarketTape | None = None

        def bind_market(self, tape: MarketTape) -> None:
            self.tape = tape

        def predict(self, closes, bars=None):  # type: ignore[no-untyped-def]
            assert self.tape is not None and bars
            seen.append((bars[-1].symbol, float(self.tape.returns(np.array([bars[-1].time.timestamp()]))[0])))
            return ModelOutput(0.5, (), ("reads the tape",), "reader")

    frames = three()
    desk = Desk(watchlist=("AAA", "BBB", "CCC"), timeframe="5m", start=datetime(2025, 6, 2, 13, 30, tzinfo=UTC))
    desk.bot.model = Reader()
    times = frames["AAA"].index[:3]
    for t in times:
        desk.clock.set(max(desk.clock.now(), t.to_pydatetime() + timedelta(minutes=5)))
        desk.bot.on_bars_close([bar(s, t, float(f["close"].loc[t])) for s, f in frames.items()])
    expect = np.mean([np.log(f["close"].loc[times[2]] / f["close"].loc[times[1]]) for f in frames.values()])
    assert [s for s, _ in seen[-3:]] == ["AAA", "BBB", "CCC"]
    assert all(v == pytest.approx(expect, abs=1e-15) for _, v in seen[-3:])  # AAA already saw CCC's bar
