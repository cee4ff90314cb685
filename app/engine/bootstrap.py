"""The one place that wires settings, storage, market, broker, model and bot.

Nothing happens at import time; :func:`build_engine` does all the I/O. The
GUI's worker calls it in its own thread; the headless runner and the tests
call it directly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger

from app.engine.bot import TradingBot
from app.engine.broker.base import Broker
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import NY, Clock, MarketCalendar, Session, SimClock, WallClock
from app.engine.events import EventBus
from app.engine.live import LiveSession, recent_bars
from app.engine.live_gate import LIVE_CONFIRMED_KEY, PAPER_FIRST_DAY_KEY, live_unlocked
from app.engine.paths import AppPaths
from app.engine.records import SqlRecorder
from app.engine.replay import MarketReplay, replay_feed, simulated_feed
from app.engine.secrets import load_keys
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket, rewatch, watchlist_markets
from app.engine.storage import Storage
from app.engine.storage.paper import SqlPaperBook
from app.engine.types import Bar, BrokerKind, timeframe_of

DEMO_CLOCK_KEY = "demo.clock"
DEMO_ALONE_KEY = "demo.alone"  # symbols whose simulated market is the one-symbol demo's
DEMO_TODAY_ENV = "AI_TRADER_DEMO_TODAY"


@dataclass
class EngineContext:
    paths: AppPaths
    settings: Settings
    storage: Storage
    records: SqlRecorder
    clock: Clock
    calendar: MarketCalendar
    broker: Broker
    bot: TradingBot
    bus: EventBus
    replay: Any  # MarketReplay (demo, replays) or LiveSession: anything with step()
    demo: bool
    notices: list[str] = field(default_factory=list)
    history: list[Bar] = field(default_factory=list)
    replay_ticks: int = 10  # prices per bar in the live simulation
    markets: list[SimulatedMarket] | None = None  # the demo's, one per symbol (None: recorded or live bars)

    def set_watchlist(self, settings: Settings) -> list[Bar]:
        """Trade ``settings.watchlist`` from now on, without a restart. A symbol added gets its
        model and recent history (returned, for the chart); one removed gets no more bars or
        signals (what it holds keeps its stops and is closed by the day's rules). A replay of
        files plays the symbols its files hold: changing them there is refused."""
        if self.markets is None and not isinstance(self.replay, LiveSession):
            raise ValueError("a replay plays the symbols of its files; the watchlist cannot change during it")
        self.settings = settings
        self.bot.update_settings(settings)
        if isinstance(self.replay, LiveSession):
            history = self.replay.set_symbols(settings.watchlist)
        else:
            assert self.markets is not None
            held = tuple(p.symbol for p in self.records.positions() if p.symbol not in settings.watchlist)
            # a symbol removed while held keeps its prices (its stop and exit must fill), not its entries
            added = rewatch(self.markets, settings.watchlist + held, settings.demo_seed, self.calendar,
                            timeframe_of(settings.timeframe).minutes,
                            frozenset(self.records.state_get(DEMO_ALONE_KEY) or ()))
            now = self.clock.now()
            history = sorted((b for m in added for b in _history(m, self.calendar, now)), key=lambda b: b.time)
            self.bot.warm_up(history)
            for last in {b.symbol: b for b in history}.values():
                self.broker.on_price(last.symbol, last.close, now)  # type: ignore[attr-defined]
            self.replay.reload()  # from the next bar, every symbol of the new watchlist
        logger.info("Watchlist now {}", ", ".join(settings.watchlist))
        return history

    def save_clock(self) -> None:
        if self.demo:  # live trading runs on wall time: nothing to resume
            self.records.state_set(DEMO_CLOCK_KEY, self.clock.now().isoformat())

    def close(self) -> None:
        self.save_clock()
        self.broker.close()
        self.storage.close()


def build_engine(paths: AppPaths, settings: Settings, *, bus: EventBus | None = None,
                 today: datetime | None = None,
                 sleep: Callable[[float], None] | None = None,
                 replay_bars: list[Bar] | None = None) -> EngineContext:
    """Build a ready-to-step engine.

    ``today`` is the wall time that picks the first simulated session (the
    simulated clock then continues from the database on every later start).
    With ``replay_bars`` the engine replays that history instead, on a scratch
    database of its own (``replay-scratch.db``), so a rehearsal never touches
    the paper account or the trading record.
    """
    today = today or _demo_today()  # a bad pinned day is refused before anything is opened
    paths.ensure()
    bus = bus or EventBus()
    notices: list[str] = []
    if not load_keys(paths.env_file).complete:
        notices.append("No Alpaca API keys configured: running the simulated demo market.")
    if not timeframe_of(settings.timeframe).intraday:
        settings = settings.updated(timeframe="5m")  # the simulated market is intraday
    if replay_bars is not None:  # a scratch record, and backups, of its own: the account's are never touched
        scratch = paths.home / "replay-scratch.db"
        journal, paper_backup = paths.home / "replay-scratch-pending.jsonl", paths.home / "replay-scratch-paper.json"
        for f in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm"), journal, paper_backup):
            if f.is_file() or f.is_symlink():
                f.unlink()
        storage = Storage(scratch)
    else:
        storage = Storage(paths.database)
        journal, paper_backup = paths.trade_backup, paths.paper_backup
    records = SqlRecorder(storage, journal)
    replayed = records.replay_backup()
    if replayed:
        notices.append(f"Recovered {replayed} records that could not be written last time.")
    if records.damaged_notice:
        notices.append(records.damaged_notice)
    calendar = MarketCalendar()
    if replay_bars is not None:
        feed, history, start = replay_feed(replay_bars, calendar, timeframe_of(settings.timeframe).minutes)
        source, ticks, markets = "replay", 4, []
    else:
        start = _demo_start(records.state_get(DEMO_CLOCK_KEY), calendar, today)
        markets = watchlist_markets(settings.watchlist, settings.demo_seed, calendar,
                                    timeframe_of(settings.timeframe).minutes,
                                    _alone(records, settings, records.state_get(DEMO_CLOCK_KEY) is not None))
        feed = simulated_feed(markets, calendar)
        history = sorted((b for m in markets for b in _history(m, calendar, start)), key=lambda b: b.time)
        source, ticks = "simulated", markets[0].ticks_per_bar
    clock = SimClock(start)
    paper = SqlPaperBook(storage, paper_backup)
    broker = SimulatedBroker(clock, settings.starting_cash, settings.slippage_bps,
                             settings.commission_per_share, book=paper,
                             participation=settings.sim_fill_participation or None,
                             cancel_delay_s=settings.sim_cancel_delay_s)
    if paper.notice:
        notices.append(paper.notice)
    model, models, model_notes = _load_models(paths, settings, notices)
    notices += model_notes
    bot = TradingBot(settings, clock, broker, model, records, bus, calendar, source, sleep or time.sleep,
                     models=models)
    bot.warm_up(history)
    for last in {b.symbol: b for b in history}.values():  # every symbol's last price
        broker.on_price(last.symbol, last.close, start)
    ctx_holder: list[EngineContext] = []

    def save_clock(*_session: Session) -> None:
        # the clock is saved after every bar, so a restart after a crash resumes where the
        # engine stopped instead of replaying (and re-trading) the session from its open
        if ctx_holder:
            ctx_holder[0].save_clock()

    replay = MarketReplay(bot, broker, clock, feed, on_session=save_clock, on_bar=save_clock)
    ctx = EngineContext(paths, settings, storage, records, clock, calendar, broker, bot, bus, replay,
                        demo=True, notices=notices, history=history, replay_ticks=ticks,
                        markets=markets if replay_bars is None else None)
    ctx_holder.append(ctx)
    bot.start()
    logger.info("Engine ready: {} market {} from {}, {} history bars", source, ", ".join(settings.watchlist), start,
                len(history))
    return ctx


def build_live_engine(paths: AppPaths, settings: Settings, *, bus: EventBus | None = None,
                      clock: Clock | None = None, broker: Broker | None = None, source: Any = None,
                      sleep: Callable[[float], None] | None = None,
                      alpaca_url: str | None = None, alpaca_stream_url: str | None = None,
                      live: bool = False) -> EngineContext:
    """Paper (or, past the live gate, live) trading through Alpaca on the wall clock.

    ``live`` needs the gate: 14+ days of paper history in this database and the
    confirmation recorded by the settings dialog; otherwise it raises and nothing
    connects to the live endpoint.

    ``clock``, ``broker`` and ``source`` are injectable so tests can point the
    real adapters at a loopback server on a simulated clock; ``alpaca_url``
    points the default ones elsewhere (a proxy, or a test server), and
    ``alpaca_stream_url`` the trade-updates websocket (which is not opened when
    only ``alpaca_url`` is given: it would go to Alpaca itself).
    """
    # deferred: alpaca-py and pandas load only for paper and live trading, not for the demo
    from app.engine.broker.alpaca import AlpacaBroker
    from app.engine.data.sources import AlpacaDataSource

    paths.ensure()
    bus = bus or EventBus()
    clock = clock or WallClock()
    storage = Storage(paths.database)
    records = SqlRecorder(storage, paths.trade_backup)
    if live:
        ok, why = live_unlocked(records.state_get(PAPER_FIRST_DAY_KEY), records.state_get(LIVE_CONFIRMED_KEY),
                                clock.now())
        if not ok:
            storage.close()
            raise ValueError(f"live trading refused: {why}")
    kind = BrokerKind.LIVE if live else BrokerKind.PAPER
    if broker is None:
        alpaca = AlpacaBroker.from_env(paths.env_file, clock, kind=kind, live_gate_passed=live,
                                       url_override=alpaca_url)
        if alpaca_stream_url is not None or alpaca_url is None:
            alpaca.start_stream(alpaca_stream_url)  # fills as they happen; polling stays as the fallback
        broker = alpaca
    source = source or AlpacaDataSource(load_keys(paths.env_file, live=live), url_override=alpaca_url)
    notices = []
    replayed = records.replay_backup()
    if replayed:
        notices.append(f"Recovered {replayed} records that could not be written last time.")
    if records.damaged_notice:
        notices.append(records.damaged_notice)
    now = clock.now()
    if broker.kind == BrokerKind.PAPER and records.state_get(PAPER_FIRST_DAY_KEY) is None:
        records.state_set(PAPER_FIRST_DAY_KEY, now.date().isoformat())
    calendar = MarketCalendar()
    model, models, model_notes = _load_models(paths, settings, notices)
    notices += model_notes
    bot = TradingBot(settings, clock, broker, model, records, bus, calendar, source.name, sleep or time.sleep,
                     models=models)
    bot.core.entries.latest_price = source.latest_price
    tf = timeframe_of(settings.timeframe).delta
    try:
        history = recent_bars(source, settings.watchlist, settings.timeframe, now)
    except Exception as exc:  # noqa: BLE001 - the engine still starts: exits must work without data
        notices.append(f"Could not load recent bars: {exc}")
        history = []
    bot.warm_up(history)
    session = LiveSession(bot, source, clock, settings.watchlist, settings.timeframe,
                          history[-1].time + tf if history else None)
    ctx = EngineContext(paths, settings, storage, records, clock, calendar, broker, bot, bus, session,
                        demo=False, notices=notices, history=history, replay_ticks=1)
    bot.start()
    logger.info("Engine ready: {} paper trading {} with {} history bars", broker.kind.value,
                ", ".join(settings.watchlist), len(history))
    return ctx


def _load_models(paths: AppPaths, settings: Settings,
                 later: list[str]) -> tuple[Any, Callable[[str], Any], list[str]]:
    """The first symbol's model, every symbol's (one per symbol and timeframe), and what to say
    of them (no model, stale, mismatched or corrupt files: the rules model for that symbol).
    A symbol added to the watchlist later gets its own on its first bar; what is said of it
    then is logged and appended to ``later``."""
    model, notes = _load_model(paths, settings)
    models = {settings.symbol: model}
    for symbol in settings.watchlist[1:]:
        models[symbol], more = _load_model(paths, settings.updated(symbol=symbol))
        notes += [f"{symbol}: {n}" for n in more]

    def model_for(symbol: str) -> Any:
        if symbol not in models:
            models[symbol], more = _load_model(paths, settings.updated(watchlist=(symbol,)))
            for n in more:
                logger.warning("{}: {}", symbol, n)
                later.append(f"{symbol}: {n}")
        return models[symbol]

    return model, model_for, notes


def _load_model(paths: AppPaths, settings: Settings) -> tuple[Any, list[str]]:
    """The trained ensemble for this symbol and timeframe, or the rules model
    with the reason (no model, stale, mismatched or corrupt files)."""
    # deferred: pandas, ta and scikit-learn load only when there is a model to load
    from app.engine.ml.live import load_signal_model

    return load_signal_model(paths, settings)


def _demo_today() -> datetime:
    """The wall time that picks a new demo's first session: now, or ``$AI_TRADER_DEMO_TODAY``
    (an ISO time) so that a rehearsal, a screenshot or a test replays the same day whatever
    the date it runs on."""
    pinned = os.environ.get(DEMO_TODAY_ENV, "").strip()
    if not pinned:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(pinned)
    except ValueError:
        raise ValueError(f"{DEMO_TODAY_ENV}={pinned!r} is not an ISO date and time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _alone(records: SqlRecorder, settings: Settings, ran_before: bool) -> frozenset[str]:
    """The symbols whose demo market is the one-symbol demo's, saved on first use: a symbol's
    prices must carry on across restarts whatever else joins the watchlist (a held symbol
    re-priced would show profits that never were). A home that ran the demo before this
    was saved ran one symbol, the first."""
    saved = records.state_get(DEMO_ALONE_KEY)
    if saved is None:
        saved = list(settings.watchlist[:1]) if len(settings.watchlist) == 1 or ran_before else []
        records.state_set(DEMO_ALONE_KEY, saved)
    return frozenset(saved)


def _demo_start(saved: str | None, calendar: MarketCalendar, today: datetime) -> datetime:
    if saved:
        return datetime.fromisoformat(saved)
    # the most recent session that opened before today's wall time
    s: Session = calendar.previous_sessions(today, 1)[0]
    return s.open


def _history(market: SimulatedMarket, calendar: MarketCalendar, start: datetime) -> list[Bar]:
    """Two full sessions before ``start``, plus today's bars before it."""
    sessions = calendar.previous_sessions(start, 2)
    bars = market.history(sessions)
    today = calendar.session(start.astimezone(NY).date())
    if today is not None and start > today.open:
        bars += [sb.bar for sb in market.session_bars(today)
                 if sb.bar.time + timedelta(minutes=market.bar_minutes) <= start]
    return bars
