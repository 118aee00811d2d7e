"""The conversation store writes a new contact and a conversation as the models would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select

from bot import store
from bot.db import Database
from bot.messages import Address, Inbound
from bot.models import Contact, Conversation

MOMENT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def columns(model: Any) -> dict[str, Any]:
    """A model's columns by key."""
    return {column.key: column for column in cast(Table, model.__table__).columns}


def test_a_new_contact_gives_every_column_the_models_default() -> None:
    made = store.new_contact("telegram:7", "telegram", MOMENT, wrote=True)
    model = columns(Contact)
    assert set(made) == set(model) - {"id"}  # a column added to Contact is added there
    given = {"address": "telegram:7", "channel": "telegram", "last_inbound_at": MOMENT}
    for key, column in model.items():
        if key == "id" or key in given:
            continue
        default = column.default
        if default is None:
            assert column.nullable, key
            expected = None
        elif default.is_callable:  # utcnow: the moment of the message
            expected = MOMENT
        else:
            expected = default.arg
        assert made[key] == expected, key
    assert {key: made[key] for key in given} == given
    # A restart's resume is not the person writing: the window stays closed.
    resumed = store.new_contact("telegram:7", "telegram", MOMENT, wrote=False)
    assert resumed["last_inbound_at"] is None


async def test_the_store_and_the_orm_make_the_same_contact(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Contact(address="telegram:8", channel="telegram"))
    async with db.transaction() as session:
        found = await store.ConversationStore().arrive(
            session, Inbound(Address("telegram", "9"), "m-1", kind="text", text="hi"), MOMENT
        )
    assert found is not None
    values, conversation, role = found
    assert role is None
    assert conversation is None
    async with db.transaction() as session:
        by_orm = await session.scalar(select(Contact).where(Contact.address == "telegram:8"))
        by_store = await session.scalar(select(Contact).where(Contact.address == "telegram:9"))
    assert by_orm is not None
    assert by_store is not None
    times = {"id", "address", "first_seen", "last_seen", "last_inbound_at"}
    for key in set(columns(Contact)) - times:
        assert getattr(by_store, key) == getattr(by_orm, key), key
        assert values[key] == getattr(by_orm, key), key  # what the steps are given, as stored


def test_a_new_conversation_writes_every_column() -> None:
    written = {"contact_id", *store.STATE, "updated_at"}
    assert written == set(columns(Conversation))


async def test_the_store_finds_the_role_with_the_contact(db: Database) -> None:
    """A role given before the person first wrote, and one given after: both found."""
    from bot import roles

    async with db.transaction() as session:
        await roles.set_role(session, "telegram:21", "editor", "test")
    for n in range(2):
        async with db.transaction() as session:
            found = await store.ConversationStore().arrive(
                session,
                Inbound(Address("telegram", "21"), f"m-{n}", kind="text", text="hi"),
                MOMENT,
            )
        assert found is not None
        assert found.role == "editor"
    async with db.transaction() as session:
        await roles.set_role(session, "telegram:21", "viewer", "test")
    async with db.transaction() as session:
        found = await store.ConversationStore().arrive(
            session, Inbound(Address("telegram", "21"), "m-3", kind="text", text="hi"), MOMENT
        )
    assert found is not None
    assert found.role == "viewer"
