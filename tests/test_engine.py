"""The engine's promises: one transaction per message, no duplicates, order, restarts, failures."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.db import Database
from bot.engine import Engine
from bot.flows import Ctx, Flow, Registry, Step, Transition, stay
from bot.messages import Address, Inbound, Media, Outbound
from bot.models import Conversation, OutboxMessage, ProcessedInbound
from handlers import build_registry, declaration, language, menu
from handlers.declaration import pages
from tests.conftest import Person
from tests.helpers import LANGS, choose_language, count, menu_labels, state, t

ME = "console:tester"


async def test_restart_in_the_middle_of_a_flow_continues(
    person: Person, db: Database, settings: Settings
) -> None:
    await choose_language(person, "ckb")
    await person.tap(t("ckb", "The declaration"))
    await person.tap(t("ckb", "Next part"))
    await db.close()

    # A new process: a new database connection and a new engine on the same file.
    db2 = Database(settings.database_url)
    try:
        again = Person(Engine(db2, settings, build_registry()), Address("console", "tester"))
        await again.deliver(Inbound(again.address, "resume-1", kind="resume"))
        assert pages("ckb")[1] in again.text()
        await again.send("1")  # "Previous part", numbered as it was shown
        assert pages("ckb")[0] in again.text()
        assert (await state(db2, ME))["locale"] == "ckb"
    finally:
        await db2.close()


async def test_a_message_delivered_twice_is_handled_once(person: Person, db: Database) -> None:
    await choose_language(person, "en")
    await person.tap("The declaration")
    outbox_before = await count(db, OutboxMessage)
    first = await person.send("1", message_id="tg-555")  # Next part
    assert pages("en")[1] in person.text()
    # Delivered again: if handled, "1" would now mean "Previous part".
    second = await person.send("1", message_id="tg-555")
    assert first
    assert second == []
    assert await count(db, OutboxMessage) == outbox_before + len(first)
    assert (await state(db, ME))["data"] == {"page": 1}


async def test_replies_are_in_the_outbox_when_handle_returns(person: Person, db: Database) -> None:
    replies = await person.send("/start")
    async with db.transaction() as session:
        from sqlalchemy import select

        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    assert [row.body["text"] for row in rows] == [r.text for r in replies]
    assert {row.status for row in rows} == {"pending"}


async def test_two_messages_of_one_person_at_once_are_handled_in_turn(
    person: Person, db: Database
) -> None:
    await choose_language(person, "en")
    await person.tap("The declaration")
    # "Next" and "back" arrive together: back must see the page that next turned to.
    results = await asyncio.gather(person.send("next part"), person.send("back"))
    assert results[0]
    assert results[1]
    final = await state(db, ME)
    assert final["flow"] == "declaration"
    assert final["data"] == {"page": 0}  # next (to 1), then back (to 0), in that order
    assert await count(db, ProcessedInbound) == 5


async def test_many_people_at_once(engine: Engine, db: Database) -> None:
    people = [Person(engine, Address("telegram", str(n))) for n in range(20)]
    await asyncio.gather(*(p.send("/start") for p in people))
    await asyncio.gather(*(p.tap("English") for p in people))
    for p in people:
        assert p.labels() == menu_labels("en")
    assert await count(db, ProcessedInbound) == 40


async def explode(ctx: Ctx) -> Transition:
    """A step with a bug."""
    raise RuntimeError("bug in a step")


async def in_flow(flow: Flow, db: Database, settings: Settings, pick: str = "English") -> Person:
    """A person of an engine that runs `flow` beside the language and menu flows, who opened it
    by its deep link and picked the language `pick`."""
    registry = Registry(
        [language.FLOW, menu.FLOW, declaration.FLOW, flow], deep_links={flow.name: flow.name}
    )
    person = Person(Engine(db, settings, registry), Address("console", "tester"))
    await person.send(f"/start {flow.name}")
    await person.tap(pick)
    return person


async def ask_boom(ctx: Ctx) -> None:
    ctx.ask("Say anything", [])


async def test_a_failing_step_apologizes_and_keeps_the_place(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    boom = Flow("boom", {"ask": Step(ask_boom, explode, accepts_text=True)})
    person = await in_flow(boom, db, settings, "کوردی (سۆرانی)")
    before = await state(db, ME)
    assert before["flow"] == "boom"
    with caplog.at_level(logging.ERROR):
        await person.send("hello", message_id="m-1")
    assert person.text().strip().lstrip("\u200f") == t(
        "ckb", "Sorry, something went wrong on our side. Please try again in a moment."
    )
    assert "bug in a step" in caplog.text  # the traceback is logged
    assert "hello" not in caplog.text  # the message text is not
    assert await state(db, ME) == before
    assert await person.send("hello", message_id="m-1") == []  # not retried forever


async def test_stay_keeps_the_step(db: Database, settings: Settings) -> None:
    async def ask(ctx: Ctx) -> None:
        ctx.ask("Q", [])

    async def answer(ctx: Ctx) -> Transition:
        ctx.say("noted")
        return stay()

    quiet = Flow("quiet", {"q": Step(ask, answer, accepts_text=True)})
    person = await in_flow(quiet, db, settings)
    await person.send("anything")
    assert person.text().strip() == "noted"
    assert (await state(db, ME))["step"] == "q"


async def test_a_nested_change_on_the_same_step_is_saved(db: Database, settings: Settings) -> None:
    """A step that adds to a list in its data and stays: the change is written (the saved
    data was compared with a shallow copy of itself, and seemed unchanged)."""

    async def ask(ctx: Ctx) -> None:
        ctx.ask("Q", [])

    async def answer(ctx: Ctx) -> Transition:
        ctx.data.setdefault("seen", {"words": []})["words"].append(ctx.text)
        ctx.say("noted")
        return stay()

    collect = Flow("collect", {"q": Step(ask, answer, accepts_text=True)})
    person = await in_flow(collect, db, settings)
    await person.send("one")
    await person.send("two")
    assert (await state(db, ME))["data"] == {"seen": {"words": ["one", "two"]}}


async def test_work_after_the_transaction_is_queued_and_its_failure_apologized(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Work a step leaves for after its transaction sends what it returns; if it fails, the
    person is told in their language and the conversation stays where the step put it."""

    async def ask(ctx: Ctx) -> None:
        ctx.ask("Q", [])

    async def answer(ctx: Ctx) -> Transition:
        async def later(db: Database) -> list[Outbound]:
            if ctx.text == "fail":
                raise RuntimeError("bug after the step")
            async with db.transaction() as session:  # the step's transaction is over
                count = await session.scalar(select(func.count()).select_from(Conversation))
            return [Outbound(address=ctx.address, text=f"later {count}")]

        ctx.data["said"] = ctx.text
        ctx.say("now")
        ctx.after.append(later)
        return stay()

    afterwards = Flow("afterwards", {"q": Step(ask, answer, accepts_text=True)})
    person = await in_flow(afterwards, db, settings, "کوردی (سۆرانی)")

    async def queued() -> int:
        async with db.transaction() as session:
            mine = OutboxMessage.address == str(ME)
            return int(await session.scalar(select(func.count()).where(mine)) or 0)

    before = await queued()
    replies = await person.send("fine")
    assert [m.text.strip().lstrip("\u200f") for m in replies] == ["now", "later 1"]
    assert await queued() == before + 2  # the later message is in the outbox too
    with caplog.at_level(logging.ERROR):
        replies = await person.send("fail")
    assert replies[-1].text.strip().lstrip("\u200f") == t(
        "ckb", "Sorry, something went wrong on our side. Please try again in a moment."
    )
    assert "bug after the step" in caplog.text
    assert await queued() == before + 4
    assert (await state(db, ME))["data"] == {"said": "fail"}  # the step's work was kept


BAD_INPUTS = [
    "",
    " ",
    "x" * 5000,
    "🙂🙂🙂",
    "\x00\x01\x1b[31m\x7f",
    "\u202e\u200f\u2066\u061c",
    "٩٩",
    "۹۹",
    "99",
    "0",
    "-1",
    "<b>bold</b> *_[x](y)& %s {0}",
    "'; DROP TABLE contacts; --",
]


async def walk_to(person: Person, place: str, locale: str) -> None:
    """Bring a person to one of the steps of this release."""
    if place == "language":
        await person.send("/start")
        return
    await choose_language(person, locale)
    if place == "declaration":
        await person.tap(t(locale, "The declaration"))
        await person.tap(t(locale, "Next part"))
    elif place == "bulletin":
        await person.tap(t(locale, "Bulletin"))
    elif place.startswith("report"):
        await person.tap(t(locale, "Report a displaced family"))
        for payload in REPORT_PATHS[place]:
            await person.press(payload)


# Before a language is chosen, the default locale (ar) speaks.
REPORT_START = ["r:agree", "gov:IQG08", "dist:unknown", "place:skip", "orig:IQG01", "when:1to6m"]
REPORT_PATHS = {
    "report-consent": [],
    "report-gov": ["r:agree"],
    "report-people": REPORT_START,
    "report-needs": [*REPORT_START, "n:3", "n:0", "n:0", "n:0", "n:0", "no", "shelter:rented"],
}
PLACES = [
    ("language", "ar"),
    *[(place, locale) for place in ("menu", "declaration", "bulletin") for locale in LANGS],
    *[(place, "ar") for place in ("report-consent", "report-gov", "report-needs")],
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
@pytest.mark.parametrize(("place", "locale"), PLACES)
async def test_bad_input_at_every_step(
    person: Person, db: Database, place: str, locale: str, bad: str
) -> None:
    await walk_to(person, place, locale)
    before = await state(db, ME)
    options = person.labels()
    await person.send(bad)
    said = person.text()
    assert said.strip()
    assert person.labels() == options  # the same question again
    hint = t(locale, "Sorry, I did not understand that. Please choose one of the options below.")
    if place not in ("language", "report-gov"):  # typed names get their own hint there
        assert hint in said
    assert await state(db, ME) == before


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
async def test_bad_input_where_a_number_is_the_answer(
    person: Person, db: Database, bad: str
) -> None:
    await walk_to(person, "report-people", "ckb")
    before = await state(db, ME)
    await person.send(bad)
    question = t(
        "ckb", "How many people are in the family, including you? Type a number from 1 to 30."
    )
    assert question in person.text()
    assert await state(db, ME) == before


@pytest.mark.parametrize("locale", LANGS)
async def test_a_photo_where_a_choice_is_expected(
    person: Person, db: Database, locale: str
) -> None:
    await choose_language(person, locale)
    before = await state(db, ME)
    await person.deliver(
        Inbound(person.address, "p-1", kind="photo", media=(Media("photo", "file-1"),))
    )
    assert (
        t(
            locale,
            "Thank you, but I cannot use a photo, file or location here. "
            "Please choose one of the options below.",
        )
        in person.text()
    )
    assert person.labels() == menu_labels(locale)
    assert await state(db, ME) == before


@pytest.mark.parametrize(
    ("locale", "caption", "where"),
    [
        ("ar", "رجوع", ("bulletin", "home")),
        ("en", "Menu", ("menu", "main")),
        ("ckb", "١", ("bulletin", "home")),  # option 1 of an empty archive: Back
    ],
)
async def test_a_photo_captioned_with_an_escape(
    person: Person, db: Database, locale: str, caption: str, where: tuple[str, str]
) -> None:
    # Found by tests/test_fuzz.py: a caption naming Back or Menu reached the step's answer as
    # the choice "nav:back" (the archive failed on int("nav:back")), not as the escape.
    await choose_language(person, locale)
    await person.tap(t(locale, "Bulletin"))
    await person.tap(t(locale, "Archive"))
    photo = Media("photo", "file-2")
    await person.deliver(
        Inbound(person.address, "p-2", kind="photo", text=caption, media=(photo,))
    )
    apology = "Sorry, something went wrong on our side. Please try again in a moment."
    assert t(locale, apology) not in person.text()
    now = await state(db, ME)
    assert (now["flow"], now["step"]) == where


def test_an_outbound_message_survives_the_outbox_with_every_field() -> None:
    """Outbound.to_json names its fields one by one: a field added later must not be lost."""
    import dataclasses

    from bot.messages import Button, Outbound

    message = Outbound(
        address=Address("whatsapp", "+9647701234567"),
        text="نص",
        title="عنوان",
        buttons=((Button("نعم", "yes"), Button("لا", "no")), (Button("Back", "nav:back"),)),
        photo="https://example.org/p.jpg",
        document="/tmp/export.csv",
        priority="notice",
        locale="ckb",
        numbered=False,
        ephemeral=True,
    )
    stored = message.to_json()
    # `about` is the outbox row's subject_id column, not part of the body.
    assert set(stored) | {"about"} == {field.name for field in dataclasses.fields(Outbound)}
    assert stored["address"] == "whatsapp:+9647701234567"
    assert stored["buttons"] == [[["نعم", "yes"], ["لا", "no"]], [["Back", "nav:back"]]]
    assert Outbound.from_json(stored) == message


async def test_each_message_marks_the_person_seen_and_reachable(
    db: Database, settings: Settings
) -> None:
    """The contact's seen times and reachability are written with each message; a resume after a
    restart changes neither; a step's own change (the language) is written beside them."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select, update

    from bot.models import Contact

    moments = iter(
        datetime(2026, 12, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(9)
    )
    engine = Engine(db, settings, build_registry(), clock=lambda: next(moments))
    me = Person(engine, Address("console", "seen"))
    await me.send("/start")  # 09:00 on creating the contact, 09:01 for the step
    async with db.transaction() as session:
        await session.execute(
            update(Contact).values(unreachable=True, unreachable_reason="blocked the bot")
        )

    async def stored() -> tuple[Any, ...]:
        async with db.transaction() as session:
            contact = await session.scalar(
                select(Contact).where(Contact.address == "console:seen")
            )
            assert contact is not None
            return (
                contact.locale,
                contact.last_seen,
                contact.last_inbound_at,
                contact.unreachable,
                contact.unreachable_reason,
            )

    await me.press("lang:ckb")  # 09:02 seen, 09:03 the step's clock
    assert await stored() == (
        "ckb",
        datetime(2026, 12, 1, 9, 2, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 2, tzinfo=UTC),
        False,
        None,
    )
    await me.deliver(Inbound(me.address, "resume-1", kind="resume"))  # not the person writing
    assert (await stored())[1:3] == (datetime(2026, 12, 1, 9, 2, tzinfo=UTC),) * 2
    assert me.replies  # the question asked again, where the person was


async def test_a_new_person_is_reachable_and_not_subscribed(person: Person, db: Database) -> None:
    """Nobody gets bulletins without asking for them, and a first message is a message written."""
    from sqlalchemy import select

    from bot.models import Contact

    await person.send("/start")
    async with db.transaction() as session:
        contact = await session.scalar(select(Contact).where(Contact.address == ME))
    assert contact is not None
    assert (contact.subscribed, contact.subscribed_at) == (False, None)
    assert (contact.unreachable, contact.unreachable_reason) == (False, None)
    assert contact.last_inbound_at is not None
    assert contact.last_inbound_at == contact.first_seen == contact.last_seen


async def test_what_the_logs_say_of_a_duplicate_and_a_failure(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator reads which message was skipped and where a step failed, on which channel."""
    boom = Flow("boom", {"ask": Step(ask_boom, explode, accepts_text=True)})
    person = await in_flow(boom, db, settings)
    with caplog.at_level(logging.INFO, logger="bot.engine"):
        await person.send("hello", message_id="m-7")
        await person.send("hello", message_id="m-7")
    messages = [record.getMessage() for record in caplog.records]
    assert "step boom/ask failed for a console message" in messages
    assert "duplicate inbound m-7 skipped" in messages
