"""Backtests through the live trading engine."""
