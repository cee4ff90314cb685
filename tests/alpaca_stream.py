"""Alpaca's trade-updates websocket on 127.0.0.1, for alpaca-py's real ``TradingStream``.

The protocol as Alpaca documents it (https://docs.alpaca.markets/docs/websocket-streaming):
the client authenticates (``{"action": "authenticate", "data": {"key_id", "secret_key"}}``)
and is answered ``{"stream": "authorization", "data": {"status": "authorized"}}``; it asks to
listen (``{"action": "listen", "data": {"streams": ["trade_updates"]}}``) and is answered
``{"stream": "listening"}``; from then on every change of an order comes as
``{"stream": "trade_updates", "data": {"event", "order", "timestamp", "price", "qty",
"position_qty", "execution_id"}}``, the order in the REST API's shape. Alpaca sends these as
binary frames; so does this server. Events: new, partial_fill, fill, canceled, expired,
replaced, pending_cancel, rejected, done_for_day (the docs' list).

Knobs for tests: ``paused`` (updates wait: a stalled stream; ``resume()`` sends them in
order), ``drop_next`` (updates lost on the way), ``disconnect()`` (every connection closed:
alpaca-py reconnects by itself, and the updates sent meanwhile are lost, as on the real one).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from alpaca_shapes import ts
from websockets.sync.server import Server, ServerConnection, serve


class StreamServer:
    def __init__(self, key_id: str, secret_key: str) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.paused = False
        self.drop_next = 0
        self.sent: list[tuple[str, str]] = []  # (event, client order id), as sent
        self.connections = 0  # listening connections made, reconnections included
        self._backlog: list[bytes] = []
        self._clients: list[ServerConnection] = []
        self._lock = threading.RLock()
        self._listening = threading.Condition(self._lock)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stream first"
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/stream"

    def start(self) -> StreamServer:
        self._server = serve(self._handle, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, name="alpaca-stream", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.disconnect()
            self._server.shutdown()

    # ------------------------------------------------------- test hooks
    def wait_listening(self, connections: int = 1, timeout: float = 10.0) -> bool:
        """Until ``connections`` listening connections have been made (reconnections count)."""
        with self._listening:
            return self._listening.wait_for(lambda: self.connections >= connections and bool(self._clients),
                                            timeout)

    def resume(self) -> None:
        with self._lock:
            self.paused = False
            backlog, self._backlog = self._backlog, []
            for frame in backlog:
                self._send(frame)

    def disconnect(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for ws in clients:
            ws.close()

    # ----------------------------------------------------------- updates
    def publish(self, event: str, order: dict[str, Any], price: float | None = None, qty: float | None = None,
                position_qty: float | None = None) -> None:
        """Tell every listener that ``order`` (its JSON as the REST API has it now) changed."""
        data: dict[str, Any] = {"event": event, "order": dict(order), "timestamp": ts(datetime.now(UTC))}
        if event in ("fill", "partial_fill"):
            data.update(execution_id=str(uuid.uuid4()), price=str(price), qty=str(qty),
                        position_qty=str(position_qty))
        frame = json.dumps({"stream": "trade_updates", "data": data}).encode()
        with self._lock:
            self.sent.append((event, order["client_order_id"]))
            if self.drop_next > 0:
                self.drop_next -= 1
            elif self.paused:
                self._backlog.append(frame)
            else:
                self._send(frame)

    def _send(self, frame: bytes) -> None:
        for ws in list(self._clients):
            try:
                ws.send(frame)
            except Exception:  # noqa: BLE001 - a client gone: it reconnects and is polled then
                self._clients.remove(ws)

    def _handle(self, ws: ServerConnection) -> None:
        auth = json.loads(ws.recv())
        creds = auth.get("data", {})
        ok = (auth.get("action") in ("authenticate", "auth") and creds.get("key_id") == self.key_id
              and creds.get("secret_key") == self.secret_key)
        status = "authorized" if ok else "unauthorized"
        ws.send(json.dumps({"stream": "authorization", "data": {"status": status, "action": "authenticate"}}).encode())
        if not ok:
            ws.close()
            return
        listen = json.loads(ws.recv())
        streams = listen.get("data", {}).get("streams", [])
        ws.send(json.dumps({"stream": "listening", "data": {"streams": streams}}).encode())
        with self._listening:
            self._clients.append(ws)
            self.connections += 1
            self._listening.notify_all()
        try:
            for _ in ws:  # the client says nothing more; this holds the connection open
                pass
        except Exception:  # noqa: BLE001 - closed either way
            pass
        finally:
            with self._lock:
                if ws in self._clients:
                    self._clients.remove(ws)
