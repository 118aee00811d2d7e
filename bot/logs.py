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
from typing import Any

# Libraries that log requests, answers or SQL with their parameters (what people wrote, their
# numbers): warnings and errors only, at any LOG_LEVEL.
NOISY = (
    "httpx",
    "httpcore",
    "aiosqlite",
    "alembic",
    "twilio",
    "aiohttp",
    "sqlalchemy",
    "asyncpg",
    "hpack",
    "multipart",
    "python_multipart",
)
# Our own loggers: the only ones whose DEBUG lines are written (ours never hold message texts).
OURS = ("bot", "handlers", "__main__")


class OursOnlyBelowInfo(logging.Filter):
    """Drops DEBUG records of libraries: python-telegram-bot, for one, logs every request's
    parameters (the text of each message) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        name = record.name
        return any(name == ours or name.startswith(ours + ".") for ours in OURS)


_ADDRESS = re.compile(r"\b(telegram|whatsapp|console):[^\s,;'\")\]]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
# Phone numbers as people write them (+964 770 123 4567, 0770 123 4567, 07701234567) and chat
# ids: an international number, a local one in groups, or seven digits in a row. Not dates.
_NUMBER = re.compile(r"\+\d[\d \-]{5,}\d|\b0\d{2,3}[ -]\d{3}[ -]\d{3,4}\b|\b\d{7,}\b")


def redact(text: str) -> str:
    """The text with addresses, e-mail addresses and long numbers masked."""
    text = _ADDRESS.sub(lambda m: f"{m.group(1)}:***", text)
    text = _EMAIL.sub("***@***", text)
    return _NUMBER.sub("***", text)


class TextFormatter(logging.Formatter):
    """One line of text per record, its message and exception masked."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        record.msg, record.args = redact(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


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
    handler.addFilter(OursOnlyBelowInfo())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Not even made: their DEBUG records would be dropped anyway.
    for library in ("telegram", "apscheduler", "uvicorn", "starlette", "asyncio"):
        logging.getLogger(library).setLevel(max(logging.getLevelName(level), logging.INFO))
