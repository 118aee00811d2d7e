"""Where a person and their conversation are kept: the engine's reads and writes of each message.

The hot path: each message of each person marks its id handled, finds the contact and the
conversation, then writes them and queues the replies. Through a Session, with ORM objects,
that cost about 3.5 ms of CPU a message; these statements, compiled once for the database and
run straight on the DB-API connection of the message's transaction (bot/dbapi.py), cost a
fraction of that. The steps still get the Session, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import BindParameter, Connection, Table, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import outbox
from bot.dbapi import Prepared
from bot.messages import HOLDING_CHANNELS, Inbound
from bot.models import Contact, Conversation, Person, ProcessedInbound

T = TypeVar("T")

_CONVERSATIONS = cast(Table, Conversation.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_PEOPLE = cast(Table, Person.__table__)
_PROCESSED = cast(Table, ProcessedInbound.__table__)
STATE = ("flow", "step", "data", "history", "offered")
CONTACT_COLUMNS = tuple(column.key for column in _CONTACTS.columns)


def new_contact(address: str, channel: str, now: datetime, wrote: bool) -> dict[str, Any]:
    """Every column of a contact met for the first time (but its id), as the model would make
    it: the object is given to the steps as loaded (tests/test_store.py checks them against
    the model's defaults, so a column added to Contact cannot be forgotten here)."""
    return {
        "address": address,
        "channel": channel,
        "locale": None,
        "first_seen": now,
        "last_seen": now,
        "last_inbound_at": now if wrote else None,
        "unreachable": False,
        "unreachable_reason": None,
        "declaration_read": None,
        "subscribed": False,
        "subscribed_at": None,
        "bulletin_places": None,
    }


class Arrived(NamedTuple):
    """What a message finds: its contact's columns, its conversation, and the person's role."""

    contact: dict[str, Any]
    saved: Stored | None
    role: str | None


class Stored(NamedTuple):
    """A conversation as stored."""

    flow: str
    step: str
    data: dict[str, Any]
    history: list[Any]
    offered: list[Any]


def _bound(table: Table, keys: Iterable[str]) -> dict[str, BindParameter[Any]]:
    """A parameter named after each column (b_<name>), of the column's type."""
    return {key: bindparam(f"b_{key}", type_=table.c[key].type) for key in keys}


def _prefixed(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values by column, named as _bound's parameters."""
    return {f"b_{key}": value for key, value in values.items()}


class _Statements:
    """The store's statements, compiled for one database."""

    def __init__(self, dialect: Dialect) -> None:
        upsert = postgresql_insert if dialect.name == "postgresql" else sqlite_insert
        now = bindparam("now", type_=_CONTACTS.c.last_seen.type)
        # One statement marks a message handled: a second delivery inserts nothing. On
        # PostgreSQL, a delivery being handled by another process at this moment waits for it,
        # then inserts nothing.
        self.mark = Prepared(
            upsert(_PROCESSED)
            .values(_bound(_PROCESSED, ("channel", "message_id", "processed_at")))
            .on_conflict_do_nothing(index_elements=["channel", "message_id"]),
            dialect,
        )
        # The contact with the person's role (bot.roles), if they have one: one read for both.
        self.contact = Prepared(
            select(*_CONTACTS.columns, _PEOPLE.c.role)
            .select_from(_CONTACTS.outerjoin(_PEOPLE, _PEOPLE.c.address == _CONTACTS.c.address))
            .where(_CONTACTS.c.address == bindparam("to"))
            .with_for_update(of=_CONTACTS),
            dialect,
        )
        self.role = Prepared(
            select(_PEOPLE.c.role).where(_PEOPLE.c.address == bindparam("to")), dialect
        )
        self.new_contact = Prepared(
            insert(_CONTACTS)
            .values(_bound(_CONTACTS, (key for key in CONTACT_COLUMNS if key != "id")))
            .returning(_CONTACTS.c.id),
            dialect,
        )
        # A person who writes to us can be reached again, whatever failed before.
        self.seen = Prepared(
            update(_CONTACTS)
            .where(_CONTACTS.c.id == bindparam("who"))
            .values(
                last_seen=now, last_inbound_at=now, unreachable=False, unreachable_reason=None
            ),
            dialect,
        )
        # Messages held until the person wrote (WhatsApp's 24-hour window) may go now.
        self.release_held = Prepared(outbox.release_held(), dialect)
        self.conversation = Prepared(
            select(*(_CONVERSATIONS.c[key] for key in STATE))
            .where(_CONVERSATIONS.c.contact_id == bindparam("who"))
            .with_for_update(),
            dialect,
        )
        self.new_conversation = Prepared(
            insert(_CONVERSATIONS).values(
                _bound(_CONVERSATIONS, ("contact_id", *STATE, "updated_at"))
            ),
            dialect,
        )
        self.move_conversation = Prepared(
            update(_CONVERSATIONS)
            .where(_CONVERSATIONS.c.contact_id == bindparam("who"))
            .values(_bound(_CONVERSATIONS, (*STATE, "updated_at"))),
            dialect,
        )
        self.queue = Prepared(outbox.queue_statement(), dialect)


_COMPILED: dict[str, _Statements] = {}


def _statements(dialect: Dialect) -> _Statements:
    """The store's statements for this database, compiled at the first message."""
    found = _COMPILED.get(dialect.name)
    if found is None:
        found = _COMPILED[dialect.name] = _Statements(dialect)
    return found


class ConversationStore:
    """Reads and writes a message's contact, conversation and replies, in its transaction."""

    async def arrive(
        self, session: AsyncSession, inbound: Inbound, now: datetime
    ) -> Arrived | None:
        """Mark the message handled, and find (or make) its contact (its columns), the
        person's role and the conversation, both locked for this transaction on PostgreSQL;
        None if the message was handled before. What leave() compares with: a step is to
        change a deep copy of it."""
        return await _raw(session, _arrive, inbound, now)

    async def leave(
        self,
        session: AsyncSession,
        contact_id: int,
        saved: Stored | None,
        state: Stored,
        rows: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        """Write where the conversation now stands, if it moved, and queue the outbox rows
        (bot.outbox.rows)."""
        # Nothing to write for a group's message (no step), nor when nothing moved.
        unmoved = tuple(saved) == tuple(state) if saved else not state.flow
        moved = {} if unmoved else state._asdict()
        if moved or rows:
            await _raw(session, _leave, contact_id, saved is None, moved, rows, now)


async def _raw(session: AsyncSession, work: Callable[..., T], *args: Any) -> T:
    """Run `work(connection, statements, *args)` in the session's transaction, in one go."""
    connection = await session.connection()
    errors = connection.dialect.loaded_dbapi
    try:
        return await connection.run_sync(work, _statements(connection.dialect), *args)
    except errors.IntegrityError as exc:
        # As SQLAlchemy would raise it: another process made the same contact first, and
        # Engine.handle tries again.
        raise IntegrityError(None, None, exc) from exc


def _arrive(
    connection: Connection, statements: _Statements, inbound: Inbound, now: datetime
) -> Arrived | None:
    """ConversationStore.arrive's statements, on the DB-API connection of the transaction."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor: Any = dbapi.cursor()  # the driver's, through SQLAlchemy's adapter
    hot = statements
    try:
        wrote = inbound.kind != "resume"  # a restart's resume is not the person writing
        if wrote:
            cursor.execute(
                hot.mark.sql,
                hot.mark.bind(
                    _prefixed(
                        {
                            "channel": inbound.address.channel,
                            "message_id": inbound.message_id,
                            "processed_at": now,
                        }
                    )
                ),
            )
            if cursor.rowcount == 0:
                return None
        address = str(inbound.address)
        cursor.execute(hot.contact.sql, hot.contact.bind({"to": address}))
        row = cursor.fetchone()
        if row is None:
            values = new_contact(address, inbound.address.channel, now, wrote)
            cursor.execute(hot.new_contact.sql, hot.new_contact.bind(_prefixed(values)))
            values["id"] = cursor.fetchone()[0]  # RETURNING id
            # Someone given a role before they first wrote.
            cursor.execute(hot.role.sql, hot.role.bind({"to": address}))
            found_role = cursor.fetchone()
            role = None if found_role is None else found_role[0]
        else:
            *columns, role = hot.contact.read(row)
            values = dict(zip(CONTACT_COLUMNS, columns, strict=True))
            if wrote:
                cursor.execute(hot.seen.sql, hot.seen.bind({"who": values["id"], "now": now}))
                values.update(
                    last_seen=now, last_inbound_at=now, unreachable=False, unreachable_reason=None
                )
                if inbound.address.channel in HOLDING_CHANNELS:
                    cursor.execute(hot.release_held.sql, hot.release_held.bind({"to": address}))
        cursor.execute(hot.conversation.sql, hot.conversation.bind({"who": values["id"]}))
        found = cursor.fetchone()
        return Arrived(
            values, None if found is None else Stored(*hot.conversation.read(found)), role
        )
    finally:
        cursor.close()


def _leave(
    connection: Connection,
    statements: _Statements,
    contact_id: int,
    new: bool,
    state: dict[str, Any],
    rows: list[dict[str, Any]],
    now: datetime,
) -> None:
    """ConversationStore.leave's statements, on the DB-API connection of the transaction."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor: Any = dbapi.cursor()  # the driver's, through SQLAlchemy's adapter
    try:
        if state:
            moved = _prefixed({**state, "updated_at": now})
            if new:
                statement = statements.new_conversation
                cursor.execute(
                    statement.sql, statement.bind({"b_contact_id": contact_id, **moved})
                )
            else:
                statement = statements.move_conversation
                cursor.execute(statement.sql, statement.bind({"who": contact_id, **moved}))
        if rows:
            queue = statements.queue
            cursor.executemany(queue.sql, [queue.bind(_prefixed(row)) for row in rows])
    finally:
        cursor.close()
