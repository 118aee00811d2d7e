"""Targeted bulletins in the chat: subscribers choose the governorates they want news about,
"My data" shows the choice, and coordinators target a bulletin and see it before sending."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.models import Bulletin, OutboxMessage
from bot.scheduler import BulletinScheduler
from tests.conftest import Person
from tests.helpers import LANGS, t
from tests.test_bulletin import EN, compose, contact, coordinator, subscribe

__all__ = ["coordinator"]  # a fixture


@pytest.mark.parametrize("locale", LANGS)
async def test_a_subscriber_chooses_governorates_and_sees_them_in_my_data(
    engine: Engine, db: Database, locale: str
) -> None:
    person = await subscribe(engine, "41", locale)
    assert t(locale, "News about: %(places)s").split(":")[0] in person.text()
    assert t(locale, "All of Iraq") in person.text()
    await person.tap(t(locale, "Choose governorates"))
    assert t(locale, "All of Iraq") in person.labels()
    duhok = {"ar": "دهوك", "ckb": "دهۆک", "en": "Duhok"}[locale]
    await person.tap(duhok)
    assert f"✅ {duhok}" in person.labels()
    await person.send({"ar": "نينوى", "ckb": "نەینەوا", "en": "Ninewa"}[locale])  # typed too
    await person.tap(t(locale, "Done"))
    assert (await contact(db, "41")).bulletin_places == "IQG09 IQG15"
    assert duhok in person.text()
    await person.send("/mydata")
    assert t(locale, "Bulletin news about") in person.text()
    assert duhok in person.text()
    # All of Iraq again, in one press.
    await person.send("/menu")
    await person.tap(t(locale, "Bulletin"))
    await person.tap(t(locale, "Choose governorates"))
    assert f"✅ {duhok}" in person.labels()  # the choice as it stands
    await person.tap(t(locale, "All of Iraq"))
    assert (await contact(db, "41")).bulletin_places is None


async def test_a_coordinator_targets_a_bulletin_in_the_chat(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    duhok = await subscribe(engine, "51", "en")
    await duhok.tap("Choose governorates")
    await duhok.tap("Duhok")
    await duhok.tap("Done")
    basra = await subscribe(engine, "52", "en")
    await basra.tap("Choose governorates")
    await basra.tap("Al-Basrah")
    await basra.tap("Done")
    await subscribe(engine, "53", "en")  # all of Iraq
    await compose(coordinator, {"en": EN})
    assert "It goes to every subscriber." in coordinator.text()
    await coordinator.tap("Choose governorates")
    await coordinator.tap("Duhok")
    await coordinator.tap("Ninewa")
    await coordinator.tap("Done")
    assert "It goes to the subscribers of Duhok, Ninewa" in coordinator.text()
    await coordinator.tap("Send now")
    confirmation = coordinator.text()
    assert "subscribers of Duhok, Ninewa" in confirmation
    assert "goes to 2 subscribers" in confirmation
    await coordinator.tap("Yes, send it to 2 people")
    await BulletinScheduler(db, settings).sync()
    async with db.transaction() as session:
        bulletin = await session.scalar(select(Bulletin))
        assert bulletin is not None
        assert bulletin.places == ["IQG09", "IQG15"]
        addresses = (
            await session.scalars(
                select(OutboxMessage.address).where(OutboxMessage.bulletin_id == bulletin.id)
            )
        ).all()
    assert sorted(addresses) == ["telegram:51", "telegram:53"]


async def test_a_recurring_bulletin_keeps_its_governorates_and_edits_change_them(
    engine: Engine, db: Database, settings: Settings, coordinator: Person
) -> None:
    await compose(coordinator, {"en": EN})
    await coordinator.tap("Choose governorates")
    await coordinator.tap("Erbil")
    await coordinator.tap("Done")
    await coordinator.tap("Every day")
    await coordinator.send("09:00")
    await coordinator.send("/bulletin")
    await coordinator.tap("Scheduled")
    await coordinator.press(coordinator.options()[0].payload)
    assert "subscribers of Erbil" in coordinator.text()
    await coordinator.tap("Edit the text or photo")
    await coordinator.press("lang:done")
    await coordinator.tap("Skip")  # no photo
    await coordinator.tap("Choose governorates")
    assert "✅ Erbil" in coordinator.labels()
    await coordinator.tap("Every subscriber")
    await coordinator.tap("Save the changes")
    async with db.transaction() as session:
        template = await session.scalar(select(Bulletin))
        assert template is not None
        assert template.places == []
        template.places = ["IQG11"]
    scheduler = BulletinScheduler(db, settings)
    await scheduler.fire(template.id)
    async with db.transaction() as session:
        copy = await session.scalar(select(Bulletin).where(Bulletin.parent_id == template.id))
        assert copy is not None
        assert copy.places == ["IQG11"]
