"""One typed, validated settings object, persisted as JSON in the app home.

Every field carries its bounds in the dataclass metadata, so the settings
dialog, the loader and the tests all validate against the same numbers.
Secrets are not settings: they live in :mod:`app.engine.secrets`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from loguru import logger

from app.engine.files import not_a_file, unused_name
from app.engine.types import TIMEFRAMES


class SettingsError(ValueError):
    """A setting is out of bounds or of the wrong type; names the field (``name``), and every
    field a rule between fields involves (``names``: both thresholds, all three weights)."""

    def __init__(self, name: str, reason: str, also: tuple[str, ...] = ()) -> None:
        if len(reason) > 300:  # a 900 KB value must not be echoed whole into the window and the logs
            reason = reason[:240] + f"... ({len(reason):,} characters)"
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.names = (name, *also)


MAX_FILE_BYTES = 1 * 2**20  # a settings file is a few KB; a larger one is not one
MAX_DIGITS = 30  # a number in the file with more digits is refused (Python refuses 4,300+ anyway)


def _num(default: float, lo: float, hi: float, label: str) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "label": label})


def _choice(default: str, choices: tuple[str, ...], label: str) -> Any:
    return field(default=default, metadata={"choices": choices, "label": label})


def _flag(default: bool, label: str) -> Any:
    return field(default=default, metadata={"label": label})


MIN_RETRAIN_BARS = 50  # walk-forward backtests: fewer new bars than this per retrain is all cost


@dataclass(frozen=True)
class Settings:
    # --- risk (fractions of equity unless said otherwise)
    risk_per_trade: float = _num(0.02, 0.001, 0.05, "Risk per trade")
    max_positions: int = _num(5, 1, 20, "Max open positions")
    max_position_pct: float = _num(0.20, 0.01, 1.0, "Max position size")
    max_exposure_pct: float = _num(1.0, 0.01, 1.0, "Max total exposure")  # no margin: 5 positions of 20%
    daily_loss_limit: float = _num(0.05, 0.005, 0.20, "Daily loss limit")
    flatten_on_circuit_breaker: bool = _flag(False, "Flatten when the breaker trips")
    stop_loss_pct: float = _num(0.03, 0.005, 0.20, "Initial stop below entry")
    trailing_start_pct: float = _num(0.05, 0.005, 0.50, "Trailing stop starts at gain")
    trailing_pct: float = _num(0.02, 0.002, 0.20, "Trailing distance")
    take_profit_pct: float = _num(0.0, 0.0, 1.0, "Take profit (0 = off)")
    stop_check_seconds: int = _num(30, 1, 300, "Stop check interval (s)")
    max_round_trips: int = _num(10, 1, 100, "Max round trips a day")
    no_entry_minutes_before_close: int = _num(15, 0, 120, "No entries in last N minutes")
    flatten_minutes_before_close: int = _num(5, 1, 60, "Close positions N minutes before close")
    eod_flatten: bool = _flag(True, "Close all positions before the close")
    # when not even the backup of the record can be written: close everything, or leave the
    # positions to their broker stops; either way the engine then stops
    on_record_lost: str = _choice("flatten", ("flatten", "keep_stops"), "If the record cannot be kept")
    record_retention_days: int = _num(90, 7, 3650, "Keep predictions and signals (days)")
    fractional: bool = _flag(False, "Fractional shares")
    max_price_move_pct: float = _num(0.01, 0.001, 0.10, "Max price move before approval")
    # a price this many times off the last (or the bars around it) is a bad print: the engine
    # holds it until the next prices confirm it, and cleaning drops it from imported history
    bad_print_factor: float = _num(3.0, 1.5, 10.0, "Bad-print filter: a price jump of (x)")
    # --- signals
    auto_threshold: float = _num(0.80, 0.5, 1.0, "Execute at confidence")
    approval_threshold: float = _num(0.70, 0.5, 1.0, "Ask approval at confidence")
    mode: str = _choice("hybrid", ("manual", "hybrid", "auto"), "Trading mode")
    weight_lstm: float = _num(0.5, 0.0, 1.0, "LSTM weight")
    weight_rf: float = _num(0.3, 0.0, 1.0, "Random forest weight")
    weight_hist_gb: float = _num(0.3, 0.0, 1.0, "Gradient boosting weight")
    weight_momentum: float = _num(0.2, 0.0, 1.0, "Momentum weight")
    # --- market
    watchlist: tuple[str, ...] = field(default=("PLTR",), metadata={"label": "Watchlist"})
    timeframe: str = _choice("5m", tuple(TIMEFRAMES), "Bar timeframe")
    broker: str = _choice("sim", ("sim", "alpaca-paper", "alpaca-live"), "Broker")
    data_source: str = _choice("auto", ("auto", "simulated", "alpaca", "yfinance", "cache"), "Data source")
    # --- simulated broker and demo
    starting_cash: float = _num(100_000.0, 1_000.0, 10_000_000.0, "Paper starting cash")
    slippage_bps: float = _num(2.0, 0.0, 100.0, "Simulated slippage (bps)")
    risk_free_rate: float = _num(0.0, 0.0, 0.2, "Risk-free rate, yearly (for Sharpe and Sortino)")
    commission_per_share: float = _num(0.0, 0.0, 0.05, "Commission per share")
    # the simulated broker, made to behave like a thin market and a slow exchange (0: off)
    sim_fill_participation: float = _num(0.0, 0.0, 1.0, "Simulated fills: share of traded volume")
    sim_cancel_delay_s: float = _num(0.0, 0.0, 300.0, "Simulated cancel delay (s)")
    demo_speed: float = _num(600.0, 1.0, 100_000.0, "Demo speed (x real time)")
    # at 600x a signal's five minutes last half a second: the demo waits for the user instead
    demo_pause_on_approval: bool = _flag(True, "Demo: pause while a signal awaits approval")
    demo_seed: int = _num(7, 0, 2**31 - 1, "Demo market seed")
    theme: str = _choice("dark", ("dark", "light"), "Theme")
    # --- backtests
    backtest_retrain_bars: int = _num(0, 0, 100_000, "Backtest: retrain every N bars (0 = saved model)")

    def __post_init__(self) -> None:
        if isinstance(self.watchlist, (list, str)):  # typed in code as a list or "A, B": kept as a tuple
            object.__setattr__(self, "watchlist", _tickers(self.watchlist))
        for f in fields(self):
            _check_field(f.name, getattr(self, f.name), f.metadata, f.type)
        if self.approval_threshold > self.auto_threshold:
            raise SettingsError("approval_threshold", "must not exceed auto_threshold", ("auto_threshold",))
        if self.trailing_pct >= self.trailing_start_pct:
            raise SettingsError("trailing_pct", "must be smaller than trailing_start_pct", ("trailing_start_pct",))
        no_entry = self.no_entry_minutes_before_close
        if no_entry and self.flatten_minutes_before_close > no_entry:
            raise SettingsError("no_entry_minutes_before_close", "must be at least flatten_minutes_before_close",
                                ("flatten_minutes_before_close",))
        if not any(w > 0 for w in self.ensemble_weights().values()):
            # shares, not fractions: the ensemble divides by their sum (a trained model learns its own)
            raise SettingsError("weight_lstm", "at least one ensemble weight must be above 0",
                                ("weight_rf", "weight_hist_gb", "weight_momentum"))
        if 0 < self.backtest_retrain_bars < MIN_RETRAIN_BARS:
            raise SettingsError("backtest_retrain_bars", f"must be 0 (the saved model) or at least "
                                f"{MIN_RETRAIN_BARS} bars")
        _check_watchlist(self.watchlist)

    @property
    def symbol(self) -> str:
        """The watchlist's first symbol: the one the desk opens on, and the default of the
        tools that take one symbol (train, import, backtest)."""
        return self.watchlist[0]

    def ensemble_weights(self) -> dict[str, float]:
        """The ensemble's weight per component, by the component's name."""
        return {"lstm": self.weight_lstm, "random_forest": self.weight_rf, "hist_gb": self.weight_hist_gb,
                "momentum": self.weight_momentum}

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build from a dict, coercing numeric strings; unknown keys are ignored."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        if "symbol" in data and "watchlist" not in data:  # a settings file from the one-symbol app
            data = {**data, "watchlist": [data["symbol"]]}
        for name, raw in data.items():
            if name in known:
                values[name] = _coerce(name, raw, known[name].type)
        return cls(**values)

    def updated(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` applied (raises SettingsError)."""
        known = {f.name: f for f in fields(self)}
        coerced = {}
        if "symbol" in changes:  # one symbol named: it goes first, the rest of the watchlist stays
            first = _coerce("watchlist", [changes.pop("symbol")], "tuple[str, ...]")[0]
            changes.setdefault("watchlist", (first, *(s for s in self.watchlist if s != first)))
        for k, v in changes.items():
            if k not in known:
                raise SettingsError(k, "is not a setting")
            coerced[k] = _coerce(k, v, known[k].type)
        return replace(self, **coerced)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Settings:
        return cls.load_checked(path)[0]

    @classmethod
    def load_checked(cls, path: Path) -> tuple[Settings, list[str]]:
        """Load settings, and what was wrong with the file. An invalid field falls back to
        its default alone, the rest are kept (one bad ticker must not reset the risk limits
        and the mode); an unreadable file falls back to defaults. Either way the file is
        kept as ``settings.invalid.json`` so the user loses nothing."""
        if not path.exists() and not path.is_symlink():
            return cls(), []
        try:
            problem = not_a_file(path)
            if problem:  # a FIFO would hang the start; a link to nothing would be written through
                raise OSError(problem)
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"{path.stat().st_size:,} bytes; a settings file is a few KB")
            raw = path.read_bytes()
            # Notepad saves a byte-order mark before the first brace, or the file as UTF-16 ("Unicode")
            text = raw.decode("utf-16") if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else raw.decode("utf-8-sig")
            twice: list[str] = []
            data = json.loads(text, parse_int=_whole_number, object_pairs_hook=lambda pairs: _one_each(pairs, twice))
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, found {type(data).__name__}")
        except (ValueError, TypeError, OSError, RecursionError) as exc:  # bad UTF-8 or JSON, unreadable, [[[[...
            backup = _keep_aside(path)
            logger.error("Settings file {} is invalid ({}); kept as {}, using defaults", path, exc, backup)
            return cls(), [f"the settings file could not be read ({exc}); it is kept as {backup.name} and "
                           "the defaults are used"]
        problems: list[str] = [f"{name} is given more than once: the last value is used" for name in twice]
        while True:
            try:
                settings = cls.from_dict(data)
                break
            except SettingsError as exc:  # that field (or the fields of a rule between them) only
                drop = {*exc.names, "symbol"} if "watchlist" in exc.names else set(exc.names)  # (migrated from)
                if not drop & set(data):
                    settings, problems = cls(), [*problems, f"{exc}: every setting is at its default"]
                    break
                reset = [n for n in exc.names if n in data]
                data = {k: v for k, v in data.items() if k not in drop}
                problems.append(f"{exc}; {' and '.join(reset)} {'are' if len(reset) > 1 else 'is'} at "
                                f"{'their defaults' if len(reset) > 1 else 'its default'}")
        if problems:  # the original kept aside; what is left, valid, is the file from now on
            backup = _keep_aside(path)
            logger.error("Settings file {} has invalid values ({}); kept as {}", path, "; ".join(problems), backup)
            try:
                settings.save(path)
            except OSError as exc:
                logger.error("Cannot write the repaired settings to {}: {}", path, exc)
        return settings, problems


def _one_each(pairs: list[tuple[str, Any]], twice: list[str]) -> dict[str, Any]:
    """A JSON object, noting the keys it gives twice (json keeps the last without a word)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen and key not in twice:
            twice.append(key)
        seen.add(key)
    return dict(pairs)


def _whole_number(text: str) -> int | str:
    """A JSON integer; one of more than MAX_DIGITS digits stays text, so that its field alone
    is refused (int() of 4,300+ digits raises, and would cost every other setting)."""
    return int(text) if len(text.lstrip("-")) <= MAX_DIGITS else f"{text[:6]}... ({len(text):,} digits)"


def _keep_aside(path: Path) -> Path:
    """The user's file, moved to ``<name>.invalid.json`` (``.invalid-2.json``... when one is
    there already: a second bad file never overwrites the first); itself when it cannot be."""
    backup = unused_name(lambda n: path.with_suffix(".invalid.json" if n == 1 else f".invalid-{n}.json"))
    try:
        path.replace(backup)
    except OSError:
        return path
    return backup


def field_bounds(name: str) -> dict[str, Any]:
    """The metadata (min, max, choices, label) of one setting, for the dialog."""
    for f in fields(Settings):
        if f.name == name:
            return dict(f.metadata)
    raise KeyError(name)


def in_words(text: str) -> str:
    """``text`` with each setting's internal name (``max_position_pct``) replaced by the label the
    user knows it by ("Max position size"), quoted: messages speak the settings dialog's words."""
    # names with an underscore only: "mode" or "symbol" in a sentence is English, not a field name
    labels = {f.name: f.metadata.get("label") for f in fields(Settings) if "_" in f.name and f.metadata.get("label")}
    if not any(name in text for name in labels):
        return text
    names = "|".join(sorted(map(re.escape, labels), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])({names})(?!\w)")
    return pattern.sub(lambda m: f'"{labels[m.group(1)]}"', text)


def default_of(name: str) -> Any:
    for f in fields(Settings):
        if f.name == name and f.default is not MISSING:
            return f.default
    raise KeyError(name)


def _coerce(name: str, raw: Any, type_name: Any) -> Any:
    kind = str(type_name)
    try:
        if kind == "bool":
            if isinstance(raw, str):
                if raw.lower() in ("true", "1", "yes", "on"):
                    return True
                if raw.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(raw)
            if isinstance(raw, bool) or (isinstance(raw, int) and raw in (0, 1)):
                return bool(raw)
            raise ValueError(raw)  # [], 2, None: not a yes or a no
        if isinstance(raw, bool) and kind in ("int", "float"):
            raise ValueError(raw)  # true is not a number of shares
        if kind == "int":
            value = float(raw)
            if not value.is_integer():
                raise ValueError(raw)
            return int(value)
        if kind == "float":
            return float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a number of 400 digits
        shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
        raise SettingsError(name, f"{shown} is not a valid {kind}") from None
    if name == "watchlist":
        return _tickers(raw)
    return raw


MAX_WATCHLIST = 10
_TICKER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.")


def _tickers(raw: Any) -> tuple[str, ...]:
    """A watchlist as typed or stored: "PLTR, nvda spy" or a list; upper-cased, stripped."""
    items = raw.replace(",", " ").split() if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        raise SettingsError("watchlist", f"{raw!r} is not a list of tickers")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise SettingsError("watchlist", f"{item!r} is not a ticker (write it as text, e.g. PLTR)")
        out.append(item.strip().upper())
    return tuple(out)


def _check_watchlist(value: Any) -> None:
    """1-10 US tickers: ASCII letters, digits and '.', 1-10 characters each, no repeats."""
    if not isinstance(value, tuple) or not value:
        raise SettingsError("watchlist", "name at least one ticker (e.g. PLTR)")
    if len(value) > MAX_WATCHLIST:
        raise SettingsError("watchlist", f"{len(value)} tickers; at most {MAX_WATCHLIST}")
    for ticker in value:
        if not isinstance(ticker, str) or not 1 <= len(ticker) <= 10:
            raise SettingsError("watchlist", f"{ticker!r} is not a ticker of 1-10 characters")
        bad = sorted({c for c in ticker if c not in _TICKER_CHARS})
        if bad:
            wide = any(not c.isascii() for c in bad)
            why = ("full-width or accented characters" if wide else "characters other than upper-case "
                   "letters, digits and '.'")
            raise SettingsError("watchlist", f"{ticker!r} has {why} ({''.join(bad)!r}): a US ticker is "
                                "ASCII letters, digits and '.' (e.g. BRK.B)")
        if ticker[0] == "." or ticker[-1] == ".":
            raise SettingsError("watchlist", f"{ticker!r} cannot start or end with '.'")
    if len(set(value)) != len(value):
        twice = sorted({t for t in value if value.count(t) > 1})
        raise SettingsError("watchlist", f"{', '.join(twice)} listed twice")


def _check_field(name: str, value: Any, meta: Any, type_name: Any) -> None:
    kind = str(type_name)
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(name, f"{value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(name, "must be a finite number")
        if kind == "int" and not float(value).is_integer():
            raise SettingsError(name, f"{value!r} is not a whole number")
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and value < lo:
            raise SettingsError(name, f"{value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise SettingsError(name, f"{value} is above the maximum {hi}")
    elif "choices" in meta and value not in meta["choices"]:
        raise SettingsError(name, f"{value!r} is not one of {', '.join(meta['choices'])}")
