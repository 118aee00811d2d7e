"""Logging to standard error, as text or JSON lines, with personal data masked.

Log lines leave the server (platform log drains, support requests): addresses, phone numbers
and e-mail addresses are masked in every line, whatever a library put in its message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

NOISY = ("httpx", "httpcore", "aiosqlite", "alembic", "twilio", "aiohttp.access")

_ADDRESS = re.compile(r"\b(telegram|whatsapp|console):[^\s,;'\")\]]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
# Seven digits or more, with the separators people write: phone numbers and chat ids.
_NUMBER = re.compile(r"(?<![\w.])\+?\d(?:[\d \-]{5,}\d)(?![\w.])")


def redact(text: str) -> str:
    """The text with addresses, e-mail addresses and long numbers masked."""
    text = _ADDRESS.sub(lambda m: f"{m.group(1)}:***", text)
    text = _EMAIL.sub("***@***", text)
    return _NUMBER.sub("***", text)


class TextFormatter(logging.Formatter):
    """One line of text per record, masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception), masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, form: str = "text") -> None:
    """Log records of `level` and above to standard error, as `form` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
