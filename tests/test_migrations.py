"""Migrations: they build the database from nothing, and they agree with the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from bot.db import upgrade
from bot.models import Base


def test_upgrade_creates_every_table_and_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'bot.db'}"
    upgrade(url)
    upgrade(url)  # a second run (every `make run`) changes nothing and does not fail
    sync = create_engine(f"sqlite:///{tmp_path / 'fresh' / 'bot.db'}")
    try:
        tables = set(inspect(sync).get_table_names())
    finally:
        sync.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_the_models_and_the_migrations_agree(tmp_path: Path) -> None:
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    sync = create_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        with sync.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        sync.dispose()
    assert differences == [], "run: alembic revision --autogenerate (see README)"


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    import asyncio

    from sqlalchemy import text

    from bot.db import Database

    async def journal_mode() -> str:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
        try:
            async with db.engine.connect() as conn:
                return str((await conn.execute(text("PRAGMA journal_mode"))).scalar())
        finally:
            await db.close()

    assert asyncio.run(journal_mode()).lower() == "wal"
