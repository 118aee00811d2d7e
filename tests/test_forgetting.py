"""Delete my data deletes everything, and every personal value at rest is encrypted.

Every table is filled through real conversations: a family's report (place, exact point, notes,
photo, phone), a subscription, a coordinator's view and note, a conversation left half-way, a
signature. Then each person asks to be forgotten, the sender sends everything, and every column
of every table is read raw and searched for what these people told us.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text

from bot import crypto
from bot.channels.console import ConsoleTransport
from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import AuditEntry, Base, Report, Signature
from bot.sender import Sender
from handlers import build_registry
from tests.conftest import Person
from tests.coordinator_helpers import report_left_half_way, send_full_report
from tests.helpers import choose_language
from tests.test_sign import sign

# What the people below tell the bot, as it would be stored or shown.
GIVEN = {
    "place": "Khanke camp",
    "notes": "We need a doctor",
    "photo": "file-9",
    "phone": "7501234567",
    "exact point": "37.12345",
    "half-way place": "Sharya collective centre",
    "representative": "Zainab Hassan",
    "role": "Director",
    "representative's phone": "7901234567",
    "email": "info@amal.example.org",
    "coordinator's note": "Tent 14 near the clinic",
}
ADDRESSES = ("console:family", "console:halfway", "console:signer")


class World:
    """The engine with console coordinators, and a sender printing to a buffer."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.settings = dataclasses.replace(
            settings, coordinators=frozenset({Address("console", "coordinator")})
        )
        self.out = io.StringIO()
        self.sender = Sender(db, [ConsoleTransport(self.out)])
        self.engine = Engine(db, self.settings, build_registry(), queued=self.sender.wake)

    def person(self, name: str) -> Person:
        return Person(self.engine, Address("console", name))

    async def flush(self) -> None:
        await self.sender.flush("console")


@pytest.fixture
async def world(db: Database, settings: Settings) -> AsyncIterator[World]:
    world = World(db, settings)
    world.sender.start()
    try:
        yield world
    finally:
        await world.sender.stop()


async def fill_every_table(world: World, db: Database) -> list[Person]:
    """The conversations that leave something of each person in every table."""
    family = world.person("family")
    await choose_language(family, "en")
    await send_full_report(family, "en")
    await family.tap("Bulletin")
    await family.tap("Subscribe")
    async with db.transaction() as session:
        [report] = (await session.scalars(select(Report))).all()
    coordinator = world.person("coordinator")
    await choose_language(coordinator, "en")
    await coordinator.send(f"/report {report.reference}")
    assert "Khanke camp" in coordinator.text()  # the coordinators' copy of the family's data
    await coordinator.press("st:verified")
    await coordinator.send(GIVEN["coordinator's note"])
    await coordinator.press("tell:no")  # for the record only

    halfway = world.person("halfway")
    await choose_language(halfway, "ar")
    await report_left_half_way(halfway, "ar", GIVEN["half-way place"])

    signer = world.person("signer")
    await choose_language(signer, "en")
    await sign(signer, "en")
    await world.flush()
    return [family, halfway, signer]


async def raw_dump(db: Database) -> str:
    """Every value of every column of every table, as the database holds it."""
    parts = []
    async with db.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = (await connection.execute(text(f"SELECT * FROM {table.name}"))).all()
            parts += [f"{table.name}: {tuple(row)}" for row in rows]
    return "\n".join(parts)


async def forget(person: Person) -> None:
    await person.send("/forget")
    await person.press("forget:yes")
    assert person.replies, "the goodbye"


async def test_nothing_given_is_left_after_delete_my_data(world: World, db: Database) -> None:
    people = await fill_every_table(world, db)
    before = await raw_dump(db)
    # Before: the half-way answers wait in the conversation (no key set: stored plain).
    assert GIVEN["half-way place"] in before
    assert GIVEN["representative"] in before
    # Everything was sent: the outbox quotes nobody any more, even before anyone is forgotten.
    outbox = "\n".join(line for line in before.splitlines() if line.startswith("outbox"))
    assert outbox
    for what in ("place", "notes", "phone", "representative", "email"):
        assert GIVEN[what] not in outbox, what
    for person in people:
        await forget(person)
    await world.flush()  # the goodbyes go, and leave nothing
    assert "Your data has been deleted" in world.out.getvalue()
    dump = await raw_dump(db)
    for what, value in GIVEN.items():
        assert value not in dump, f"{what} is still in the database"
    for address in ADDRESSES:
        assert address not in dump
    # What stays: the anonymous counts, the organization's verified or withdrawn signature,
    # and who acted in the audit log (the coordinator), without the note.
    async with db.transaction() as session:
        [report] = (await session.scalars(select(Report))).all()
        [signature] = (await session.scalars(select(Signature))).all()
        entries = (await session.scalars(select(AuditEntry))).all()
    assert (report.people, report.governorate, report.status) == (5, "IQG09", "verified")
    assert (signature.status, signature.representative, signature.forgotten_at is None) == (
        "withdrawn",
        None,
        False,
    )
    status = [e for e in entries if e.action == "status"]
    assert [(e.actor, e.detail) for e in status] == [
        ("console:coordinator", {"before": "new", "after": "verified", "forgotten": True})
    ]


async def test_a_verified_signature_stays_as_the_organizations(world: World, db: Database) -> None:
    signer = world.person("signer")
    await choose_language(signer, "en")
    await sign(signer, "en")
    coordinator = world.person("coordinator")
    await choose_language(coordinator, "en")
    async with db.transaction() as session:
        [signature] = (await session.scalars(select(Signature))).all()
    await coordinator.press(f"sig:open:{signature.id}")
    await coordinator.tap("Verify")
    await signer.send("/forget")
    assert "verified signature stays" in signer.text()
    await signer.press("forget:yes")
    async with db.transaction() as session:
        [signature] = (await session.scalars(select(Signature))).all()
    assert signature.status == "verified"
    assert (signature.representative, signature.role, signature.phone, signature.email) == (
        None,
        None,
        None,
        None,
    )
    assert signature.name_ar == "جمعية الأمل للتنمية"
    await coordinator.press(f"sig:open:{signature.id}")
    assert "asked to be forgotten" in coordinator.text()


async def test_every_personal_value_at_rest_is_encrypted(world: World, db: Database) -> None:
    crypto.configure((crypto.new_key(),))
    try:
        await fill_every_table(world, db)
        # A copy still waiting: the sender is held back while the family writes again.
        dump = await raw_dump(db)
    finally:
        crypto.configure(None)
    for what, value in GIVEN.items():
        assert value not in dump, f"{what} is stored in plain text"
    assert crypto.TOKEN_PREFIX in dump


async def test_copies_on_their_way_to_coordinators_go_with_the_person(
    engine: Engine, db: Database
) -> None:
    """No sender runs: the coordinator's view of the report waits in the outbox, about the
    family, when the family asks to be forgotten."""
    family = Person(engine, Address("console", "family"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    coordinator = Person(engine, Address("telegram", "1000"))  # a coordinator in `settings`
    await choose_language(coordinator, "en")
    async with db.transaction() as session:
        [report] = (await session.scalars(select(Report))).all()
    await coordinator.send(f"/report {report.reference}")
    assert "Khanke camp" in coordinator.text()
    assert "Khanke camp" in await raw_dump(db)  # no key: the waiting copy is plain
    await forget(family)
    dump = await raw_dump(db)
    for what in ("place", "notes", "phone", "photo"):
        assert GIVEN[what] not in dump, what
