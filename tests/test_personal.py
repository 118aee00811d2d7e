"""The one declaration of personal data (bot/personal.py), and the rules that follow it: every
column of a person's tables decided, personal ones encrypted, in "My data" and exports; the daily
limit that "Delete my data" does not reset; conversations left half-way deleted after a while."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select, update

from bot import crypto, exports
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import (
    Contact,
    Conversation,
    OrganizationMember,
    Referral,
    Report,
    ReportMark,
    ReportMessage,
    Signature,
)
from bot.personal import KINDS, is_personal, personal_columns
from bot.retention import purge
from handlers import build_registry
from tests.conftest import Person
from tests.coordinator_helpers import report_left_half_way, report_to_the_district
from tests.helpers import choose_language
from tests.test_report import send_quick_report

PERSON_TABLES = [
    Contact,
    Conversation,
    Report,
    ReportMessage,
    Signature,
    OrganizationMember,
    Referral,
]


@pytest.mark.parametrize("model", PERSON_TABLES, ids=lambda m: m.__tablename__)
def test_every_column_of_a_persons_tables_is_decided(model: Any) -> None:
    """Shown in "My data" (with a label and a kind), or internal with a reason: a column
    added without deciding fails here."""
    table = cast(Table, model.__table__)
    for column in table.columns:
        info = column.info
        assert ("label" in info) != ("why" in info), f"{table.name}.{column.name}: {info}"
        if "label" in info:
            assert info["kind"] in KINDS


@pytest.mark.parametrize("model", PERSON_TABLES, ids=lambda m: m.__tablename__)
def test_personal_columns_are_encrypted(model: Any) -> None:
    """Every personal value is encrypted at rest, but the area of a report (2 decimals, about
    1 km), which stays plain as the counts do, for the map, and is blanked when forgotten."""
    for column in personal_columns(cast(Table, model.__table__)):
        if column.info["plain"]:  # the reason it is not encrypted, for reviewers
            continue
        assert isinstance(column.type, crypto.Encrypted | crypto.EncryptedJSON), column


def test_exports_keep_personal_columns_private() -> None:
    """A personal column of reports or signatures is in private exports only."""
    reports = cast(Table, Report.__table__)
    by_name = {name: private for name, _tag, private in exports.COLUMNS}
    # The area (plain, see its declaration) is the public export's point, as on the map.
    hidden = [c for c in personal_columns(reports) if not c.info["plain"]]
    for column in hidden:
        if column.name in by_name:
            assert by_name[column.name], column.name
    for name, private in by_name.items():
        if name in reports.columns:
            column = reports.columns[name]
            assert private == (is_personal(column) and not column.info["plain"]), name
    signatures = cast(Table, Signature.__table__)
    for column in personal_columns(signatures):
        assert column.name in exports.PRIVATE_SIGNATURE_FIELDS
        assert column.name not in exports.PUBLIC_SIGNATURE_FIELDS


def test_every_kind_has_a_way_to_be_shown() -> None:
    from handlers.privacy import formatters

    ctx: Any = dataclasses.make_dataclass("C", [("settings", Settings)])(Settings())
    assert set(formatters(ctx)) == set(KINDS)


async def test_my_data_lists_the_subscription_the_signature_and_the_conversation(
    person: Person, db: Database
) -> None:
    from tests.test_sign import sign

    await choose_language(person, "en")
    await person.tap("Bulletin")
    await person.tap("Subscribe")
    await person.send("/menu")
    await sign(person, "en")
    await person.send("/menu")
    await report_left_half_way(person, "en", "Sharya collective centre")
    await person.send("/mydata")
    shown = person.text()
    assert "Subscribed to the bulletin: Yes" in shown
    assert "A conversation in progress: Report a displaced family" in shown
    assert "Sharya collective centre" in shown  # an answer not yet sent
    assert "Zainab Hassan" in shown  # the representative's own fields
    assert "info@amal.example.org" in shown
    assert "Pending verification" in shown
    [signature] = await db_signatures(db)
    assert signature.receipt in shown


async def db_signatures(db: Database) -> list[Signature]:
    async with db.transaction() as session:
        return list((await session.scalars(select(Signature))).all())


async def test_the_daily_limit_survives_delete_my_data(db: Database, settings: Settings) -> None:
    limited = dataclasses.replace(settings, reports_per_day=2)
    person = Person(Engine(db, limited, build_registry()), Address("console", "again"))
    await choose_language(person, "en")
    await send_quick_report(person)
    await send_quick_report(person)
    await person.send("/forget")
    await person.press("forget:yes")
    await choose_language(person, "en")  # a new contact, as far as the bot knows
    await person.tap("Report a displaced family")
    await person.tap("I agree")
    assert "You have already sent 2 reports today" in person.text()
    async with db.transaction() as session:
        marks = (await session.scalars(select(ReportMark))).all()
        reports = await session.scalar(select(func.count()).select_from(Report))
    assert reports == 2
    # The marks hold a keyed hash and a time, nothing that names the person.
    assert {len(m.key) for m in marks} == {64}
    assert all("again" not in m.key for m in marks)
    # A day later the limit is lifted and the marks are gone.
    async with db.transaction() as session:
        await session.execute(
            update(ReportMark).values(at=datetime.now(UTC) - timedelta(days=1, minutes=1))
        )
    counts = await purge(db, limited, datetime.now(UTC))
    assert counts["report marks deleted"] == 2
    await person.send("/menu")
    await person.tap("Report a displaced family")
    await person.tap("I agree")
    assert "You have already sent" not in person.text()
    assert any(button.payload == "gov:IQG09" for button in person.options())


async def test_a_conversation_left_half_way_is_deleted_after_the_idle_days(
    person: Person, db: Database, settings: Settings
) -> None:
    await choose_language(person, "en")
    await report_left_half_way(person, "en", "Sharya collective centre")
    async with db.transaction() as session:
        await session.execute(
            update(Conversation).values(updated_at=datetime.now(UTC) - timedelta(days=8))
        )
    counts = await purge(
        db, dataclasses.replace(settings, conversation_idle_days=7), datetime.now(UTC)
    )
    assert counts["idle conversations deleted"] == 1
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 0
        assert await session.scalar(select(func.count()).select_from(Contact)) == 1
    await person.send("hello")  # the person comes back to the menu, not to the old answers
    assert "Sharya" not in person.text()


async def test_choosing_only_the_area_forgets_the_exact_point(
    person: Person, db: Database
) -> None:
    from bot.messages import Inbound, Location

    await choose_language(person, "en")
    await report_to_the_district(person, "en")
    await person.deliver(
        Inbound(person.address, "loc-1", kind="location", location=Location(37.12345, 42.54321))
    )
    await person.press("prec:area")
    async with db.transaction() as session:
        conversation = await session.scalar(select(Conversation))
        assert conversation is not None
        assert (conversation.data["lat"], conversation.data["lon"]) == (37.12, 42.54)


async def test_a_sent_message_never_confirmed_is_blanked_a_day_after(
    db: Database, settings: Settings
) -> None:
    """On WhatsApp a sent message keeps its text until its delivery is confirmed (it may have to
    go again); one never confirmed is blanked by retention a day after."""
    from bot.models import OutboxMessage

    now = datetime.now(UTC)
    async with db.transaction() as session:
        for age in (timedelta(hours=2), timedelta(days=2)):
            session.add(
                OutboxMessage(
                    channel="whatsapp",
                    address="whatsapp:+9647701234567",
                    priority=0,
                    body={"address": "whatsapp:+9647701234567", "text": "Khanke camp"},
                    status="sent",
                    created_at=now - age,
                )
            )
    counts = await purge(db, settings, now)
    assert counts["sent messages blanked"] == 1
    async with db.transaction() as session:
        recent, old = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
    assert "Khanke camp" in recent.body["text"]
    assert old.body == {}
    assert (await purge(db, settings, now))["sent messages blanked"] == 0
