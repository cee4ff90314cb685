"""The Broker port and its adapters (simulated, Alpaca)."""

from app.engine.broker.base import Broker, BrokerError

__all__ = ["Broker", "BrokerError"]
