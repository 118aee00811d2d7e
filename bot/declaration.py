"""The declaration's versions: an id and the SHA-256 of each language's text."""

from __future__ import annotations

import hashlib
from functools import cache

from bot.i18n import LOCALES, long_text

# Raise when the text changes in substance (a new declaration); a signature records the version
# it was given for, and the hash of the exact text its signer read.
VERSION = "2014-07-11"


@cache
def sha256(locale: str) -> str:
    """The SHA-256 of the declaration's text in `locale`, as shown to signers."""
    return hashlib.sha256(long_text("declaration", locale).encode("utf-8")).hexdigest()


def hashes() -> dict[str, str]:
    """The SHA-256 of every language's text."""
    return {locale: sha256(locale) for locale in LOCALES}
