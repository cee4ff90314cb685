"""Options several commands share (kept light: the window's parser uses them too)."""

from __future__ import annotations

import argparse


def add_date_order(p: argparse.ArgumentParser) -> None:
    """``--dayfirst`` / ``--monthfirst``: how slashed dates (04/03/2025) in CSV files read.
    Suppressed defaults, so the option works before or after a subcommand's name."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dayfirst", dest="date_order", action="store_const", const="dmy",
                       default=argparse.SUPPRESS, help="CSV dates like 04/03/2025 are 4 March (dd/mm/yyyy)")
    group.add_argument("--monthfirst", dest="date_order", action="store_const", const="mdy",
                       default=argparse.SUPPRESS, help="CSV dates like 04/03/2025 are April 3rd (mm/dd/yyyy)")
