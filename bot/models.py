"""SQLAlchemy models: contacts, conversations, processed inbound ids and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.crypto import Encrypted


def utcnow() -> datetime:
    """The current time in UTC, the only zone the database holds."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Names of constraints are fixed so that migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Contact(Base):
    """A person on one channel: the address, the language chosen, when they were seen."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(20))
    locale: Mapped[str | None] = mapped_column(String(10))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    # The last message *from* the person: WhatsApp's 24-hour window is counted from it.
    last_inbound_at: Mapped[datetime | None]
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    unreachable_reason: Mapped[str | None] = mapped_column(String(200))
    # The version of the declaration this person has read to the end, if any.
    declaration_read: Mapped[str | None] = mapped_column(String(40))
    subscribed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
    subscribed_at: Mapped[datetime | None]


class Conversation(Base):
    """Where a contact is in a flow, with what they have answered so far."""

    __tablename__ = "conversations"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    flow: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Steps visited in this flow, for "back".
    history: Mapped[list[Any]] = mapped_column(default=list)
    # The options of the last question asked, in order: [[payload, label], ...], so that a typed
    # "2" or a label means what the user saw.
    offered: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProcessedInbound(Base):
    """A platform message id already handled: a second delivery of it is skipped."""

    __tablename__ = "processed_inbound"
    __table_args__ = (UniqueConstraint("channel", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class OutboxMessage(Base):
    """A message waiting to leave, or already sent: the sender's delivery ledger.

    A bulletin's delivery is a row with `bulletin_id`: one per (bulletin, recipient), made
    before the message is sent, so that a broadcast cut short resumes without sending twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "channel", "status", "priority", "turn", "id"),
        UniqueConstraint("bulletin_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(100), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    priority: Mapped[int] = mapped_column(Integer)  # 0 reply, 1 notice, 2 broadcast
    # Fairness between people: how many messages to the same address were waiting when this
    # one was queued (bot.engine.next_turn). The sender takes rows by (priority, turn, id), so
    # one person's first reply goes ahead of another's hundredth: round-robin by address.
    turn: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    body: Mapped[dict[str, Any]]
    # pending -> sent; or failed (given up, with error); unreachable; cancelled (a bulletin
    # stopped); held (waiting until the person writes: WhatsApp's 24-hour window)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    platform_message_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    bulletin_id: Mapped[int | None] = mapped_column(
        ForeignKey("bulletins.id", ondelete="CASCADE"), index=True
    )
    locale: Mapped[str | None] = mapped_column(String(10))  # of a bulletin's delivery
    delivered_at: Mapped[datetime | None]  # where the channel reports delivery
    # On PostgreSQL, several processes may send: the one that fetched a row holds it until
    # `claimed_until` (renewed while it lives), so that no other sends it too. SQLite: unused.
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]


class Report(Base):
    """A displaced family's report: where they are, who they are, what they need.

    Personal fields (free text, exact point, phone, photo) are Encrypted; they are blanked when
    the reporter asks to be forgotten or when the retention period ends, and the anonymous
    counts stay for statistics.
    """

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(12), unique=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    locale: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    governorate: Mapped[str] = mapped_column(String(12), index=True)
    district: Mapped[str | None] = mapped_column(String(12))
    place: Mapped[str | None] = mapped_column(Encrypted)
    # The area only (2 decimals, about 1 km), unless the family agreed to share the exact point.
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    exact_point: Mapped[str | None] = mapped_column(Encrypted)
    origin: Mapped[str | None] = mapped_column(String(12))
    displaced: Mapped[str | None] = mapped_column(String(20))  # YYYY-MM or a rough period
    people: Mapped[int] = mapped_column(Integer)
    children: Mapped[int] = mapped_column(Integer, default=0)
    elderly: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[int] = mapped_column(Integer, default=0)
    pregnant: Mapped[int] = mapped_column(Integer, default=0)
    female_headed: Mapped[bool] = mapped_column(Boolean, default=False)
    shelter: Mapped[str] = mapped_column(String(20))
    needs: Mapped[list[Any]] = mapped_column(default=list)
    urgent: Mapped[str] = mapped_column(String(20))
    notes: Mapped[str | None] = mapped_column(Encrypted)
    photo: Mapped[str | None] = mapped_column(Encrypted)
    contact_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    phone: Mapped[str | None] = mapped_column(Encrypted)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("reports.id", ondelete="SET NULL"))
    anonymized_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who looked at or changed what, and when: every coordinator access to personal data."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))  # an address, or "cli:<user>"
    action: Mapped[str] = mapped_column(String(40))
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id", ondelete="SET NULL"), index=True
    )
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Signature(Base):
    """An organization's signature of the declaration, by its representative.

    The representative's name and contacts are Encrypted and never shown publicly; the public
    list holds the organization's name, type and governorate, once verified.
    """

    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt: Mapped[str] = mapped_column(String(16), unique=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    locale: Mapped[str] = mapped_column(String(10))
    version: Mapped[str] = mapped_column(String(40))  # the declaration's version signed
    text_sha256: Mapped[str] = mapped_column(String(64))  # of the text read, in `locale`
    name_ar: Mapped[str | None] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), index=True)  # normalized, for duplicates
    org_type: Mapped[str] = mapped_column(String(30))
    governorate: Mapped[str] = mapped_column(String(12))
    city: Mapped[str] = mapped_column(String(100))
    representative: Mapped[str] = mapped_column(Encrypted)
    role: Mapped[str] = mapped_column(Encrypted)
    phone: Mapped[str | None] = mapped_column(Encrypted)
    email: Mapped[str | None] = mapped_column(Encrypted)
    # pending -> verified or rejected; any -> withdrawn
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(Text)  # why it was rejected
    similar_to: Mapped[int | None] = mapped_column(
        ForeignKey("signatures.id", ondelete="SET NULL")
    )
    same_organization: Mapped[bool | None]  # the representative's answer about `similar_to`
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]


class Bulletin(Base):
    """An issue of the information bulletin: a title and text per language, sent or scheduled.

    A recurring bulletin is a template (status "recurring"); each time it fires, a copy with
    `parent_id` is sent.
    """

    __tablename__ = "bulletins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str | None] = mapped_column(String(12), unique=True)  # once published
    # {"ar": {"title": ..., "text": ...}, ...}: at least one language
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hashes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # SHA-256 per language
    image: Mapped[str | None] = mapped_column(String(300))
    # draft, scheduled, recurring, sending, sent, cancelled, missed, stopped
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(index=True)
    recurrence: Mapped[str | None] = mapped_column(String(10))  # daily or weekly
    weekday: Mapped[int | None] = mapped_column(Integer)  # 0 Monday .. 6 Sunday
    time_of_day: Mapped[str | None] = mapped_column(String(5))  # HH:MM in TIMEZONE
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id", ondelete="SET NULL"))
    published_at: Mapped[datetime | None] = mapped_column(index=True)
    finished_at: Mapped[datetime | None]
