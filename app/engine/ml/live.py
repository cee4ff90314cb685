"""The trained ensemble behind the bot's SignalModel port, live and in batch.

Live, :class:`EnsembleSignalModel` keeps a rolling window of the last
``LIVE_WINDOW`` bars per symbol and computes features for that tail only:
400 bars cover the 60-bar sequence and the 50-bar indicator warm-up, and
leave ~290 bars for the exponential averages (EMA, RSI, ATR, MACD) to forget
where the window starts, so live features match full-history features to
~1e-8. Per bar: features for the 60 newest rows in NumPy
(``compute_features_tail``, ~0.3 ms; the same values as ``compute_features``
on the window), LSTM forward in NumPy (~1 ms), forest walk (~0.1 ms).

Whatever goes wrong, the bot gets an answer it can explain: a component that
is missing, unloadable, stale or not ready is left out and named in the
reasons; when none is left, the rules model answers and says it is a fallback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.engine.data.features import WARMUP_BARS, compute_features_tail
from app.engine.data.frame import from_epoch_seconds, is_intraday
from app.engine.data.market import MarketTape, context_features
from app.engine.ml.artifacts import ArtifactError, LoadedBundle, load_bundle, read_metadata
from app.engine.ml.dataset import model_features
from app.engine.ml.edge import recheck
from app.engine.ml.ensemble import combine, combine_one
from app.engine.ml.labels import LABELS, PRIMARY_FAST, PRIMARY_SLOW, TIE, TradeRules, primary_signal
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.strategy.rules import RulesModel
from app.engine.types import Bar, timeframe_of

if TYPE_CHECKING:
    from app.engine.paths import AppPaths
    from app.engine.settings import Settings

LIVE_WINDOW = 400
SHORT = {"lstm": "lstm", "random_forest": "rf", "hist_gb": "gb", "momentum": "mom"}


def default_max_age(timeframe: str) -> timedelta:
    """How long after its last training bar a model is trusted: markets change regime."""
    return timedelta(days=30) if timeframe_of(timeframe).intraday else timedelta(days=180)


class BarWindow:
    """The newest ``size`` bars of one symbol as rows (epoch s, o, h, l, c, v).

    Held in a NumPy buffer twice the window's length: a new bar is one row
    write, the window is a view (no per-bar list-to-array conversion), and
    the rows slide back to the front once per ``size`` bars.
    """

    def __init__(self, size: int = LIVE_WINDOW) -> None:
        self.size = int(size)
        self._buf = np.empty((2 * self.size, 6), dtype="float64")
        self._lo = self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    def update(self, bars: Sequence[Bar]) -> None:
        """Append the bars newer than the last one held; a history that went
        backwards (a replay restarted) replaces the window."""
        if not bars:
            return
        last = float(self._buf[self._hi - 1, 0]) if len(self) else None
        newest = bars[-1].time.timestamp()
        if last is not None and newest < last:
            self._lo = self._hi = 0
            last = None
        fresh: list[Bar] = []
        for b in reversed(bars):
            if last is not None and b.time.timestamp() <= last:
                break
            fresh.append(b)
            if len(fresh) >= self.size:
                break
        if fresh:
            self._push(np.array([(b.time.timestamp(), b.open, b.high, b.low, b.close, b.volume)
                                 for b in reversed(fresh)], dtype="float64"))

    def _push(self, new: np.ndarray) -> None:
        m = len(new)
        if self._hi + m > len(self._buf):  # slide the rows still wanted to the front
            keep = min(len(self), self.size - m)
            self._buf[:keep] = self._buf[self._hi - keep : self._hi]
            self._lo, self._hi = 0, keep
        self._buf[self._hi : self._hi + m] = new
        self._hi += m
        self._lo = max(self._lo, self._hi - self.size)

    def rows(self) -> np.ndarray:
        """The window, oldest first, as an ``(n, 6)`` read-only view."""
        view = self._buf[self._lo : self._hi]
        view.flags.writeable = False
        return view

    def frame(self) -> pd.DataFrame:
        a = self.rows()
        idx = from_epoch_seconds(a[:, 0].astype("int64"))
        cols = ("open", "high", "low", "close", "volume")
        return pd.DataFrame({c: a[:, i + 1] for i, c in enumerate(cols)}, index=idx)


class EnsembleSignalModel(SignalModel):
    """The calibrated ensemble as the bot's model: ``predict(closes, bars=...)``.

    ``bars`` (oldest first, the bar that just closed last) carries the OHLCV
    the features need; called with closes only, it answers with the rules
    fallback and says why. ``weights`` come from the settings.
    """

    name = "ensemble"
    wants_bars = True
    reads_market = True

    def __init__(self, bundle: LoadedBundle, weights: dict[str, float],
                 fallback: SignalModel | None = None, max_age: timedelta | None = None,
                 window: int = LIVE_WINDOW) -> None:

        self.bundle = bundle
        self.learned = learned_weights(bundle.meta)
        self.weights = self.learned or dict(weights)
        payoff = bundle.meta.get("payoff") or {}
        self.payoff = (float(payoff["win_bps"]), float(payoff["loss_bps"])) if payoff else None
        self.fallback = fallback or RulesModel()
        self.max_age = max_age if max_age is not None else default_max_age(bundle.timeframe)
        self.window = window
        self.intraday = is_intraday(bundle.timeframe)
        self.need = max(m.lookback for m in bundle.components.values())
        self.min_bars = self.need + WARMUP_BARS
        self.version = f"ensemble-{bundle.version}"
        self._windows: dict[str, BarWindow] = {}
        self._until = {n: _parse_time(bundle.trained_until(n)) for n in bundle.components}
        self.tape: MarketTape | None = None  # the desk's market (the watchlist); None: the symbol is its own
        self.settings_note: str | None = None  # the settings changed since training: why it does not trade
        self.market = [str(s) for s in bundle.meta.get("market") or [bundle.symbol]]

    def bind_market(self, tape: MarketTape) -> None:
        self.tape = tape

    def update_settings(self, settings: Settings) -> None:
        """New ensemble weights take effect from the next bar, unless the model learned its own
        (by out-of-sample log loss): those are part of what was measured. New exits, costs or
        approval threshold are not what its verdict measured: it stops trading and says so."""
        if self.learned is None:
            self.weights = settings.ensemble_weights()
        self.settings_note = settings_mismatch(self.bundle.meta, settings)

    def predict(self, closes: np.ndarray, bars: Sequence[Bar] | None = None) -> ModelOutput | None:
        if not bars:
            return self._fallback(closes, "the ensemble was given no OHLCV bars")
        last = bars[-1]
        if last.symbol.upper() != self.bundle.symbol.upper():
            return self._fallback(closes, f"the ensemble was trained on {self.bundle.symbol}, "
                                          f"not {last.symbol}")
        win = self._windows.setdefault(last.symbol, BarWindow(self.window))
        win.update(bars)
        if len(win) < self.min_bars:
            return self._fallback(closes, f"ensemble warming up ({len(win)}/{self.min_bars} bars)")
        return self._ensemble(closes, win, last.time)

    def _ensemble(self, closes: np.ndarray, win: BarWindow, at: datetime) -> ModelOutput | None:
        X = self.features(win.rows())
        parts: dict[str, float] = {}
        notes = [f"{n} left out: {why}" for n, why in self.bundle.problems.items()]
        for name, model in self.bundle.components.items():
            until = self._until.get(name)
            if until is not None and at - until > self.max_age:
                notes.append(f"{name} left out: stale (trained until {until:%Y-%m-%d}); retrain")
                continue
            try:
                p = model.predict_last(X)
            except Exception as exc:  # noqa: BLE001 - one broken component must not silence the rest
                notes.append(f"{name} left out: failed ({type(exc).__name__})")
                continue
            if not math.isfinite(p):
                notes.append(f"{name} left out: features not ready")
                continue
            parts[name] = p
        raw, used = combine_one(parts, self.weights)
        if raw is None:
            return self._fallback(closes, "no ensemble component available (" + "; ".join(notes) + ")")
        cal = self.bundle.calibrator
        p = cal.apply_one(raw) if cal is not None else raw
        fires, rule = primary_call(closes)
        expected = (p * self.payoff[0] + (1 - p) * self.payoff[1]) if self.payoff else None
        mix = ", ".join(f"{SHORT.get(k, k)} {w:.2f}" for k, w in used.items())
        renorm = " renormalised" if set(used) != {k for k, w in self.weights.items() if w > 0} else ""
        learned = " (by out-of-sample log loss)" if self.learned else ""
        head = (f"P(trade profitable) {p:.2f} (raw {raw:.2f}, Platt-calibrated on {cal.n} out-of-sample "
                f"trades)" if cal is not None else f"P(trade profitable) {p:.2f} (not calibrated)")
        reasons = [f"primary rule: {rule}", head]
        if expected is not None:
            reasons.append(f"expected return after costs {expected:+.1f} bps")
        reasons += [f"weights{learned}{renorm}: {mix}"]
        if (note := self.market_note()) is not None:
            reasons.append(f"{note}: not traded")
            fires = False  # judged on a market it cannot read here: its verdict does not cover this
        if self.settings_note is not None:
            reasons.append(f"{self.settings_note}: not traded (retrain it)")
            fires = False
        reasons += [self.bundle.components[k].describe(v) for k, v in parts.items()]
        votes = tuple((k, round(v, 4)) for k, v in parts.items())
        return ModelOutput(float(p), votes, tuple(reasons + notes), self.version, long_only=True,
                           tradeable=fires, expected_bps=None if expected is None else round(expected, 2))

    def features(self, rows: np.ndarray) -> np.ndarray:
        """The newest ``need`` rows of :func:`~app.engine.ml.dataset.feature_list` for a window
        of bars (epoch s, o, h, l, c, v): the indicators, then the market context."""
        return np.hstack([compute_features_tail(rows, self.intraday, self.need),
                          context_features(rows[:, 4], self._market(rows), self.need)])

    def _market(self, rows: np.ndarray) -> np.ndarray:
        """The market's return at each window bar: the desk's tape, or the symbol's own."""
        if self.tape is not None:
            return self.tape.returns(rows[:, 0], self.market)
        own = np.full(len(rows), np.nan)
        own[1:] = np.diff(np.log(rows[:, 4]))
        return own

    def market_note(self) -> str | None:
        """Said when the desk cannot give the market the model learned (a symbol of it is not
        on the desk): its market features are then not the ones it was judged on."""
        have = set(self.tape.symbols) if self.tape is not None else {self.bundle.symbol}
        return market_note(self.market, have)

    def _fallback(self, closes: np.ndarray, why: str) -> ModelOutput | None:
        out = self.fallback.predict(closes)
        if out is None:
            return None
        return ModelOutput(out.p_up, out.votes, (f"rules fallback: {why}", *out.reasons), out.version)


NO_EDGE_LABEL = "rules: model has no demonstrated edge"


def market_note(trained: Sequence[str], have: set[str]) -> str | None:
    """A line saying the market the model learned (the mean move of its training symbols) cannot
    be read here, because some of those symbols have no bars; None when it can."""
    want = {s.upper() for s in trained}
    missing = sorted(want - {s.upper() for s in have})
    if not missing:
        return None
    return (f"market context differs from training: learned on the mean of {', '.join(sorted(want))}, "
            f"and {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no bars here")


def primary_call(closes: np.ndarray) -> tuple[bool, str]:
    """The primary rule at the last close: (a buy?, in words)."""
    if len(closes) < PRIMARY_SLOW:
        return False, f"fewer than {PRIMARY_SLOW} closes: no call"
    fast, slow = float(closes[-PRIMARY_FAST:].mean()), float(closes[-PRIMARY_SLOW:].mean())
    buy = fast - slow > TIE * abs(slow)  # primary_signal's rule, on this bar only (no pandas per bar)
    where, verdict = ("above", "buy") if buy else ("not above", "no entry")
    return buy, f"SMA{PRIMARY_FAST} {fast:.2f} {where} SMA{PRIMARY_SLOW} {slow:.2f}: {verdict}"


def learned_weights(meta: dict[str, Any]) -> dict[str, float] | None:
    """The ensemble weights a model chose by out-of-sample log loss, when it saved them."""
    w = meta.get("weights")
    if not isinstance(w, dict) or not w:
        return None
    try:
        out = {str(k): float(v) for k, v in w.items()}
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) and v >= 0 for v in out.values()) and sum(out.values()) > 0 else None


def edge_of(meta: dict[str, Any]) -> str | None:
    """Why a saved model must not trade (its own out-of-sample verdict), or None when it may."""
    if meta.get("edge") is True and meta.get("labels") == LABELS:
        if not _payoff_ok(meta.get("payoff")):
            return "its payoff (the mean winning and losing trade) is missing: no expected return can be stated"
        return recheck(meta)  # the numbers saved beside it must grant it too (a hand-edited verdict)
    if "edge" not in meta:
        return "it was saved before models were judged on their out-of-sample edge: train it again"
    if meta.get("labels") != LABELS:
        return "it predicts the next close, not the bot's trade (saved before trade labels): train it again"
    return str(meta.get("edge_reason") or "its out-of-sample numbers show none")


def settings_mismatch(meta: dict[str, Any], settings: Settings) -> str | None:
    """Why the settings are not the ones a model's verdict was measured under (its labels used
    the desk's exits and costs, its gate the approval threshold), or None when they are."""
    saved = meta.get("trade_rules")
    if isinstance(saved, dict):
        now = TradeRules.from_settings(settings).to_dict()
        changed = [f"{k} {saved.get(k)} -> {v}" for k, v in now.items() if _differs(saved.get(k), v)]
        if changed:
            return f"trained under other exits or costs ({'; '.join(changed)})"
    then = (meta.get("out_of_sample") or {}).get("threshold")
    if then is not None and _differs(then, settings.approval_threshold):
        return f"judged at an approval threshold of {then}, now {settings.approval_threshold}"
    return None


def _differs(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is not b
    try:
        return abs(float(a) - float(b)) > 1e-9
    except (TypeError, ValueError):
        return True


def _payoff_ok(payoff: Any) -> bool:
    try:
        return all(math.isfinite(float(payoff[k])) for k in ("win_bps", "loss_bps"))
    except (KeyError, TypeError, ValueError):
        return False


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def load_signal_model(paths: AppPaths, settings: Settings) -> tuple[SignalModel, list[str]]:
    """The ensemble trained for the settings' symbol and timeframe, or the rules
    model with a line saying why (no model yet, wrong features, corrupt files).

    Loading an LSTM imports TensorFlow (seconds): call this from the engine's
    thread, never on the GUI's start-up path.
    """
    folder = paths.model_dir(settings.symbol, settings.timeframe)
    try:
        verdict = edge_of(read_metadata(folder))
        if verdict is not None:  # never loaded: a model without a demonstrated edge never trades
            rules = RulesModel()
            rules.label = NO_EDGE_LABEL
            return rules, [f"{NO_EDGE_LABEL} ({verdict}): the rules model trades {settings.symbol}"]
        bundle = load_bundle(folder, symbol=settings.symbol, timeframe=settings.timeframe)
    except ArtifactError as exc:
        return RulesModel(), [f"Using the rules model: {exc}"]
    notes = [f"Model {name} left out: {why}" for name, why in bundle.problems.items()]
    model = EnsembleSignalModel(bundle, settings.ensemble_weights())
    model.update_settings(settings)
    if model.settings_note is not None:
        notes.append(f"Model {settings.symbol} {settings.timeframe} does not trade: {model.settings_note}; retrain it")
    return model, notes + bundle.notes


def predict_frame(bundle: LoadedBundle, frame: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Batch predictions for every bar of a clean frame (rows without enough history
    dropped). Each row uses only bars up to its own: appending bars later in
    the file never changes an earlier row. ``p_up`` is the calibrated chance that the primary
    rule's long entered after the bar ends profitable; ``signal`` is BUY where the rule calls
    a buy and that chance is above one half, else HOLD (the model never sells)."""

    X = model_features(frame, is_intraday(bundle.timeframe))  # the frame is its own market (see market_note)
    parts = {name: m.predict_proba(X) for name, m in bundle.components.items()}
    raw = combine(parts, learned_weights(bundle.meta) or weights)
    p = bundle.calibrator.apply(raw) if bundle.calibrator is not None else raw
    out = pd.DataFrame({f"p_{k}": parts.get(k, np.full(len(X), np.nan))
                        for k in ("lstm", "random_forest", "hist_gb", "momentum")}, index=frame.index)
    out["p_raw"] = raw
    out["p_up"] = p
    out["confidence"] = p
    out["primary"] = primary_signal(frame["close"].to_numpy(dtype="float64"))
    pay = bundle.meta.get("payoff") or {}
    out["expected_bps"] = (p * float(pay["win_bps"]) + (1 - p) * float(pay["loss_bps"])) if pay else np.nan
    worth = out["expected_bps"].fillna(1.0) > 0  # a model without a payoff states none: judged on p alone
    out["signal"] = np.where(out["primary"] & (p > 0.5) & worth, "BUY", "HOLD")
    return out[np.isfinite(p)]
