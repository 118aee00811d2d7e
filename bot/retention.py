"""Keeping personal data no longer than it serves: anonymizing reports, purging old rows."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.db import Database
from bot.models import OutboxMessage, ProcessedInbound, Report

logger = logging.getLogger(__name__)

# Sent messages can quote what people wrote (a report's summary); keep them only for support.
OUTBOX_DAYS = 14
PROCESSED_IDS_DAYS = 30

PERSONAL_BLANKS = {
    "place": None,
    "exact_point": None,
    "latitude": None,
    "longitude": None,
    "notes": None,
    "photo": None,
    "phone": None,
    "contact_ok": False,
}


async def anonymize_reports(session: AsyncSession, where: object, now: datetime) -> int:
    """Blank the personal fields of the reports matched by `where`; the counts stay."""
    result = await session.execute(
        update(Report)
        .where(where, Report.anonymized_at.is_(None))  # type: ignore[arg-type]
        .values(**PERSONAL_BLANKS, anonymized_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge(db: Database, settings: Settings, now: datetime) -> dict[str, int]:
    """Apply the retention rules once; return how many rows each rule touched."""
    async with db.transaction() as session:
        reports = await anonymize_reports(
            session,
            Report.created_at < now - timedelta(days=settings.report_retention_days),
            now,
        )
        outbox = await session.execute(
            delete(OutboxMessage).where(
                OutboxMessage.status != "pending",
                OutboxMessage.created_at < now - timedelta(days=OUTBOX_DAYS),
            )
        )
        processed = await session.execute(
            delete(ProcessedInbound).where(
                ProcessedInbound.processed_at < now - timedelta(days=PROCESSED_IDS_DAYS)
            )
        )
    counts = {
        "reports anonymized": reports,
        "outbox rows deleted": int(outbox.rowcount or 0),  # type: ignore[attr-defined]
        "processed ids deleted": int(processed.rowcount or 0),  # type: ignore[attr-defined]
    }
    logger.info("retention: %s", counts)
    return counts


async def rotate_keys(db: Database) -> int:
    """Re-encrypt every report's personal fields with the newest key; return how many."""
    from sqlalchemy import Table, Text, select, type_coerce

    from bot import crypto

    names = ("place", "exact_point", "notes", "photo", "phone")
    table = cast(Table, Report.__table__)
    changed = 0
    async with db.transaction() as session:
        # Read and write the stored text as it is (type_coerce to Text skips Encrypted's own
        # encrypting and decrypting), rotating each token to the newest key.
        raw = [type_coerce(table.c[name], Text) for name in names]
        for row in (await session.execute(select(table.c.id, *raw))).all():
            values = {
                name: type_coerce(crypto.rotate(value), Text)
                for name, value in zip(names, row[1:], strict=True)
                if value is not None
            }
            if values:
                await session.execute(table.update().where(table.c.id == row[0]).values(values))
                changed += 1
    return changed
