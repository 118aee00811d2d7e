"""Conversations through the engine, in each language: what the user sends, what the bot says."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.engine import Engine
from bot.i18n import LANGUAGE_NAMES, RLM, long_text, use_locale
from bot.messages import Address, Inbound
from bot.models import Conversation
from handlers.declaration import PAGE_LIMIT, pages
from handlers.menu import about_text
from tests.conftest import Person
from tests.helpers import LANGS, choose_language, menu_labels, state, t


async def test_first_contact_asks_the_language_in_all_three(person: Person) -> None:
    await person.send("hello")
    assert person.labels() == ["العربية", "کوردی (سۆرانی)", "English"]
    for locale in LANGS:
        assert t(locale, "Please choose your language.") in person.text()


async def test_telegram_hint_puts_sorani_first(engine: Engine) -> None:
    kurd = Person(engine, Address("telegram", "77"), hint="ckb")
    await kurd.send("/start")
    assert kurd.labels() == ["کوردی (سۆرانی)", "العربية", "English"]


@pytest.mark.parametrize("locale", LANGS)
async def test_choosing_a_language_confirms_it_and_shows_the_menu(
    person: Person, db: Database, locale: str
) -> None:
    await person.send("/start")
    await person.tap(LANGUAGE_NAMES[locale])
    assert t(locale, "Thank you. I will write to you in English.") in person.text()
    assert person.labels() == menu_labels(locale)
    assert (await state(db, "console:tester"))["locale"] == locale


@pytest.mark.parametrize("locale", ["ar", "ckb"])
async def test_right_to_left_messages_start_right_to_left(person: Person, locale: str) -> None:
    await choose_language(person, locale)
    for message in person.replies:
        first = message.text[0]
        assert first == RLM or "\u0600" <= first <= "\u06ff", message.text[:20]


@pytest.mark.parametrize("locale", LANGS)
async def test_about_the_initiative(person: Person, locale: str) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "About the Initiative"))
    assert t(locale, "About the Initiative") in person.text()
    with use_locale(locale):
        expected = about_text()
    assert person.replies[0].text.lstrip(RLM) == expected
    assert person.labels() == menu_labels(locale)  # and the menu again


@pytest.mark.parametrize("locale", LANGS)
async def test_the_declaration_part_by_part(person: Person, locale: str) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "The declaration"))
    seen = []
    parts = pages(locale)
    for number in range(len(parts)):
        message = person.replies[-1]
        assert len(message.text) <= 4096
        assert parts[number] in message.text
        seen.append(parts[number])
        if number < len(parts) - 1:
            await person.tap(t(locale, "Next part"))
    assert t(locale, "Sign the declaration") in person.labels()
    whole = long_text("declaration", locale)
    assert "\n\n".join(seen) == "\n\n".join(p.strip() for p in whole.split("\n\n") if p.strip())
    assert all(len(part) <= PAGE_LIMIT for part in parts)


@pytest.mark.parametrize("digits", ["1", "١", "۱"])
async def test_typed_option_numbers_in_any_script(person: Person, digits: str) -> None:
    await choose_language(person, "ar")
    await person.send({"1": "2", "١": "٢", "۱": "۲"}[digits])  # The declaration
    assert pages("ar")[0] in person.text()
    await person.send(digits)  # Next part
    assert pages("ar")[1] in person.text()


@pytest.mark.parametrize("locale", LANGS)
async def test_typed_labels_work_like_buttons(person: Person, locale: str) -> None:
    await choose_language(person, locale)
    await person.send(t(locale, "The declaration").upper() + " ")
    assert pages(locale)[0] in person.text()


@pytest.mark.parametrize(
    ("locale", "word"),
    [("ar", "القائمة"), ("ar", "قائمه"), ("ckb", "مێنو"), ("ckb", "مینو"), ("en", "Menu")],
)
async def test_menu_word_from_inside_a_flow(person: Person, locale: str, word: str) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "The declaration"))
    await person.send(word)
    assert person.labels() == menu_labels(locale)


@pytest.mark.parametrize(("locale", "word"), [("ar", "رجوع"), ("ckb", "گەڕانەوە"), ("en", "back")])
async def test_back_returns_to_the_previous_part(
    person: Person, db: Database, locale: str, word: str
) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "The declaration"))
    await person.tap(t(locale, "Next part"))
    await person.send(word)
    assert pages(locale)[0] in person.text()
    assert (await state(db, "console:tester"))["step"] == "read"
    await person.send(word)  # back from the first question: the menu
    assert person.labels() == menu_labels(locale)


@pytest.mark.parametrize(
    ("locale", "word"), [("ar", "مساعدة"), ("ckb", "یارمەتی"), ("en", "help")]
)
async def test_help_keeps_the_place(person: Person, locale: str, word: str) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "The declaration"))
    await person.send(word)
    assert t(locale, "Help") in person.text()
    assert pages(locale)[0] in person.replies[-1].text


@pytest.mark.parametrize(
    ("locale", "word"), [("ar", "إلغاء"), ("ckb", "هەڵوەشاندنەوە"), ("en", "cancel")]
)
async def test_cancel_leaves_for_the_menu(person: Person, locale: str, word: str) -> None:
    await choose_language(person, locale)
    await person.tap(t(locale, "The declaration"))
    await person.send(word)
    assert t(locale, "Cancelled. Nothing was saved.") in person.text()
    assert person.labels() == menu_labels(locale)


async def test_language_switch_in_the_middle_comes_back_to_the_same_part(
    person: Person, db: Database
) -> None:
    await choose_language(person, "ar")
    await person.tap(t("ar", "The declaration"))
    await person.tap(t("ar", "Next part"))
    await person.send("اللغة")
    assert person.labels()[:3] == ["العربية", "کوردی (سۆرانی)", "English"]
    await person.tap("کوردی (سۆرانی)")
    assert t("ckb", "Thank you. I will write to you in English.") in person.text()
    assert pages("ckb")[1] in person.replies[-1].text
    assert (await state(db, "console:tester"))["locale"] == "ckb"


async def test_back_from_the_language_picker_returns_unchanged(person: Person) -> None:
    await choose_language(person, "en")
    await person.tap("The declaration")
    await person.send("/language")
    await person.tap("Back")
    assert pages("en")[0] in person.text()


@pytest.mark.parametrize(
    ("link", "flow", "says"),
    [
        ("report", "report", "Before we start, please read this."),
        ("sign", "sign", "Please read the declaration before you sign it"),
        ("signed", "signed", "organizations have signed the declaration"),
        ("myreports", "myreports", "You have not sent a report yet."),
    ],
)
async def test_deep_link_waits_for_the_language(
    person: Person, db: Database, link: str, flow: str, says: str
) -> None:
    await person.send(f"/start {link}")
    assert person.labels() == ["العربية", "کوردی (سۆرانی)", "English"]
    await person.tap("English")
    assert (await state(db, "console:tester"))["flow"] == flow
    assert says in person.text()


async def test_start_pressed_again_asks_again_without_a_reproach(
    person: Person, db: Database
) -> None:
    """People press Start more than once: the question again, not "Please choose one of the
    languages below", and the deep link of the first Start still waits."""
    await person.send("/start sign")
    first = person.text()
    await person.send("/start")
    assert person.text() == first
    assert t("ar", "Please choose one of the languages below.") not in person.text()
    await person.send("/start")
    await person.tap("English")
    assert (await state(db, "console:tester"))["flow"] == "sign"


async def test_deep_link_for_a_known_person(person: Person, db: Database) -> None:
    await choose_language(person, "en")
    await person.send("/start declaration")
    assert pages("en")[0] in person.text()


async def test_an_expired_button_says_so_and_shows_where_we_are(person: Person) -> None:
    await choose_language(person, "en")
    await person.tap("The declaration")
    await person.press("menu:about")  # a button of the menu shown before
    assert "This menu has expired" in person.text()
    assert pages("en")[0] in person.replies[-1].text


async def test_a_forged_payload_changes_nothing(person: Person, db: Database) -> None:
    await choose_language(person, "ar")
    before = await state(db, "console:tester")
    await person.press("lang:xx")
    assert t("ar", "This menu has expired. Here is where we are now.") in person.text()
    assert await state(db, "console:tester") == before


async def test_an_unknown_command(person: Person) -> None:
    await choose_language(person, "en")
    await person.send("/whatever")
    assert "I do not know that command" in person.text()
    assert person.labels() == menu_labels("en")


async def test_a_group_gets_only_an_invitation(engine: Engine, db: Database) -> None:
    inbound = Inbound(Address("telegram", "-100200"), "g1", text="hello", is_private=False)
    replies = await engine.handle(inbound)
    assert len(replies) == 1
    assert not replies[0].buttons
    assert (
        t(
            "ar",
            "Hello! To keep what you tell me private, I only talk in private chats. "
            "Please open a private chat with me.",
        )
        in replies[0].text
    )


async def test_a_group_message_leaves_no_conversation_without_a_step(
    engine: Engine, db: Database
) -> None:
    # Found by tests/test_fuzz.py: the first message from a group stored a conversation at the
    # flow "" and step "", a state no flow has.
    group = Address("telegram", "-100201")
    await engine.handle(Inbound(group, "g2", text="hello", is_private=False))
    async with db.transaction() as session:
        assert (await session.scalars(select(Conversation))).all() == []
    person = Person(engine, group)
    await person.send("/start")  # should the chat become private, the language comes first
    assert person.labels() == list(LANGUAGE_NAMES.values())


@pytest.mark.parametrize(
    ("typed", "locale"), [("عربي", "ar"), ("كوردي", "ckb"), ("Sorani", "ckb"), ("english", "en")]
)
async def test_the_language_can_be_typed_by_name(
    person: Person, db: Database, typed: str, locale: str
) -> None:
    await person.send("/start")
    await person.send(typed)
    assert (await state(db, "console:tester"))["locale"] == locale
    assert person.labels() == menu_labels(locale)
