"""The status bar: broker badge, mode, data source, market state and the clock."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from app.engine.types import NY, BrokerKind, EngineStatus

BADGE = {
    BrokerKind.SIMULATED: ("SIMULATED", "#ef6c00"),
    BrokerKind.PAPER: ("PAPER", "#1565c0"),
    BrokerKind.LIVE: ("LIVE", "#c62828"),
}


class TradingStatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.broker = self._label("brokerBadge", "Which broker orders go to")
        self.mode = self._label("modeLabel", "Trading mode")
        self.source = self._label("sourceLabel", "Where market data come from")
        self.market = self._label("marketLabel", "NYSE session state and time to the next open/close")
        self.conn = self._label("connectionLabel", "Connection to the broker")
        self.model = self._label("modelLabel", "Model in charge of signals")
        self.clock = self._label("clockLabel", "Engine clock (simulated in demo mode), New York time")
        self.set_broker(BrokerKind.SIMULATED)

    def _label(self, name: str, tip: str) -> QLabel:
        label = QLabel("")
        label.setObjectName(name)
        label.setToolTip(tip)
        self.addPermanentWidget(label)
        return label

    def set_broker(self, kind: BrokerKind) -> None:
        text, color = BADGE[kind]
        self.broker.setText(f" {text} ")
        self.broker.setStyleSheet(f"background:{color}; color:white; font-weight:bold; padding:2px 8px;"
                                  " border-radius:3px;")

    def update_status(self, s: EngineStatus) -> None:
        self.set_broker(s.broker)
        self.mode.setText(f"Mode: <b>{s.mode.value.upper()}</b>")
        self.source.setText(f"Data: {s.data_source}" + (" <b style='color:#ef5350'>STALE</b>" if s.data_stale else ""))
        state = "OPEN" if s.market_open else "CLOSED"
        countdown = ""
        if s.next_change is not None:
            secs = max(0, int((s.next_change - s.now).total_seconds()))
            verb = "closes" if s.market_open else "opens"
            countdown = f" ({verb} in {secs // 3600}h {secs % 3600 // 60:02d}m)"
        color = "#26a69a" if s.market_open else "#9e9e9e"
        self.market.setText(f"Market <b style='color:{color}'>{state}</b>{countdown}")
        self.conn.setText("Connected" if s.connected else "<b style='color:#ef5350'>DISCONNECTED</b>")
        self.model.setText(f"Model: {s.model}")
        self.clock.setText(s.now.astimezone(NY).strftime("%a %Y-%m-%d %H:%M:%S ET"))
