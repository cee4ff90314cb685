"""The gate between paper and live trading.

Live trading needs at least ``MIN_PAPER_DAYS`` calendar days of paper-trading
history in the database and the user typing ``CONFIRM_PHRASE`` exactly. The
simulated demo does not count: only days traded through Alpaca's paper
endpoint, recorded under ``PAPER_FIRST_DAY_KEY`` when the paper broker
first runs.
"""

from __future__ import annotations

from datetime import datetime

MIN_PAPER_DAYS = 14
CONFIRM_PHRASE = "I ACCEPT THE RISK OF LIVE TRADING"
PAPER_FIRST_DAY_KEY = "paper.first_day"


def live_gate(first_paper_day: str | None, now: datetime, typed_phrase: str) -> tuple[bool, str]:
    """Whether live trading may be switched on, and why not."""
    if not first_paper_day:
        return False, f"no paper-trading history yet: trade on paper for {MIN_PAPER_DAYS} days first"
    days = (now.date() - datetime.fromisoformat(first_paper_day).date()).days
    if days < MIN_PAPER_DAYS:
        return False, f"only {days} days of paper trading; live needs {MIN_PAPER_DAYS}"
    if typed_phrase.strip() != CONFIRM_PHRASE:
        return False, f'type "{CONFIRM_PHRASE}" to confirm'
    return True, "live trading unlocked"


LIVE_CONFIRMED_KEY = "live.confirmed_at"


def live_unlocked(first_paper_day: str | None, confirmed_at: str | None, now: datetime) -> tuple[bool, str]:
    """At start: may a live session run? The paper history must still be long
    enough and the user must have passed the gate (typed the phrase) before."""
    if not first_paper_day:
        return False, f"no paper-trading history: live trading needs {MIN_PAPER_DAYS} days of paper first"
    days = (now.date() - datetime.fromisoformat(first_paper_day).date()).days
    if days < MIN_PAPER_DAYS:
        return False, f"only {days} days of paper trading; live needs {MIN_PAPER_DAYS}"
    if not confirmed_at:
        return False, "live trading was never confirmed in Settings (the live-trading gate)"
    return True, "live trading unlocked"
