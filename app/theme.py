"""Dark (default) and light palettes for the whole app."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


def apply_theme(app: QApplication, theme: str = "dark") -> None:
    import pyqtgraph as pg

    app.setStyle("Fusion")
    if theme != "dark":
        app.setPalette(app.style().standardPalette())
        pg.setConfigOptions(background="w", foreground="k")
        return
    pal = QPalette()
    base, alt, text = QColor("#1e2127"), QColor("#282c34"), QColor("#dcdfe4")
    for role, color in (
        (QPalette.ColorRole.Window, alt), (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, alt),
        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, alt),
        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.Highlight, QColor("#3d6fb4")),
        (QPalette.ColorRole.HighlightedText, QColor("white")), (QPalette.ColorRole.ToolTipBase, base),
        (QPalette.ColorRole.ToolTipText, text),
    ):
        pal.setColor(role, color)
    app.setPalette(pal)
    pg.setConfigOptions(background="#1e2127", foreground="#dcdfe4", antialias=False)
