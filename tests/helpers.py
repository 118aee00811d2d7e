"""Small helpers for the tests: expected texts in a language, and state read from the database."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select

from bot.db import Database
from bot.i18n import LANGUAGE_NAMES, catalog, translate_in
from bot.models import Contact, Conversation, OutboxMessage, ProcessedInbound
from tests.conftest import Person

LANGS = ("ar", "ckb", "en")


def t(locale: str, message: str) -> str:
    """`message` as the bot says it in `locale`."""
    return translate_in(locale, message)


def tc(locale: str, context: str, message: str) -> str:
    """`message` in a msgctxt `context`, as the bot says it in `locale`."""
    return str(catalog(locale).pgettext(context, message))


def menu_labels(locale: str, coordinator: bool = False) -> list[str]:
    """The main menu's buttons in `locale`, in order (a coordinator's with their tools)."""
    tools = (
        (
            "Reports to triage",
            "Signatures to verify",
            "Bulletin desk",
            "Export the reports",
            "Coordinators' console",
        )
        if coordinator
        else ()
    )
    return [
        t(locale, label)
        for label in (
            "About the Initiative",
            "The declaration",
            "Bulletin",
            "Report a displaced family",
            "Sign the declaration",
            "Who has signed?",
            "My reports",
            "My data",
            *tools,
            "Language",
            "Help",
        )
    ]


async def choose_language(person: Person, locale: str) -> None:
    """First contact: /start, pick the language, land on the main menu."""
    await person.send("/start")
    await person.tap(LANGUAGE_NAMES[locale])
    coordinator = person.engine.settings.is_coordinator(person.address)
    assert person.labels() == menu_labels(locale, coordinator)


async def state(db: Database, address: str) -> dict[str, Any]:
    """The stored contact and conversation of an address."""
    async with db.transaction() as session:
        contact = await session.scalar(select(Contact).where(Contact.address == address))
        assert contact is not None
        conversation = await session.get(Conversation, contact.id)
        assert conversation is not None
        return {
            "locale": contact.locale,
            "flow": conversation.flow,
            "step": conversation.step,
            "data": conversation.data,
            "history": conversation.history,
        }


async def count(db: Database, model: type[OutboxMessage] | type[ProcessedInbound]) -> int:
    """How many rows a table holds."""
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def until(
    check: Callable[[], Awaitable[bool] | bool],
    what: str,
    every: float = 0.05,
    wait: float = 60.0,
) -> None:
    """Wait until `check()` holds, polling every `every` s; fail naming `what` after `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {wait} s: {what}")
        await asyncio.sleep(every)
