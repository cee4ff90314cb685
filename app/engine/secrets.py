"""API keys as a type that cannot leak by accident.

``Secret`` masks itself in ``repr``/``str``/f-strings; the only way to the
value is ``reveal()``, called at the one place that hands it to alpaca-py.
Keys come from Alpaca's standard environment variables, or from a ``.env``
file in the app home that is kept owner-only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        if not self._value:
            return ""
        tail = self._value[-4:] if len(self._value) >= 12 else ""
        return "••••" + tail

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = masked

    def __format__(self, spec: str) -> str:
        return self.masked()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> object:  # never pickle a key into a file
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class ApiKeys:
    key_id: Secret
    secret_key: Secret

    @property
    def complete(self) -> bool:
        return bool(self.key_id) and bool(self.secret_key)


ENV_KEY = "APCA_API_KEY_ID"
ENV_SECRET = "APCA_API_SECRET_KEY"


def load_keys(env_file: Path | None, live: bool = False) -> ApiKeys:
    """Paper keys by default; live keys are kept under separate names."""
    prefix = "LIVE_" if live else ""
    values = read_env_file(env_file) if env_file else {}
    key = os.environ.get(prefix + ENV_KEY) or values.get(prefix + ENV_KEY, "")
    secret = os.environ.get(prefix + ENV_SECRET) or values.get(prefix + ENV_SECRET, "")
    return ApiKeys(Secret(key), Secret(secret))


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def save_keys(path: Path, keys: ApiKeys, live: bool = False) -> None:
    """Write keys to an owner-only ``.env`` file (0600), keeping other entries."""
    prefix = "LIVE_" if live else ""
    values = read_env_file(path)
    values[prefix + ENV_KEY] = keys.key_id.reveal()
    values[prefix + ENV_SECRET] = keys.secret_key.reveal()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in values.items())
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
