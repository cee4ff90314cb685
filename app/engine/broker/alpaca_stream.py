"""Alpaca's trade updates, pushed over its websocket as they happen (alpaca-py's ``TradingStream``).

Alpaca sends an update for every change of every order of the account: new,
partial_fill, fill, canceled, expired, replaced, pending_cancel, rejected, ...
(https://docs.alpaca.markets/docs/websocket-streaming). The stream runs in a
thread of its own and reconnects by itself; each update is put, as an engine
:class:`Order`, on a queue that the engine drains on its own thread, so no
engine state is touched from the stream's thread.

What the stream cannot promise, the engine does not assume: updates sent while
the connection was down are lost, and a connected stream can stall without a
word (alpaca-py logs and carries on when a message fails), so the engine still
polls every open order on every stop check. The stream makes a fill known at
once instead of at the next check; the poll keeps it true.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from alpaca.trading.models import TradeUpdate
from alpaca.trading.stream import TradingStream
from loguru import logger

from app.engine.broker.alpaca_orders import to_order
from app.engine.types import Order


class _Stream(TradingStream):
    """alpaca-py's stream, saying when its connection comes up and goes down (it reconnects
    by itself and says nothing of it). Overrides two of its coroutines, keeping their work."""

    def __init__(self, *args: Any, on_state: Callable[[bool], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_state = on_state

    async def _start_ws(self) -> None:
        await super()._start_ws()  # type: ignore[no-untyped-call]
        self._on_state(True)

    async def close(self) -> None:
        self._on_state(False)
        await super().close()


class TradeUpdates:
    def __init__(self, key_id: str, secret_key: str, *, paper: bool, url_override: str | None = None) -> None:
        self._stream = _Stream(key_id, secret_key, paper=paper, url_override=url_override,
                               on_state=self._state)
        self._stream.subscribe_trade_updates(self._received)
        self._queue: queue.SimpleQueue[Order] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._up = False
        self._thread: threading.Thread | None = None
        # told (on the stream's thread) that an update came: a desk wakes its engine with it
        self.on_update: Callable[[], None] | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._stream.run, name="alpaca-trade-updates", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        loop = getattr(self._stream, "_loop", None)
        if loop is not None and loop.is_running():
            try:
                self._stream.stop()
            except Exception as exc:  # noqa: BLE001 - closing: nothing left to protect
                logger.debug("Trade-updates stream did not stop cleanly: {}", exc)
        self._state(False)

    def drain(self) -> list[Order]:
        """The updates received since the last call, oldest first."""
        out: list[Order] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _state(self, up: bool) -> None:
        with self._lock:
            if up and not self._up:
                logger.info("Trade-updates stream connected")
            elif self._up and not up:
                logger.warning("Trade-updates stream disconnected; fills are known at each stop check until it is back")
            self._up = up

    async def _received(self, update: TradeUpdate) -> None:
        try:
            order = to_order(update.order)
        except Exception as exc:  # noqa: BLE001 - one unreadable update: the next poll has the truth
            logger.warning("Unreadable trade update ({}): {}", getattr(update, "event", "?"), exc)
            return
        self._queue.put(order)
        hook = self.on_update
        if hook is not None:
            hook()
