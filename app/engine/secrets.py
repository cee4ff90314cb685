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
from typing import Any

from loguru import logger


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

    def __reduce__(self) -> str | tuple[Any, ...]:  # never pickle a key into a file
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


KEYRING_SERVICE = "ai-trader"


def os_keyring() -> object | None:
    """The OS keyring when one really works here (not keyring's fail/null stand-ins)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, (fail.Keyring, null.Keyring)) or getattr(backend, "priority", 0) <= 0:
        return None
    return backend


def load_keys(env_file: Path | None, live: bool = False) -> ApiKeys:
    """Paper keys by default; live keys are kept under separate names. Looked up in
    Alpaca's environment variables, then the OS keyring, then the ``.env`` file."""
    prefix = "LIVE_" if live else ""
    values = read_env_file(env_file) if env_file else {}
    found: list[str] = []
    for name in (prefix + ENV_KEY, prefix + ENV_SECRET):
        found.append(os.environ.get(name) or _from_keyring(name) or values.get(name, ""))
    return ApiKeys(Secret(found[0]), Secret(found[1]))


def _from_keyring(name: str) -> str:
    backend = os_keyring()
    if backend is None:
        return ""
    try:
        return backend.get_password(KEYRING_SERVICE, name) or ""  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a locked or broken keyring must not stop the app
        return ""


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):  # keys others on the machine can read
        logger.warning("{} can be read by other users of this computer (mode {:o}); it holds API keys: "
                       "chmod 600 it, or save the keys again in Settings (the app writes it owner-only)",
                       path, stat.S_IMODE(mode))
    out: dict[str, str] = {}
    # keys are ASCII: a comment in another encoding, or Notepad's byte-order mark, must not hide them
    for line in path.read_bytes().decode("utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def save_keys(path: Path, keys: ApiKeys, live: bool = False) -> str:
    """Store keys in the OS keyring, or where none works in an owner-only ``.env``
    file (0600), keeping its other entries. Returns where they went."""
    prefix = "LIVE_" if live else ""
    backend = os_keyring()
    if backend is not None:
        try:
            backend.set_password(KEYRING_SERVICE, prefix + ENV_KEY, keys.key_id.reveal())  # type: ignore[attr-defined]
            backend.set_password(KEYRING_SERVICE, prefix + ENV_SECRET, keys.secret_key.reveal())  # type: ignore[attr-defined]
            return "the OS keyring"
        except Exception:  # noqa: BLE001 - fall back to the file, which always works
            pass
    values = read_env_file(path)
    values[prefix + ENV_KEY] = keys.key_id.reveal()
    values[prefix + ENV_SECRET] = keys.secret_key.reveal()
    path.parent.mkdir(parents=True, exist_ok=True)
    # a new file beside it, then renamed over it: a symlinked .env is replaced, its target
    # (wherever it points) is never written, and no reader sees half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                 stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in values.items())
    os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
    os.replace(tmp, path)
    return str(path)
