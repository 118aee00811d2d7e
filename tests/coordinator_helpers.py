"""A report with every personal field filled in, for the privacy and export tests."""

from __future__ import annotations

import uuid

from bot.messages import Inbound, Location, Media
from tests.conftest import Person
from tests.helpers import t


async def send_full_report(person: Person, locale: str) -> None:
    """From the menu: a report with a place, an exact point, notes, a photo and a phone."""
    await person.tap(t(locale, "Report a displaced family"))
    await person.tap(t(locale, "I agree"))
    await person.press("gov:IQG09")
    await person.press("dist:IQG09Q04")
    await person.send("Khanke camp")
    for payload in ("orig:IQG15", "when:gt1y", "n:5", "n:1", "n:1", "n:0", "n:1", "yes"):
        await person.press(payload)
    for payload in ("shelter:camp", "need:food", "need:health", "need:done", "urgent:health"):
        await person.press(payload)
    await person.deliver(
        Inbound(
            person.address,
            uuid.uuid4().hex,
            kind="photo",
            text="We need a doctor",
            media=(Media("photo", "file-9"),),
        )
    )
    await person.press("yes")
    await person.send("+964 750 123 4567")
    await person.press("yes")  # the number may go to a relief organization
    # From the summary, add the location as well as the place name.
    await person.tap(t(locale, "Edit: %(item)s") % {"item": t(locale, "Place")})
    await person.deliver(
        Inbound(
            person.address,
            uuid.uuid4().hex,
            kind="location",
            location=Location(37.12345, 42.54321),
        )
    )
    await person.press("prec:exact")
    await person.tap(t(locale, "Send the report"))


async def report_to_the_district(person: Person, locale: str) -> None:
    """From the menu: a report begun, up to the place question (Duhok, Sumel)."""
    await person.tap(t(locale, "Report a displaced family"))
    await person.tap(t(locale, "I agree"))
    await person.press("gov:IQG09")
    await person.press("dist:IQG09Q04")


async def report_left_half_way(person: Person, locale: str, place: str) -> None:
    """From the menu: a report begun, the place given, then left (answers in progress)."""
    await report_to_the_district(person, locale)
    await person.send(place)
