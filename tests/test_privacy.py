"""People's own data: see it all, delete it; and retention that forgets by itself."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import Contact, Conversation, OutboxMessage, ProcessedInbound, Report
from bot.retention import purge
from tests.conftest import Person, user_url
from tests.coordinator_helpers import send_full_report
from tests.helpers import choose_language, state, t, tc
from tests.test_report import reports


async def test_my_data_shows_everything_in_my_language(person: Person, db: Database) -> None:
    await choose_language(person, "ckb")
    await send_full_report(person, "ckb")
    await person.tap(t("ckb", "My data"))
    shown = person.text()
    [report] = await reports(db)
    assert report.reference in shown
    assert "Khanke camp" in shown
    assert "We need a doctor" in shown
    assert "+9647501234567" in shown
    assert "کوردی" in shown
    assert t("ckb", "Delete my data") in person.labels()


async def test_forget_deletes_the_person_and_blanks_the_reports(
    person: Person, db: Database
) -> None:
    await choose_language(person, "en")
    await send_full_report(person, "en")
    await person.send("/forget")
    assert "cannot be undone" in person.text()
    await person.tap("Yes, delete my data")
    assert "Your data has been deleted" in person.text()
    assert person.labels() == []
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 0
        left = (await session.scalars(select(OutboxMessage))).all()
    mine = [row for row in left if row.address == "console:tester"]
    assert len(mine) == 1  # only the goodbye
    assert "Khanke" not in str([row.body for row in left])  # nothing quotes the family
    assert "7501234567" not in str([row.body for row in left])
    [report] = await reports(db)
    assert report.contact_id is None
    assert (report.place, report.notes, report.phone, report.photo) == (None, None, None, None)
    assert (report.latitude, report.exact_point, report.contact_ok) == (None, None, False)
    assert report.anonymized_at is not None
    assert (report.people, report.governorate, report.needs) == (5, "IQG09", ["food", "health"])
    async with db.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT place, notes, phone FROM reports"))).one()
    assert tuple(raw) == (None, None, None)
    # Writing again starts afresh.
    await person.send("hello")
    assert person.labels()[:3] == ["العربية", "کوردی (سۆرانی)", "English"]


async def test_forget_can_be_declined(person: Person, db: Database) -> None:
    await choose_language(person, "ar")
    await person.send("/forget")
    await person.tap(tc("ar", "data", "No, keep it"))
    assert t("ar", "Nothing was deleted.") in person.text()
    assert (await state(db, "console:tester"))["locale"] == "ar"


async def test_retention_blanks_old_reports_only(
    engine: Engine, db: Database, settings: Settings
) -> None:
    family = Person(engine, Address("console", "old"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    await send_full_report(family, "en")
    async with db.transaction() as session:
        first = await session.scalar(select(Report).order_by(Report.id).limit(1))
        assert first is not None
        first.created_at = datetime.now(UTC) - timedelta(days=400)
    counts = await purge(
        db, dataclasses.replace(settings, report_retention_days=365), datetime.now(UTC)
    )
    assert counts["reports anonymized"] == 1
    old, new = await reports(db)
    assert (old.place, old.phone, old.anonymized_at is not None) == (None, None, True)
    assert (new.place, new.phone, new.anonymized_at) == ("Khanke camp", "+9647501234567", None)
    assert old.people == 5


async def test_retention_blanks_old_reports_a_batch_at_a_time(
    engine: Engine, db: Database, settings: Settings
) -> None:
    """Reports past retention are anonymized in short transactions, each a batch, until none
    is left; a newer one keeps its fields."""
    family = Person(engine, Address("console", "old"))
    await choose_language(family, "en")
    for _ in range(3):  # the daily limit
        await send_full_report(family, "en")
    async with db.transaction() as session:
        for report in (await session.scalars(select(Report).order_by(Report.id))).all()[:2]:
            report.created_at = datetime.now(UTC) - timedelta(days=400)
    limited = dataclasses.replace(settings, report_retention_days=365)
    counts = await purge(db, limited, datetime.now(UTC), batch=1)
    assert counts["reports anonymized"] == 2
    assert [r.place for r in await reports(db)] == [None, None, "Khanke camp"]
    assert (await purge(db, limited, datetime.now(UTC), batch=1))["reports anonymized"] == 0


async def test_the_purge_command_applies_every_rule(
    engine: Engine, db: Database, db_url: str
) -> None:
    family = Person(engine, Address("console", "old"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    long_ago = datetime.now(UTC) - timedelta(days=400)
    async with db.transaction() as session:
        report = await session.scalar(select(Report))
        assert report is not None
        report.created_at = long_ago
        for status in ("sent", "failed", "pending"):  # a pending message is never dropped
            session.add(
                OutboxMessage(
                    channel="console",
                    address="console:old",
                    priority=2,
                    body={},
                    status=status,
                    created_at=long_ago,
                )
            )
        session.add(ProcessedInbound(channel="console", message_id="old", processed_at=long_ago))
        session.add(ProcessedInbound(channel="console", message_id="new"))
    env = {**os.environ, "DATABASE_URL": user_url(db_url), "REPORT_RETENTION_DAYS": "365"}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot.cli", "db", "purge"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    said = err.decode()
    assert process.returncode == 0, said
    assert "'reports anonymized': 1" in said
    assert "'outbox rows deleted': 2" in said
    assert "'processed ids deleted': 1" in said
    [old] = await reports(db)
    assert (old.place, old.phone, old.anonymized_at is not None) == (None, None, True)
    async with db.transaction() as session:
        left = await session.scalars(
            select(OutboxMessage.status).where(OutboxMessage.created_at < now_minus(300))
        )
        assert list(left) == ["pending"]
        ids = await session.scalars(select(ProcessedInbound.message_id))
        assert "old" not in list(ids)


def now_minus(days: int) -> datetime:
    """That many days ago."""
    return datetime.now(UTC) - timedelta(days=days)
