"""AI Trader: a desktop trading app over a Qt-free engine (``app.engine``)."""

__version__ = "0.1.0"
