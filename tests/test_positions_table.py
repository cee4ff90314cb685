"""The positions table shows the user's own holdings apart from the app's, and offers to
adopt them rather than to close them."""

from __future__ import annotations

from conftest import utc
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu

from app.engine.types import Position
from app.widgets.positions import GREY, PositionsTable


def test_holdings_the_app_did_not_buy_are_marked_and_offered_for_adoption(qtbot) -> None:  # type: ignore[no-untyped-def]
    table = PositionsTable()
    qtbot.addWidget(table)
    mine = Position("PLTR", 100, 20.0, 21.0, utc(2025, 3, 4, 15), stop_price=19.4)
    theirs = Position("AAPL", 10, 150.0, 151.0, utc(2025, 3, 4, 15))
    table.set_positions((mine,), utc(2025, 3, 4, 16), (theirs,))
    model = table.model_
    assert model.rowCount() == 2
    assert model.data(model.index(0, 6)) == "19.40" and model.data(model.index(1, 6)) == "not the app's"
    assert model.data(model.index(1, 0), Qt.ItemDataRole.ForegroundRole) == GREY
    adopted: list[str] = []
    closed: list[str] = []
    table.adoptRequested.connect(adopted.append)
    table.closeRequested.connect(closed.append)
    for row in (0, 1):  # right-click each row
        table._menu(table.visualRect(model.index(row, 0)).center())
    actions = [a for menu in table.findChildren(QMenu) for a in menu.actions()]
    texts = [a.text() for a in actions]
    assert "Close PLTR at market" in texts and any(t.startswith("Adopt AAPL") for t in texts)
    next(a for a in actions if a.text().startswith("Adopt AAPL")).trigger()
    assert adopted == ["AAPL"] and closed == []
