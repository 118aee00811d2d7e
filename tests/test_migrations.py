"""Migrations: they build the database from nothing, and they agree with the models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from bot.db import Database, upgrade
from bot.models import Base


def inspect_database(url: str, look: Any) -> Any:
    """Run `look(connection)` on a plain connection to the database at `url`."""

    async def run() -> Any:
        db = Database(url)
        try:
            async with db.engine.connect() as connection:
                return await connection.run_sync(look)
        finally:
            await db.close()

    return asyncio.run(run())


def test_upgrade_creates_every_table_and_is_repeatable(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)  # a second run (every `make run`) changes nothing and does not fail
    tables = set(inspect_database(db_url, lambda c: inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_the_models_and_the_migrations_agree(db_url: str) -> None:
    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    upgrade(db_url)
    assert inspect_database(db_url, differences) == [], "run: icssi-bot db revision (README)"


def test_downgrade_to_nothing_and_up_again(db_url: str) -> None:
    upgrade(db_url)
    from alembic import command

    from bot.db import alembic_config

    command.downgrade(alembic_config(db_url), "base")
    left = set(inspect_database(db_url, lambda c: inspect(c).get_table_names()))
    assert left <= {"alembic_version"}
    upgrade(db_url)
    assert set(Base.metadata.tables) <= set(
        inspect_database(db_url, lambda c: inspect(c).get_table_names())
    )


def test_sqlite_upgrade_makes_the_folder_and_runs_in_wal_mode(tmp_path: Path) -> None:
    # About SQLite by nature (a file in a folder, its journal): the same on either test run.
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'bot.db'}"
    upgrade(url)
    mode = inspect_database(url, lambda c: c.execute(text("PRAGMA journal_mode")).scalar())
    assert str(mode).lower() == "wal"
