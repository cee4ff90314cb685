"""The loopback Alpaca server's HTTP side: one request is authenticated, maybe failed
(a fault before it takes effect), routed to the server's account, maybe failed after
(it took effect, the answer is lost), and answered as JSON."""

from __future__ import annotations

import json
import socket
import struct
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from alpaca_faults import Fault

if TYPE_CHECKING:
    from alpaca_server import AlpacaServer

Reply = tuple[int, Any]


def err(status: int, message: str) -> Reply:
    """An error the way Alpaca sends one: a code and a message."""
    return status, {"code": status * 100000, "message": message}


class Handler(BaseHTTPRequestHandler):
    """One request: authenticate, maybe fail, route, maybe fail after."""

    server_version = "AlpacaLoopback/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        """Silenced."""

    def _serve(self) -> None:
        app: AlpacaServer = self.server.app  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        fault = app.next_fault(self.command, parts.path)
        if fault is not None and not fault.after:
            return self._fail(app, fault)
        if (self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")) != (
                app.key_id, app.secret_key):
            return self._reply(*err(401, "request is not authorized"))
        try:
            body = json.loads(raw) if raw else {}
            if app.before_route is not None:
                app.before_route(self.command, parts.path)
            status, payload = app.route(self.command, parts.path, query, body)
        except (ValueError, KeyError, TypeError) as exc:
            status, payload = err(422, f"invalid request: {exc}")
        if fault is not None:
            return self._fail(app, fault)
        self._reply(status, payload)

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, app: AlpacaServer, fault: Fault) -> None:
        if fault.kind == "hang":
            app._stopping.wait(app.hang_s)
            self.close_connection = True
        elif fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # RST, not FIN: the client sees "connection reset"
            self.close_connection = True
        else:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            body = fault.body.encode() if fault.body is not None else err(fault.status, "injected fault")[1]
            self._reply(fault.status, body, headers)
