"""Keys go to the OS keyring when one works, else to an owner-only .env file."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.engine.secrets import ApiKeys, Secret, load_keys, save_keys


class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps passwords in memory (no OS store in tests)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)


def test_keys_go_to_the_os_keyring_when_one_works(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    where = save_keys(env, ApiKeys(Secret("PKKEYRING123456"), Secret("kr-secret-abcdef123456")))
    assert where == "the OS keyring"
    assert not env.exists(), "nothing written to disk"
    assert ("ai-trader", "APCA_API_SECRET_KEY") in memory_keyring.store
    keys = load_keys(env)
    assert keys.key_id.reveal() == "PKKEYRING123456" and keys.complete
    save_keys(env, ApiKeys(Secret("LIVEKEY123456789"), Secret("live-secret-0987654321")), live=True)
    assert load_keys(env).key_id.reveal() == "PKKEYRING123456", "paper and live kept apart"
    assert load_keys(env, live=True).key_id.reveal() == "LIVEKEY123456789"


def test_without_a_keyring_keys_go_to_an_owner_only_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    where = save_keys(env, ApiKeys(Secret("PKFILE1234567890"), Secret("file-secret-abcdef12")))
    assert where == str(env)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert load_keys(env).secret_key.reveal() == "file-secret-abcdef12"
    assert "file-secret" not in repr(load_keys(env)) and "file-secret" not in f"{load_keys(env).secret_key}"
