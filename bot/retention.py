"""Keeping personal data no longer than it serves, and encrypting it again under a new key."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import (
    JSON,
    Column,
    Row,
    String,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    inspect,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins, crypto, referrals
from bot.bulletins import UPLOAD
from bot.config import Settings
from bot.db import Database
from bot.models import (
    Base,
    Bulletin,
    BulletinPicture,
    Conversation,
    OutboxMessage,
    ProcessedInbound,
    Report,
    ReportMark,
    SignInLink,
    WebSession,
)
from bot.outbox import GONE, enqueue
from bot.privacy import anonymize_reports

logger = logging.getLogger(__name__)

# What a rule does to its rows: None deletes them; values are set on them; a function chooses
# each batch, (where, how many), and returns its keys, which are then deleted in the same
# transaction.
Values = dict[str, Any] | Callable[[AsyncSession, Sequence[Any], int], Awaitable[list[int]]] | None

# Sent messages are blanked once gone (bot.outbox); the rows are kept a while, for the sender
# and the status callbacks; a bulletin's figures outlive them in its tally.
OUTBOX_DAYS = 14
PROCESSED_IDS_DAYS = 30
# The daily report limit looks back one day; a mark older than that serves nothing.
REPORT_MARK_DAYS = 1
ROTATE_BATCH = 500
# Rows a retention rule touches in one transaction: about 10 ms of SQLite's time for the outbox.
PURGE_BATCH = 2_000


async def expire_referrals(db: Database, settings: Settings, now: datetime) -> int:
    """Referrals left unanswered past REFERRAL_ANSWER_HOURS expire, and the coordinators are
    told; returns the notices queued. Run with the rules below, and every few minutes."""
    async with db.transaction() as session:
        notices = await referrals.expire(session, settings, now)
        await enqueue(session, notices, None)
    return len(notices)


async def purge(
    db: Database, settings: Settings, now: datetime, *, batch: int = PURGE_BATCH
) -> dict[str, int]:
    """Apply the retention rules once; return how many rows each rule touched.

    Each rule goes `batch` rows to a transaction, with a turn for other work in between: in
    one statement, a DELETE of 200,000 outbox rows held SQLite's lock (and, the driver running
    in the loop's thread, every conversation) for 0.67 s. A rule cut short goes on next time.
    """
    expired = await expire_referrals(db, settings, now)
    reports, withdrawn = await _anonymize_old_reports(db, settings, now, batch)
    rules: list[tuple[str, Any, Any, Values]] = [
        (
            # A WhatsApp message waits for its delivery to be confirmed before its text is
            # blanked (bot.outbox); one never confirmed is blanked here, a day after.
            "sent messages blanked",
            OutboxMessage,
            (
                OutboxMessage.status.in_(GONE),
                OutboxMessage.created_at < now - timedelta(days=1),
                OutboxMessage.bulletin_id.is_(None),
                cast(OutboxMessage.body, Text) != "{}",
            ),
            {"body": {}},
        ),
        (
            # They hold the recipients' addresses; a bulletin's deliveries are counted into its
            # tally first, in the same transaction, for its figures and chart to stay.
            "outbox rows deleted",
            OutboxMessage,
            (
                OutboxMessage.status != "pending",
                OutboxMessage.created_at < now - timedelta(days=OUTBOX_DAYS),
            ),
            bulletins.fold_deliveries,
        ),
        (
            "processed ids deleted",
            ProcessedInbound,
            (ProcessedInbound.processed_at < now - timedelta(days=PROCESSED_IDS_DAYS),),
            None,
        ),
        (
            # Answers left half-way (a place, a phone number) are not kept for ever.
            "idle conversations deleted",
            Conversation,
            (Conversation.updated_at < now - timedelta(days=settings.conversation_idle_days),),
            None,
        ),
        (
            "report marks deleted",
            ReportMark,
            (ReportMark.at < now - timedelta(days=REPORT_MARK_DAYS),),
            None,
        ),
        ("console sessions ended", WebSession, (WebSession.expires_at <= now,), None),
        (
            # A photo uploaded on the bulletin desk for a bulletin never saved.
            "unused bulletin photos deleted",
            BulletinPicture,
            (
                BulletinPicture.created_at < now - timedelta(days=1),
                ~select(Bulletin.id)
                .where(Bulletin.image == literal(UPLOAD) + cast(BulletinPicture.id, String))
                .exists(),
            ),
            None,
        ),
        (
            # Kept a day after they were made, for the hourly limit and then nothing else.
            "sign-in links deleted",
            SignInLink,
            (SignInLink.created_at < now - timedelta(days=1),),
            None,
        ),
    ]
    # The charts of the bulletins whose rows go get their moments first, read in steps.
    await bulletins.prepare_charts(db, now - timedelta(days=OUTBOX_DAYS), batch * 5)
    counts = {
        "reports anonymized": reports,
        "referral notices": expired + withdrawn,
    }
    for name, model, where, values in rules:
        counts[name] = await _in_batches(db, model, where, values, batch)
    logger.info("retention: %s", counts)
    return counts


async def _anonymize_old_reports(
    db: Database, settings: Settings, now: datetime, batch: int
) -> tuple[int, int]:
    """Blank the personal fields of reports past their retention, `batch` reports to a
    transaction, their open referrals withdrawn first; return the reports and the notices."""
    old = Report.created_at < now - timedelta(days=settings.report_retention_days)
    reports = notices = 0
    while True:
        async with db.transaction() as session:
            ids = list(
                await session.scalars(
                    select(Report.id).where(old, Report.anonymized_at.is_(None)).limit(batch)
                )
            )
            these = Report.id.in_(ids)
            # An organization no longer works on a request whose family's data is going.
            withdrawn = await referrals.withdraw(session, these, now)
            await enqueue(session, withdrawn, None)
            reports += len(await anonymize_reports(session, these, now))
            notices += len(withdrawn)
        if len(ids) < batch:
            return reports, notices
        await asyncio.sleep(0)  # a conversation's turn between two batches (see _in_batches)


async def _in_batches(
    db: Database, model: Any, where: Sequence[Any], values: Values, batch: int
) -> int:
    """Delete the rows of `model` that match `where` (or set `values` on them, which must make
    them match no more; or, given a function, let it choose and count each batch first),
    `batch` of them to a transaction; return how many."""
    key = inspect(model).primary_key[0]
    # The rows of one batch, by primary key: portable (SQLite and PostgreSQL), and the outer
    # statement finds each of them by its index.
    chosen = select(key).where(*where).limit(batch).scalar_subquery()
    statement = (
        update(model).where(key.in_(chosen)).values(values)
        if isinstance(values, dict)
        else delete(model).where(key.in_(chosen))
    )
    total = 0
    while True:
        async with db.transaction() as session:
            if callable(values):
                ids = await values(session, where, batch)
                result = await session.execute(delete(model).where(key.in_(ids)))
            else:
                result = await session.execute(statement)
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += count
        if count < batch:
            return total
        # Another transaction's turn: on SQLite the statements run in the loop's thread, and a
        # conversation's message waiting for the lock goes next.
        await asyncio.sleep(0)


class Unreadable(Exception):
    """Stored values that none of the configured keys opens: (table.column, how many)."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(", ".join(f"{name}: {n}" for name, n in sorted(counts.items())))
        self.counts = counts


def _raw_type(column: Column[Any]) -> Any:
    """The column's stored type, without its encrypting TypeDecorator."""
    return JSON() if isinstance(column.type, crypto.EncryptedJSON) else Text()


def _rotator(column: Column[Any]) -> Callable[[Any], Any]:
    """How one stored value of the column is encrypted again with the newest key."""
    if isinstance(column.type, crypto.EncryptedJSON):
        plain_keys = column.type.plain_keys
        return lambda stored: crypto.reseal(stored, plain_keys)
    return crypto.rotate


def _rotated(rotate: Callable[[Any], Any], stored: Any) -> Any:
    """A stored value encrypted again (None stays None)."""
    if stored is None:
        return None
    try:
        return rotate(stored)
    except (crypto.UnknownKey, InvalidToken):
        # Written since the check by a process with other keys (not restarted with the new
        # ones): left as it is, for the next run's check to name.
        return stored


def _opens(column: Column[Any], stored: Any) -> bool:
    """Whether the configured keys open a stored value (a plain one opens)."""
    try:
        if isinstance(column.type, crypto.EncryptedJSON):
            crypto.unseal(stored)
        else:
            crypto.reveal(str(stored))
    except crypto.UnknownKey:
        return False
    return True


def _stored(column: Column[Any]) -> Any:
    """The column read as stored (type_coerce skips the type's own decrypting)."""
    return type_coerce(column, _raw_type(column))


async def _each_batch(
    db: Database,
    table: Table,
    columns: list[Column[Any]],
    work: Callable[[AsyncSession, Sequence[Row[Any]]], Awaitable[None]],
) -> None:
    """Run `work` on every row's key and stored values, a batch at a time, each batch in its
    own transaction (the rows locked on PostgreSQL): a running bot is never held up for long,
    and never has a newer value overwritten with an older one."""
    key = next(iter(table.primary_key.columns))
    raw = [_stored(column) for column in columns]
    last: Any = None
    while True:
        query = select(key, *raw).order_by(key).limit(ROTATE_BATCH).with_for_update()
        if last is not None:
            query = query.where(key > last)
        async with db.transaction() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return
            await work(session, rows)
        last = rows[-1][0]


async def rotate_keys(db: Database) -> dict[str, int]:
    """Encrypt every encrypted column of every table again with the newest key (values stored
    before a key was set get encrypted); return how many rows each table had rewritten.

    First every stored value is read: if any cannot be opened with the keys given, Unreadable
    is raised and nothing is changed. Then the rows are rewritten a batch at a time.
    """
    if not crypto.enabled():
        raise ValueError("DATA_ENCRYPTION_KEY is not set: there is no key to encrypt with")
    tables: dict[Table, list[Column[Any]]] = {}
    for column in crypto.encrypted_columns(Base.metadata):
        tables.setdefault(column.table, []).append(column)
    unreadable: Counter[str] = Counter()
    for table, columns in tables.items():

        async def check(
            session: AsyncSession, rows: Sequence[Row[Any]], columns: list[Column[Any]] = columns
        ) -> None:
            for row in rows:
                stored: Any
                for column, stored in zip(columns, row[1:], strict=True):
                    if stored is not None and not _opens(column, stored):
                        unreadable[f"{column.table.name}.{column.name}"] += 1

        await _each_batch(db, table, columns, check)
    if unreadable:
        raise Unreadable(dict(unreadable))
    rewritten: dict[str, int] = {}
    for table, columns in tables.items():
        key = next(iter(table.primary_key.columns))
        rotators = [_rotator(column) for column in columns]
        statement = (
            table.update()
            .where(key == bindparam("row_key"))
            .values({c.name: bindparam(f"new_{c.name}", type_=_raw_type(c)) for c in columns})
        )
        rewritten[table.name] = 0

        async def rewrite(
            session: AsyncSession,
            rows: Sequence[Row[Any]],
            columns: list[Column[Any]] = columns,
            rotators: list[Callable[[Any], Any]] = rotators,
            statement: Any = statement,
            name: str = table.name,
        ) -> None:
            values = []
            for row in rows:
                new: dict[str, Any] = {"row_key": row[0]}
                for index, column in enumerate(columns):
                    new[f"new_{column.name}"] = _rotated(rotators[index], row[index + 1])
                values.append(new)
            await session.execute(statement, values)
            rewritten[name] += len(values)

        await _each_batch(db, table, columns, rewrite)
    return rewritten
