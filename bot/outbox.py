"""The one owner of outgoing rows: enqueue, priorities, outcomes, WhatsApp's 24-hour window,
holds and opt-outs.

Every message the bot sends is first a row of the `outbox` table, written here (a reply, a
notice, a bulletin's delivery) in the transaction of what caused it; the sender (bot/sender.py)
reads the due rows, hands each to its channel's transport and gives back what came of it (a
typed outcome of bot/outcomes.py), which is written here too. What a platform reports later (a
status callback) is a StatusEvent that StatusRecorder applies. Transports never write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Delete,
    Insert,
    Table,
    Update,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.db import Database
from bot.flows import coordinators
from bot.i18n import N_, translate_in
from bot.messages import HOLDING_CHANNELS, Outbound, Priority
from bot.models import AuditEntry, Contact, OutboxMessage, ProcessedInbound, quotes_content
from bot.outcomes import StatusEvent

logger = logging.getLogger(__name__)

PRIORITIES: dict[Priority, int] = {"reply": 0, "notice": 1, "broadcast": 2}
# Outcomes after which a row is never sent: its body is blanked then.
GONE = frozenset({"sent", "failed", "unreachable", "cancelled"})
# WhatsApp allows free text only this long after the person last wrote; then templates only.
WINDOW = timedelta(hours=24)
# A platform's cap of people a day (WhatsApp's tier) holds the broadcasts this long.
DAILY_CAP_PAUSE = timedelta(hours=1)
STATUS_EVENTS = "whatsapp-status"  # ProcessedInbound's channel for the callbacks applied
OPTED_OUT = "opted out"

DAILY_CAP_NOTICE = N_(
    "WhatsApp's limit of people a day has been reached (Twilio error 63018). WhatsApp "
    "bulletins wait an hour and then go on; the limit grows as the number is used well."
)

_OUTBOX = cast(Table, OutboxMessage.__table__)
_CONTACTS = cast(Table, Contact.__table__)


class Wakeup:
    """Who hears that rows wait to be sent: the sender, where one runs in this process.

    The engine and the status recorder call it; the runtime connects the sender once it is
    built, so neither knows the other.
    """

    def __init__(self) -> None:
        self.listeners: list[Callable[..., None]] = []

    def connect(self, listener: Callable[..., None]) -> None:
        """Call `listener(channel, urgent=...)` at each wake-up."""
        self.listeners.append(listener)

    def __call__(self, channel: str, *, urgent: bool = False) -> None:
        """Rows wait on `channel`; `urgent` (a reply) goes ahead of a broadcast batch."""
        for listener in self.listeners:
            listener(channel, urgent=urgent)


def next_turn(address: Any) -> Any:
    """The turn of a message queued now for `address`: one past that of its messages still
    waiting (pending, or held for WhatsApp's window), 0 when none wait (see OutboxMessage.turn).

    Each message of a person comes after their earlier ones, and a person with nothing waiting
    comes ahead of everyone who has: one person's backlog cannot hold up another's reply.
    """
    waiting = _OUTBOX.alias("waiting")
    return (
        select(func.coalesce(func.max(waiting.c.turn) + 1, 0))
        .where(
            waiting.c.address == address,
            or_(waiting.c.status == "pending", waiting.c.status == "held"),  # no IN: compiled once
        )
        .scalar_subquery()
    )


QUEUED_COLUMNS = (
    "channel",
    "address",
    "contact_id",
    "subject_id",
    "priority",
    "body",
    "status",
    "attempts",
    "created_at",
)


def rows(
    messages: Sequence[Outbound], contact_id: int | None, now: datetime
) -> list[dict[str, Any]]:
    """The outbox rows of messages, by column (QUEUED_COLUMNS)."""
    return [
        {
            "channel": message.address.channel,
            "address": str(message.address),
            "contact_id": contact_id,
            "subject_id": message.about,
            "priority": PRIORITIES[message.priority],
            "body": message.to_json(),
            "status": "pending",
            "attempts": 0,
            "created_at": now,
        }
        for message in messages
    ]


def queue_statement() -> Insert:
    """INSERT one row (parameters b_<column> of QUEUED_COLUMNS), with its turn: for executemany."""
    bound = {key: bindparam(f"b_{key}", type_=_OUTBOX.c[key].type) for key in QUEUED_COLUMNS}
    return insert(_OUTBOX).values(
        **bound, turn=next_turn(bindparam("b_address", type_=_OUTBOX.c.address.type))
    )


async def enqueue(session: AsyncSession, messages: list[Outbound], contact_id: int | None) -> None:
    """Add messages to the outbox, in this transaction."""
    if messages:  # one statement for them all, each row with its turn
        found = rows(messages, contact_id, datetime.now(UTC))
        turn = next_turn(bindparam("turn_of", type_=_OUTBOX.c.address.type))
        for row in found:
            row["turn_of"] = row["address"]
        await session.execute(insert(_OUTBOX).values(turn=turn), found)


# A bulletin's deliveries: one row per (bulletin, recipient), rendered in the recipient's
# language when sent (bot.bulletins.Renderer).


def delivery(
    address: str,
    channel: str,
    contact_id: int | None,
    bulletin_id: int,
    locale: str,
    body_locale: str | None = None,
) -> dict[str, Any]:
    """The outbox row, by column, of a bulletin's delivery to one recipient: `locale` is the
    language it is counted under, `body_locale` the one asked for (the recipient's)."""
    return {
        "channel": channel,
        "address": address,
        "contact_id": contact_id,
        "priority": PRIORITIES["broadcast"],
        "body": {"bulletin": bulletin_id, "locale": body_locale or locale},
        "bulletin_id": bulletin_id,
        "locale": locale,
    }


async def add_deliveries(session: AsyncSession, deliveries: list[dict[str, Any]]) -> int:
    """Queue a bulletin's deliveries (made by delivery()) in one statement, but not to a
    contact who has theirs already; return how many were queued."""
    if not deliveries:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    upsert = postgresql_insert if postgres else sqlite_insert
    added = await session.execute(
        upsert(OutboxMessage)
        .on_conflict_do_nothing(index_elements=["bulletin_id", "contact_id"])
        .returning(OutboxMessage.id),
        deliveries,
    )
    return len(added.all())


async def delivered_to(session: AsyncSession, bulletin_id: int, address: str) -> bool:
    """Whether the bulletin has a delivery row for `address` already."""
    found = await session.scalar(
        select(OutboxMessage.id).where(
            OutboxMessage.bulletin_id == bulletin_id, OutboxMessage.address == address
        )
    )
    return found is not None


async def cancel_deliveries(session: AsyncSession, bulletin_id: int, reason: str) -> int:
    """Cancel a bulletin's deliveries not sent yet; return how many."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.bulletin_id == bulletin_id, OutboxMessage.status == "pending")
        .values(status="cancelled", error=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# WhatsApp's 24-hour window.


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether a person who last wrote at `last_inbound_at` may get free text at `now`."""
    return last_inbound_at is not None and now - last_inbound_at < WINDOW


def release_held() -> Update:
    """The person at :to wrote: the messages held for the window may go now."""
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.address == bindparam("to"), _OUTBOX.c.status == "held")
        .values(status="pending", not_before=None, delivered_at=None)
    )


class Window:
    """Whether a person's 24-hour window is open, as the database records it."""

    def __init__(
        self, db: Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.db = db
        self.clock = clock

    async def open(self, address: str) -> bool:
        """Whether the person wrote in the last 24 hours (so free text may go)."""
        # A read: no turn at SQLite's write lock (a send must not wait behind the messages).
        async with self.db.read() as connection:
            last = await connection.scalar(
                select(Contact.last_inbound_at).where(Contact.address == address)
            )
        return window_open(last, self.clock())

    async def close(self, address: str) -> None:
        """The platform says the window is closed: forget when the person last wrote."""
        async with self.db.transaction() as session:
            await session.execute(_close_window(address))


def _close_window(address: str) -> Update:
    return update(Contact).where(Contact.address == address).values(last_inbound_at=None)


# Outcomes of sends, written by the sender's recorder (statements for executemany).


class Stop(NamedTuple):
    """A person who can no longer be reached, and why; `opted_out`: they asked for it.

    Its statements (stop_statements, opt_out_statements) take :to, the address, and :why.
    """

    reason: str
    opted_out: bool = False


def settled(channel: str, body: dict[str, Any], values: dict[str, object]) -> dict[str, object]:
    """The values to write for a row's outcome (`values`), with what becomes of its body: a
    row gone for good keeps nothing of what it said; {"delete": True} for a row to delete."""
    gone = values.get("status") in GONE
    if values.get("status") in ("failed", "unreachable"):
        values.setdefault("failed_at", datetime.now(UTC))  # a bulletin's chart counts it then
    if gone and body.get("ephemeral"):  # the goodbye to a forgotten person: nothing stays
        return {"delete": True}
    if (
        gone
        and quotes_content(body)
        # On WhatsApp a sent message comes back when its delivery fails (63016, the daily
        # tier): the status callback blanks it once delivered (retention a day after).
        and not (channel in HOLDING_CHANNELS and values["status"] == "sent")
    ):
        # What it said may quote what people told us: nothing of it stays once it has gone.
        values["body"] = {}
    return values


def outcome_update(keys: tuple[str, ...]) -> Update:
    """UPDATE outbox SET the columns `keys` WHERE id = :row_id, for executemany."""
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("row_id"))
        .values({key: bindparam(f"new_{key}") for key in keys})
    )


def delete_row() -> Delete:
    """DELETE the outbox row :row_id."""
    return delete(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"))


def postpone_person() -> Update:
    """Hold the other pending messages to :address until :until as well: a message sent again
    later must not arrive after the ones that followed it."""
    return (
        update(_OUTBOX)
        .where(
            _OUTBOX.c.address == bindparam("address"),
            _OUTBOX.c.status == "pending",
            or_(_OUTBOX.c.not_before.is_(None), _OUTBOX.c.not_before < bindparam("until")),
        )
        .values(not_before=bindparam("until"))
    )


def unreachable_contact() -> Update:
    """Mark the contact at :to unreachable, for :why."""
    return (
        update(_CONTACTS)
        .where(_CONTACTS.c.address == bindparam("to"))
        .values(unreachable=True, unreachable_reason=bindparam("why"))
    )


def unreachable_rows() -> Update:
    """Stop the pending messages to :to, for :why."""
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.address == bindparam("to"), _OUTBOX.c.status == "pending")
        .values(status="unreachable", error=bindparam("why"), body={})
    )


def opted_out_contact() -> Update:
    """The person at :to opted out: no more bulletins, and unreachable."""
    return (
        update(_CONTACTS)
        .where(_CONTACTS.c.address == bindparam("to"))
        .values(subscribed=False, unreachable=True, unreachable_reason=OPTED_OUT)
    )


def opted_out_rows() -> Update:
    """Stop what waits for the person at :to, held for the window too, for :why."""
    return (
        update(_OUTBOX)
        .where(
            _OUTBOX.c.address == bindparam("to"),
            or_(_OUTBOX.c.status == "pending", _OUTBOX.c.status == "held"),
        )
        .values(status="unreachable", error=bindparam("why"), body={})
    )


def stop_statements() -> list[tuple[str, Callable[[], Update]]]:
    """The statements that stop a person, by key, in the order they run (see Stop)."""
    return [
        ("contact", unreachable_contact),
        ("stopped", unreachable_rows),
    ]


def opt_out_statements() -> list[tuple[str, Callable[[], Update]]]:
    """The statements of an opt-out, by key, in the order they run."""
    return [("opted out", opted_out_contact), ("opted out rows", opted_out_rows)]


# What platforms report later: status callbacks.


class StatusRecorder:
    """Applies a platform's reports on the messages it accepted (StatusEvent) to their rows."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait: float = 0.5,
        wake: Callable[..., None] | None = None,
    ) -> None:
        self.db = db
        self.wake = wake
        self.settings = settings
        self.clock = clock
        self.wait = wait  # between looks for a row whose send is not recorded yet

    async def __call__(self, event: StatusEvent) -> str:
        """Apply one report; returns what was done (for logs and tests)."""
        # The sender writes outcomes in batches: a fast callback may come before the row
        # has its message id. Look again for a moment before giving up on it.
        for attempt in range(6):
            done = await self._apply(event)
            if done is not None:
                return done
            if attempt < 5:
                await asyncio.sleep(self.wait)
        return "unknown message"  # a later part of a long message, or a message deleted since

    async def _apply(self, event: StatusEvent) -> str | None:
        now = self.clock()
        verdict = event.verdict
        async with self.db.transaction() as session:
            row = await session.scalar(
                select(OutboxMessage).where(
                    OutboxMessage.channel == event.channel,
                    OutboxMessage.platform_message_id == event.message_id,
                )
            )
            if row is None:
                return None
            if verdict == "delivered":  # applied once by itself: the first time kept
                row.delivered_at = row.delivered_at or now
                if quotes_content(row.body):
                    row.body = {}  # it will not be sent again: nothing of what it said stays
                return event.status
            if not await self._first_time(session, event, now):
                # A replayed callback (Twilio's signature stays valid for ever): a second
                # opt-out would unsubscribe again someone who subscribed since, a daily cap
                # hold the bulletins another hour.
                return "repeated"
            row.error = f"{event.status} ({event.error or 'no code'})"
            if row.status == "held":  # the template that stood in failed: nothing else to try
                row.status = "failed"
                outcome = "failed"
            elif verdict == "opted out":
                row.status = "unreachable"
                await session.flush()
                # In this transaction: the person, and everything else waiting for them.
                for _key, build in opt_out_statements():
                    await session.execute(build(), {"to": row.address, "why": row.error})
                outcome = "opted out"
            elif verdict == "outside the window":
                await session.execute(_close_window(row.address))
                # Sent again: a bulletin as its template, anything else when the person writes.
                row.status = "pending" if row.bulletin_id is not None else "held"
                row.not_before = None
                outcome = verdict
            elif verdict == "over the daily limit":
                row.status = "pending"
                row.not_before = now + DAILY_CAP_PAUSE
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.channel == event.channel,
                        OutboxMessage.status == "pending",
                        OutboxMessage.bulletin_id.is_not(None),
                    )
                    .values(not_before=now + DAILY_CAP_PAUSE)
                )
                await self._tell_coordinators(session, now)
                outcome = verdict
            else:
                row.status = "failed"
                outcome = "failed"
            if row.status in ("failed", "unreachable"):
                row.failed_at = now
                if quotes_content(row.body):
                    row.body = {}  # it will not be sent again
        if self.wake is not None and verdict == "outside the window":
            self.wake(event.channel)  # the bulletin goes again, as its template
        return outcome

    async def _first_time(self, session: AsyncSession, event: StatusEvent, now: datetime) -> bool:
        """Record that (message id, status) is applied, in the transaction applying it; False if
        it was before. Kept with the handled messages' ids (and purged with them)."""
        upsert = postgresql_insert if not self.db.is_sqlite else sqlite_insert
        result = await session.execute(
            upsert(ProcessedInbound)
            .values(
                channel=STATUS_EVENTS,
                message_id=f"{event.message_id}:{event.status}"[:100],
                processed_at=now,
            )
            .on_conflict_do_nothing(index_elements=["channel", "message_id"])
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _tell_coordinators(self, session: AsyncSession, now: datetime) -> None:
        """Tell the coordinators once an hour that WhatsApp's daily limit holds bulletins back."""
        recent = await session.scalar(
            select(AuditEntry.id).where(
                AuditEntry.action == "whatsapp_tier_cap", AuditEntry.at > now - DAILY_CAP_PAUSE
            )
        )
        if recent is not None:
            return
        session.add(AuditEntry(actor="twilio", action="whatsapp_tier_cap", detail={}))
        notices = []
        for address, locale in await coordinators(session, self.settings, "bulletins"):
            text = translate_in(locale, DAILY_CAP_NOTICE)
            notices.append(Outbound(address, text, priority="notice", locale=locale))
        await enqueue(session, notices, None)


StatusHandler = Callable[[StatusEvent], Awaitable[str]]
