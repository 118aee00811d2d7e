"""Encryption at rest of personal fields (Fernet; MultiFernet for key rotation)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, TypeDecorator
from sqlalchemy.engine import Dialect

# Fernet tokens are URL-safe base64 of a version byte 0x80 and a timestamp: they start so.
TOKEN_PREFIX = "gAAAAA"

_cipher: MultiFernet | None = None


def parse_keys(value: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys, newest first; raise ValueError on a bad one."""
    keys = tuple(part.strip() for part in value.split(",") if part.strip())
    for key in keys:
        Fernet(key.encode())  # raises ValueError when it is not 32 url-safe base64 bytes
    if not keys:
        raise ValueError("no key")
    return keys


def configure(keys: tuple[str, ...] | None) -> None:
    """Encrypt with the first key from now on and decrypt with any; None stores plain text."""
    global _cipher
    _cipher = MultiFernet([Fernet(k.encode()) for k in keys]) if keys else None


def enabled() -> bool:
    """Whether personal fields are being encrypted."""
    return _cipher is not None


def encrypt(value: str) -> str:
    """The stored form of a personal value."""
    return _cipher.encrypt(value.encode()).decode() if _cipher else value


def decrypt(stored: str) -> str:
    """The value of a stored personal field, encrypted (with any configured key) or not."""
    if _cipher is None or not stored.startswith(TOKEN_PREFIX):
        return stored
    try:
        return _cipher.decrypt(stored.encode()).decode()
    except InvalidToken:
        # Encrypted with a key that is no longer configured: say so rather than show noise.
        return "[encrypted with an unknown key]"


def rotate(stored: str) -> str:
    """Re-encrypt a stored value with the newest key (plain values get encrypted)."""
    if _cipher is None:
        return stored
    if stored.startswith(TOKEN_PREFIX):
        return _cipher.rotate(stored.encode()).decode()
    return encrypt(stored)


def new_key() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()


class Encrypted(TypeDecorator[str]):
    """A text column holding a personal value, encrypted when a key is configured."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)
