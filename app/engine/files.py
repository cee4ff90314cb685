"""Paths the app reads or writes as plain files must be plain files.

A folder in a file's place gives a traceback; a FIFO, a socket or a device (a link to
``/dev/full``) hangs the app on open or swallows what it writes, without a word; a link to
nothing is created through, somewhere the user never chose. Each is named here, in one
sentence, so a caller can refuse it with what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be used as a plain file ("... is a folder"), or None when it can
    (or is not there at all)."""
    try:
        if path.is_symlink() and not path.exists():
            return f"{path} is a link to nothing ({os.readlink(path)})"
        if not path.exists():
            return None
        if path.is_dir():
            return f"{path} is a folder"
        if not path.is_file():
            return f"{path} is not a regular file (a pipe, a device or a socket)"
    except OSError as exc:  # a folder on the way that cannot be searched
        return f"{path} cannot be examined ({exc.strerror or exc})"
    return None


def unused_name(nth: Callable[[int], Path]) -> Path:
    """The first of ``nth(1)``, ``nth(2)``... that nothing is at (not even a broken link): where
    a copy or a file set aside goes, so that an earlier one is never overwritten."""
    n = 1
    while (path := nth(n)).exists() or path.is_symlink():
        n += 1
    return path
