"""Encryption at rest of personal values (Fernet; MultiFernet for key rotation).

Two column types carry it: `Encrypted` (a text) and `EncryptedJSON` (a JSON document, stored as
{"_fernet": token} while a key is configured). `encrypted_columns()` lists every column of
either type, so that rotating keys cannot miss one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import JSON, Column, MetaData, Text, TypeDecorator
from sqlalchemy.engine import Dialect

# Fernet tokens are URL-safe base64 of a version byte 0x80 and a timestamp: they start so.
TOKEN_PREFIX = "gAAAAA"
# The key under which an EncryptedJSON column holds its token.
JSON_TOKEN = "_fernet"
UNKNOWN_KEY = "[encrypted with an unknown key]"

_cipher: MultiFernet | None = None
_hash_key: bytes = b"icssi-bot: no DATA_ENCRYPTION_KEY"


class UnknownKey(ValueError):
    """A stored value was encrypted with none of the keys configured."""


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
    global _cipher, _hash_key
    _cipher = MultiFernet([Fernet(k.encode()) for k in keys]) if keys else None
    # Keyed hashes (bot.reports' daily limit) use a key derived from the newest one, never
    # the key itself; without a key they are plain hashes, like everything else at rest.
    _hash_key = (
        hmac.new(keys[0].encode(), b"icssi-bot keyed hash", hashlib.sha256).digest()
        if keys
        else b"icssi-bot: no DATA_ENCRYPTION_KEY"
    )


def enabled() -> bool:
    """Whether personal values are being encrypted."""
    return _cipher is not None


def keyed_hash(value: str) -> str:
    """A hash of `value` that cannot be recomputed without the key (hex, 64 characters)."""
    return hmac.new(_hash_key, value.encode(), hashlib.sha256).hexdigest()


def encrypt(value: str) -> str:
    """The stored form of a personal value."""
    return _cipher.encrypt(value.encode()).decode() if _cipher else value


def reveal(stored: str) -> str:
    """The value of a stored text, encrypted (with any configured key) or not; UnknownKey
    when none of the keys opens it."""
    if not stored.startswith(TOKEN_PREFIX):
        return stored
    if _cipher is None:
        raise UnknownKey("no key is configured")
    try:
        return _cipher.decrypt(stored.encode()).decode()
    except InvalidToken as exc:
        raise UnknownKey("encrypted with a key that is not configured") from exc


def decrypt(stored: str) -> str:
    """The value of a stored personal field; a plain word in place of one no key opens."""
    if _cipher is None or not stored.startswith(TOKEN_PREFIX):
        return stored
    try:
        return reveal(stored)
    except UnknownKey:
        # Encrypted with a key that is no longer configured: say so rather than show noise.
        return UNKNOWN_KEY


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


def seal(value: Any, plain_keys: frozenset[str] = frozenset()) -> Any:
    """The stored form of a JSON document: {"_fernet": token} when a key is configured.

    A dict holding only `plain_keys` is stored as it is: a reference, not a content (a
    bulletin's delivery holds only the bulletin's id and a language).
    """
    if _cipher is None or (isinstance(value, dict) and value.keys() <= plain_keys):
        return value
    return {JSON_TOKEN: encrypt(json.dumps(value, ensure_ascii=False))}


def is_sealed(stored: Any) -> bool:
    """Whether a stored JSON document is an encrypted one."""
    return isinstance(stored, dict) and len(stored) == 1 and JSON_TOKEN in stored


def unseal(stored: Any) -> Any:
    """A stored JSON document's value; UnknownKey when none of the keys opens it."""
    if not is_sealed(stored):
        return stored
    return json.loads(reveal(str(stored[JSON_TOKEN])))


def reseal(stored: Any, plain_keys: frozenset[str] = frozenset()) -> Any:
    """A stored JSON document encrypted again with the newest key (plain ones get encrypted)."""
    return seal(unseal(stored), plain_keys)


class Encrypted(TypeDecorator[str]):
    """A text column holding a personal value, encrypted when a key is configured."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON column that may hold personal values, encrypted whole when a key is configured.

    One no key opens reads as an empty document (a conversation starts afresh; a message is
    not sent) rather than failing every reader.
    """

    impl = JSON
    cache_ok = True

    def __init__(self, plain_keys: Iterable[str] = ()) -> None:
        super().__init__()
        self.plain_keys = frozenset(plain_keys)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else seal(value, self.plain_keys)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            return unseal(value)
        except UnknownKey:
            return {}


def encrypted_columns(metadata: MetaData) -> list[Column[Any]]:
    """Every column of every table whose values are encrypted at rest."""
    return [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, Encrypted | EncryptedJSON)
    ]
