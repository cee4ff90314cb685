"""The order ticket: a market or limit buy by shares or dollars, or a sell of the holding.

The ticket only asks: the engine judges the order by the same risk rules as a model's
entry (market hours, the breaker, positions, sizes, buying power) and answers in words,
shown here and in the Notices. The stop is not typed: every position gets its broker
stop from the risk settings, and the ticket says where it will be. A limit buy waits at
the broker for its price or better, counts as exposure while it waits, and is cancelled when
entries stop for the day. Sells are at market only: the shares are held for their stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.settings import Settings


class OrderTicket(QDialog):
    """``sendRequested(symbol, side, shares, dollars, limit)``: one of shares and dollars is 0;
    a limit of 0 is a market order."""

    sendRequested = Signal(str, str, float, float, float)

    def __init__(self, symbols: Sequence[str], prices: Mapping[str, float], settings: Settings,
                 symbol: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("orderTicket")
        self.setWindowTitle("Order ticket")
        self.prices = prices
        self.settings = settings
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.symbol = QComboBox()
        self.symbol.setObjectName("ticketSymbol")
        self.symbol.setToolTip("A symbol of the watchlist")
        self.symbol.addItems(list(symbols))
        if symbol in symbols:
            self.symbol.setCurrentText(symbol)
        form.addRow("Symbol", self.symbol)
        self.side = QComboBox()
        self.side.setObjectName("ticketSide")
        self.side.setToolTip("Buy opens a position (long only); Sell closes the whole holding")
        self.side.addItems(["BUY", "SELL"])
        form.addRow("Side", self.side)
        self.unit = QComboBox()
        self.unit.setObjectName("ticketUnit")
        self.unit.setToolTip("Buy a number of shares, or as many whole shares as a dollar amount pays for")
        self.unit.addItems(["shares", "dollars"])
        self.quantity = QDoubleSpinBox()
        self.quantity.setObjectName("ticketSize")
        self.quantity.setToolTip("How much to buy; the risk rules may refuse more than they would size")
        self.quantity.setRange(0.0, 10_000_000.0)
        self.quantity.setDecimals(0)
        self.quantity.setGroupSeparatorShown(True)
        row = QHBoxLayout()
        row.addWidget(self.quantity, 1)
        row.addWidget(self.unit)
        form.addRow("Quantity", row)
        self.kind = QComboBox()
        self.kind.setObjectName("ticketType")
        self.kind.setToolTip("Market: filled at the next price. Limit: waits at the broker for the limit "
                             "price or better, until the risk rules stop new entries (the close near at the latest)")
        self.kind.addItems(["market", "limit"])
        self.limit = QDoubleSpinBox()
        self.limit.setObjectName("ticketLimit")
        self.limit.setToolTip("The most a share may cost")
        self.limit.setRange(0.0, 1_000_000.0)
        self.limit.setDecimals(2)
        self.limit.setPrefix("$")
        self.limit.setGroupSeparatorShown(True)
        kind_row = QHBoxLayout()
        kind_row.addWidget(self.kind)
        kind_row.addWidget(self.limit, 1)
        form.addRow("Type", kind_row)
        outer.addLayout(form)
        self.preview = QLabel("")
        self.preview.setObjectName("ticketPreview")
        self.preview.setWordWrap(True)
        outer.addWidget(self.preview)
        self.answer = QLabel("")
        self.answer.setObjectName("ticketResult")
        self.answer.setWordWrap(True)
        outer.addWidget(self.answer)
        buttons = QHBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("ticketSend")
        self.send_button.setToolTip("Send the order: the engine checks it against the risk rules first")
        self.send_button.setDefault(True)
        close = QPushButton("Close")
        close.setToolTip("Close the ticket")
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        buttons.addWidget(close)
        outer.addLayout(buttons)
        self.send_button.clicked.connect(self.send)
        close.clicked.connect(self.reject)
        for w in (self.symbol, self.side, self.unit):
            w.currentTextChanged.connect(self._update)
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.symbol.currentTextChanged.connect(self._symbol_changed)
        self.quantity.valueChanged.connect(self._update)
        self.limit.valueChanged.connect(self._update)
        self._refresh = QTimer(self)  # the preview follows the price while the ticket is open
        self._refresh.timeout.connect(self._update)
        self._refresh.start(1000)
        self._update()

    @property
    def limit_price(self) -> float:
        """The limit typed, or 0 for a market order (and for every sell)."""
        limit = self.kind.currentText() == "limit" and self.side.currentText() == "BUY"
        return self.limit.value() if limit else 0.0

    def _kind_changed(self, kind: str) -> None:
        if kind == "limit" and self.limit.value() <= 0:  # start from the last price, to be lowered
            self._start_limit()
        self._update()

    def _symbol_changed(self, _symbol: str) -> None:
        """Another symbol: a limit typed for the last one means nothing here (a $200 limit on a
        $20 stock); it starts again from this one's price."""
        if self.kind.currentText() == "limit":
            self._start_limit()

    def _start_limit(self) -> None:
        price = self.prices.get(self.symbol.currentText()) or 0.0
        self.limit.setDecimals(4 if 0 < price < 1 else 2)  # a sub-dollar stock trades in hundredths of a cent
        self.limit.setValue(price)

    def _update(self, *_: object) -> None:
        selling = self.side.currentText() == "SELL"
        self.quantity.setEnabled(not selling)
        self.unit.setEnabled(not selling)
        self.kind.setEnabled(not selling)
        self.limit.setEnabled(not selling and self.kind.currentText() == "limit")
        self.quantity.setDecimals(2 if self.unit.currentText() == "dollars" else 0)
        self.quantity.setPrefix("$" if self.unit.currentText() == "dollars" else "")
        price = self.prices.get(self.symbol.currentText())
        if selling:
            self.preview.setText("Sells the whole holding at market; its stop is cancelled first. "
                                 "(No limit sells: the shares are held for their stop.)")
            self.send_button.setEnabled(True)
            return
        if not price:
            self.preview.setText("No price yet for this symbol.")
            self.send_button.setEnabled(False)
            return
        limit = self.limit_price
        if self.kind.currentText() == "limit" and limit <= 0:
            self.preview.setText("Type the limit price: the most a share may cost.")
            self.send_button.setEnabled(False)
            return
        at = limit or price
        shares = self.quantity.value() if self.unit.currentText() == "shares" else self.quantity.value() / at
        if not self.settings.fractional:  # whole shares, as the engine buys them
            shares = float(int(shares + 1e-9))
        stop = at * (1 - self.settings.stop_loss_pct)
        count = f"{shares:,.0f}" if shares == int(shares) else f"{shares:,.4f}".rstrip("0")
        how = (f"a limit buy of {count} shares at {limit:,.2f} or better (last {price:,.2f}; "
               f"${shares * limit:,.0f} at most), working until entries stop for the day"
               if limit else f"about {count} shares at {price:,.2f} (${shares * price:,.0f})")
        self.preview.setText(f"{how[0].upper()}{how[1:]}; broker stop at {stop:,.2f} "
                             f"({self.settings.stop_loss_pct:.1%} below the fill), trailing from "
                             f"+{self.settings.trailing_start_pct:.1%}.")
        self.send_button.setEnabled(shares > 0)

    def send(self) -> None:
        side = self.side.currentText()
        shares = self.quantity.value() if side == "BUY" and self.unit.currentText() == "shares" else 0.0
        dollars = self.quantity.value() if side == "BUY" and self.unit.currentText() == "dollars" else 0.0
        self.answer.setText("sent to the engine…")
        self.sendRequested.emit(self.symbol.currentText(), side, shares, dollars, self.limit_price)

    def answered(self, text: str) -> None:
        """The engine's word on the order: sent, or refused and why."""
        refused = "refused" in text or "nothing held" in text or "no price" in text
        self.answer.setStyleSheet("color:#ef5350" if refused else "color:#26a69a")
        self.answer.setText(text)
