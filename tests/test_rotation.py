"""`db rotate-keys`: every encrypted column of every table, plain values too; refused whole
when a value cannot be decrypted with the keys given."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from bot import crypto
from bot.db import Database
from bot.engine import Engine
from bot.messages import Address
from bot.models import Base
from bot.retention import Unreadable, rotate_keys
from tests.conftest import Person, user_url
from tests.coordinator_helpers import report_left_half_way, send_full_report
from tests.helpers import choose_language
from tests.test_sign import sign

EXPECTED_COLUMNS = {
    "audit_log.detail",
    "conversations.data",
    "outbox.body",
    "referrals.note",
    "referrals.outcome_note",
    "report_messages.body",
    "reports.exact_point",
    "reports.notes",
    "reports.phone",
    "reports.photo",
    "reports.place",
    "signatures.email",
    "signatures.phone",
    "signatures.representative",
    "signatures.role",
}


def test_the_encrypted_columns_are_read_from_the_models() -> None:
    found = {f"{c.table.name}.{c.name}" for c in crypto.encrypted_columns(Base.metadata)}
    assert found == EXPECTED_COLUMNS


async def fill(engine: Engine) -> None:
    """A report, a signature, a conversation half-way (answers in conversations.data)."""
    family = Person(engine, Address("console", "family"))
    await choose_language(family, "en")
    await send_full_report(family, "en")
    signer = Person(engine, Address("console", "signer"))
    await choose_language(signer, "en")
    await sign(signer, "en")
    halfway = Person(engine, Address("console", "halfway"))
    await choose_language(halfway, "en")
    await report_left_half_way(halfway, "en", "Sharya collective centre")


async def stored(db: Database) -> dict[str, list[object]]:
    """Every encrypted column's stored values, as the database holds them."""
    values: dict[str, list[object]] = {}
    async with db.engine.connect() as connection:
        for column in crypto.encrypted_columns(Base.metadata):
            key = next(iter(column.table.primary_key.columns)).name
            rows = await connection.execute(
                text(f"SELECT {column.name} FROM {column.table.name} ORDER BY {key}")
            )
            values[f"{column.table.name}.{column.name}"] = [row[0] for row in rows]
    return values


def opens_with(key: str, value: object) -> bool:
    """Whether one key alone opens a stored value (a JSON one is {"_fernet": token})."""
    if isinstance(value, str) and value.startswith("{"):
        import json

        value = json.loads(value)
    token = value[crypto.JSON_TOKEN] if isinstance(value, dict) else value
    try:
        crypto.configure((key,))
        crypto.reveal(str(token))
    except crypto.UnknownKey:
        return False
    return True


async def test_rotation_re_encrypts_every_column_and_encrypts_plain_values(
    db: Database, engine: Engine
) -> None:
    old, new = crypto.new_key(), crypto.new_key()
    try:
        await fill(engine)  # stored before any key was set: plain
        crypto.configure((old,))
        more = Person(engine, Address("console", "later"))
        await choose_language(more, "en")
        await send_full_report(more, "en")  # encrypted with the old key
        crypto.configure((new, old))
        rewritten = await rotate_keys(db)
        assert rewritten["reports"] == 2
        assert rewritten["signatures"] == 1
        assert rewritten["conversations"] >= 3
        after = await stored(db)
        for name, values in after.items():
            for value in values:
                if value is None or value in ("{}", {}):
                    continue  # nothing to hide
                assert opens_with(new, value), f"{name} is not under the new key"
                assert not opens_with(old, value), f"{name} is still under the old key"
        assert after["conversations.data"]
        assert all("Sharya" not in str(v) for v in after["conversations.data"])
        crypto.configure((new,))  # the old key is gone: everything still reads
        halfway = Person(engine, Address("console", "halfway"))
        await halfway.send("/mydata")
        assert "Sharya collective centre" in halfway.text()
    finally:
        crypto.configure(None)


async def test_a_value_no_key_opens_stops_the_rotation_before_any_change(
    db: Database, engine: Engine
) -> None:
    lost, kept = crypto.new_key(), crypto.new_key()
    try:
        crypto.configure((lost,))
        await fill(engine)
        before = await stored(db)
        crypto.configure((crypto.new_key(), kept))  # `lost` is not among them
        with pytest.raises(Unreadable) as refused:
            await rotate_keys(db)
        assert refused.value.counts["reports.place"] == 1
        assert refused.value.counts["signatures.representative"] == 1
        assert await stored(db) == before  # nothing was changed
    finally:
        crypto.configure(None)


def test_the_command_refuses_with_exit_2(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": user_url(db_url), "DATA_ENCRYPTION_KEY": ""}
    run = [sys.executable, "-m", "bot.cli", "db"]
    subprocess.run([*run, "upgrade"], env=env, check=True, timeout=120)
    no_key = subprocess.run(
        [*run, "rotate-keys"], env=env, capture_output=True, text=True, timeout=120
    )
    assert no_key.returncode == 2
    assert "DATA_ENCRYPTION_KEY is not set" in no_key.stderr
    lost = crypto.new_key()
    crypto.configure((lost,))
    try:
        sealed = crypto.encrypt("Khanke camp")
    finally:
        crypto.configure(None)
    import asyncio

    async def insert() -> None:
        database = Database(db_url)
        try:
            async with database.transaction() as session:
                await session.execute(
                    text(
                        "INSERT INTO reports (reference, locale, status, created_at, "
                        "updated_at, governorate, people, children, elderly, disabled, "
                        "pregnant, female_headed, shelter, needs, urgent, contact_ok, place) "
                        "VALUES ('R-AAAAA', 'en', 'new', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                        "'IQG09', 3, 0, 0, 0, 0, false, 'camp', '[]', 'food', false, :place)"
                    ),
                    {"place": sealed},
                )
        finally:
            await database.close()

    asyncio.run(insert())
    env["DATA_ENCRYPTION_KEY"] = crypto.new_key()
    refused = subprocess.run(
        [*run, "rotate-keys"], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "nothing was changed" in refused.stderr
    assert "reports.place: 1" in refused.stderr
    env["DATA_ENCRYPTION_KEY"] = f"{crypto.new_key()},{lost}"
    done = subprocess.run(
        [*run, "rotate-keys"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "reports: 1" in done.stderr
