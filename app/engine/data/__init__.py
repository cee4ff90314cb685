"""The market-data layer: canonical bar frames, CSV import, cleaning, features,
sources (Alpaca, yfinance, cache, simulated) and the cache-filling service.

Submodules are imported explicitly (``from app.engine.data.cleaning import
clean``); this package imports nothing heavy so ``import app.engine`` stays fast.
"""

from app.engine.data.frame import DataError

__all__ = ["DataError"]
