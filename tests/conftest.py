"""Shared fixtures: a real database migrated by Alembic, the real engine, a person who chats.

The database is a SQLite file, or, with ICSSI_TEST_DATABASE_URL set (`make test-postgres`), a
database of its own on that PostgreSQL server for each test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from bot.config import Settings
from bot.db import Database, upgrade
from bot.engine import Engine
from bot.messages import Address, Button, Inbound, Outbound
from bot.models import Base
from bot.text import parse_command
from handlers import build_registry

T = TypeVar("T")

# A PostgreSQL server where the tests may create and drop databases, e.g.
# postgresql://postgres@/postgres?host=/tmp/icssi-pg.XXXX (made by .ci/postgres.sh).
POSTGRES_URL = os.environ.get("ICSSI_TEST_DATABASE_URL", "").strip()
ON_POSTGRES = bool(POSTGRES_URL)


def user_url(url: str) -> str:
    """`url` as a person writes it in DATABASE_URL (without the async driver)."""
    return url.replace("+aiosqlite", "").replace("+asyncpg", "")


class PostgresServer:
    """Creates, empties and drops the tests' databases, from a loop of its own in a thread.

    Its own loop, because fixtures run both inside and outside the tests' event loops. A
    migrated database is made from the template once and, after its test, emptied (its rows
    deleted, its sequences restarted) for the next test: the same as a new copy of the
    template, without the half second CREATE DATABASE takes to copy the system catalogs.
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise pytest.UsageError(f"ICSSI_TEST_DATABASE_URL: expected postgresql://, got {url}")
        self.url: URL = parsed.set(drivername="postgresql+asyncpg")
        self.prefix = f"icssi_test_{os.getpid()}"
        self.numbers = itertools.count(1)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.connection: asyncpg.Connection = self.run(asyncpg.connect(self.dsn(None)))
        self.spare: list[str] = []  # migrated databases, emptied
        self.keepers: dict[str, asyncpg.Connection] = {}  # a connection to each, for emptying

    def dsn(self, database: str | None) -> str:
        """asyncpg's URL of a database on this server (None: the one of the given URL)."""
        url = self.url.set(drivername="postgresql")
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    def url_of(self, database: str) -> str:
        """The bot's URL of a database on this server."""
        return self.url.set(database=database).render_as_string(hide_password=False)

    def create(self, *, template: str = "template0") -> str:
        """A new database, empty or a copy of `template`; its name."""
        name = f"{self.prefix}_{next(self.numbers)}"
        self.run(self.connection.execute(f"CREATE DATABASE {name} TEMPLATE {template}"))
        return name

    def drop(self, name: str) -> None:
        """Drop a database, closing whatever connections a test left open to it."""
        self.run(self.connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def take_migrated(self, template: str) -> str:
        """A migrated database with no rows: an emptied one, or a new copy of `template`."""
        if self.spare:
            return self.spare.pop()
        return self.create(template=template)

    def give_back(self, name: str) -> None:
        """Empty a migrated database after its test, for the next one."""
        try:
            self.run(self._empty(name))
        except Exception:  # whatever the test left behind, a dropped database is clean
            keeper = self.keepers.pop(name, None)
            if keeper is not None:
                keeper.terminate()
            self.drop(name)
        else:
            self.spare.append(name)

    async def _empty(self, name: str) -> None:
        """Close the test's connections, delete every row, restart every sequence."""
        connection = self.keepers.get(name)
        if connection is None:
            connection = self.keepers[name] = await asyncpg.connect(self.dsn(name))
        await self.connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> $2",
            name,
            connection.get_server_pid(),
        )
        async with connection.transaction():
            for table in reversed(Base.metadata.sorted_tables):  # children before parents
                await connection.execute(f'DELETE FROM "{table.name}"')
            sequences = await connection.fetch(
                "SELECT schemaname, sequencename FROM pg_sequences"
                " WHERE schemaname = current_schema()"
            )
            for row in sequences:
                await connection.execute(
                    f'ALTER SEQUENCE "{row["schemaname"]}"."{row["sequencename"]}" RESTART'
                )

    def close(self) -> None:
        """Drop the spare databases, close the connections and stop the thread."""
        for name, connection in self.keepers.items():
            self.run(connection.close())
            self.drop(name)
        self.run(self.connection.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def pytest_report_header() -> str:
    """Say which database the tests run on."""
    if ON_POSTGRES:
        return f"database: PostgreSQL ({POSTGRES_URL})"
    return "database: SQLite (ICSSI_TEST_DATABASE_URL or `make test-postgres`: PostgreSQL)"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    """The PostgreSQL server of ICSSI_TEST_DATABASE_URL, or None when testing on SQLite."""
    if not ON_POSTGRES:
        yield None
        return
    server = PostgresServer(POSTGRES_URL)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def migrated_template(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None
) -> Iterator[str]:
    """A database made by the real migrations once (a SQLite file, or a PostgreSQL database
    used as a template); each test that wants a migrated database gets a copy of it."""
    if postgres is None:
        path = tmp_path_factory.mktemp("template") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        yield str(path)
        return
    name = postgres.create()
    try:
        upgrade(postgres.url_of(name))  # closes its connections: a template must have none
        yield name
    finally:
        postgres.drop(name)


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None
) -> Iterator[str]:
    """A database for one test: migrated when the test uses `db`, otherwise empty (not yet
    created, on SQLite), as a fresh installation has before `icssi-bot db upgrade`."""
    if postgres is None:
        yield f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        return
    if "db" not in request.fixturenames:
        name = postgres.create()
        try:
            yield postgres.url_of(name)
        finally:
            postgres.drop(name)
        return
    name = postgres.take_migrated(request.getfixturevalue("migrated_template"))
    yield postgres.url_of(name)
    postgres.give_back(name)


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings for tests: the test database, one Telegram and one WhatsApp coordinator."""
    return Settings(
        database_url=db_url,
        coordinators=frozenset(
            {Address("telegram", "1000"), Address("whatsapp", "+9647700000001")}
        ),
        # Tests go through whole flows in seconds; the limit's own tests set it back.
        inbound_per_minute=10**9,
    )


@pytest.fixture
async def db(settings: Settings, migrated_template: str) -> AsyncIterator[Database]:
    """The migrated database (the real migrations, not create_all), fresh for each test."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        shutil.copyfile(migrated_template, url.database or "")
    # On PostgreSQL, db_url made the database from the template already.
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
