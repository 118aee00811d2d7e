"""Shared fixtures: a real SQLite file migrated by Alembic, the real engine, a person who chats."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.db import Database, upgrade
from bot.engine import Engine
from bot.messages import Address, Button, Inbound, Outbound
from bot.text import parse_command
from handlers import build_registry


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings for tests: the test database, one Telegram and one WhatsApp coordinator."""
    return Settings(
        database_url=db_url,
        coordinators=frozenset(
            {Address("telegram", "1000"), Address("whatsapp", "+9647700000001")}
        ),
    )


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file made by the real migrations once; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def db(settings: Settings, migrated_template: Path) -> AsyncIterator[Database]:
    """The migrated database (the real migrations, not create_all), fresh for each test."""
    target = Path(make_url(settings.database_url).database or "")
    shutil.copyfile(migrated_template, target)
    database = Database(settings.database_url)
    yield database
    await database.close()


@pytest.fixture
def engine(db: Database, settings: Settings) -> Engine:
    """The real engine with every flow."""
    return Engine(db, settings, build_registry())


class Person:
    """Someone chatting with the bot through the engine, as a channel adapter would pass it on."""

    def __init__(self, engine: Engine, address: Address, hint: str | None = None) -> None:
        self.engine = engine
        self.address = address
        self.hint = hint
        self.replies: list[Outbound] = []
        self.sent: list[Outbound] = []

    async def send(self, text: str, *, message_id: str | None = None) -> list[Outbound]:
        """Type a line (a command when it starts with '/')."""
        command = parse_command(text)
        inbound = Inbound(
            self.address,
            message_id or uuid.uuid4().hex,
            kind="command" if command else "text",
            text=text,
            command=command[0] if command else None,
            args=command[1] if command else (),
            language_hint=self.hint,
        )
        return await self.deliver(inbound)

    async def press(self, payload: str) -> list[Outbound]:
        """Press a button by its payload."""
        inbound = Inbound(self.address, uuid.uuid4().hex, kind="button", payload=payload)
        return await self.deliver(inbound)

    async def tap(self, label: str) -> list[Outbound]:
        """Press the button labelled `label` in the last message that had buttons."""
        for button in self.options():
            if button.label == label:
                return await self.press(button.payload)
        raise AssertionError(f"no button {label!r} among {self.labels()}")

    async def deliver(self, inbound: Inbound) -> list[Outbound]:
        """Hand an Inbound to the engine and keep the replies."""
        self.sent = await self.engine.handle(inbound)  # to anyone (coordinators too)
        self.replies = [m for m in self.sent if m.address == self.address]
        return self.sent

    def text(self) -> str:
        """Everything the last replies said, titles included."""
        return "\n".join(f"{m.title or ''}\n{m.text}" for m in self.replies)

    def options(self) -> list[Button]:
        """The buttons of the last reply that had buttons."""
        for message in reversed(self.replies):
            if message.buttons:
                return list(message.options())
        return []

    def labels(self) -> list[str]:
        """The labels of those buttons."""
        return [b.label for b in self.options()]


@pytest.fixture
def person(engine: Engine) -> Person:
    """A person on the console channel who has not written before."""
    return Person(engine, Address("console", "tester"))
