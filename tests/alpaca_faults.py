"""Faults the loopback Alpaca server can inject: HTTP errors, 429 with Retry-After,
a hang past the client's timeout, a reset connection, each before the request takes
effect or after it (the order is booked but the answer is lost)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """One injected failure. ``after``: the request takes effect first."""

    kind: str  # "status", "hang" or "reset"
    status: int = 500
    retry_after: str | None = None
    body: str | None = None
    after: bool = False

    @classmethod
    def http(cls, status: int, body: str | None = None, after: bool = False) -> Fault:
        return cls("status", status, body=body, after=after)

    @classmethod
    def rate_limited(cls, retry_after: str = "1", after: bool = False) -> Fault:
        return cls("status", 429, retry_after=retry_after, after=after)

    @classmethod
    def hang(cls, after: bool = False) -> Fault:
        return cls("hang", after=after)

    @classmethod
    def reset(cls, after: bool = False) -> Fault:
        return cls("reset", after=after)


FaultPolicy = Callable[[str, str], "Fault | None"]  # (method, path) -> a fault or None

EVERY_FAULT: tuple[Fault, ...] = tuple(
    f for after in (False, True)
    for f in (Fault.http(500, after=after), Fault.http(503, after=after), Fault.http(504, after=after),
              Fault.rate_limited("0.01", after=after), Fault.hang(after=after), Fault.reset(after=after)))


def random_faults(rate: float, seed: int = 0, kinds: tuple[Fault, ...] = EVERY_FAULT) -> FaultPolicy:
    """A policy that fails ``rate`` of all requests with a fault picked from
    ``kinds``, reproducibly for a given seed (thread-safe)."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def policy(method: str, path: str) -> Fault | None:
        with lock:
            return rng.choice(kinds) if rng.random() < rate else None
    return policy
