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
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.crypto import Encrypted, EncryptedJSON
from bot.i18n import N_
from bot.personal import internal, personal, shown


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

    # The contact row goes whole when the person asks to be forgotten: its columns are shown in
    # "My data" but need no blank value. The address is how we reach them, so it stays plain.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    address: Mapped[str] = mapped_column(
        String(100), unique=True, info=shown(N_("Your address"), "address")
    )
    channel: Mapped[str] = mapped_column(String(20), info=internal("part of the address"))
    locale: Mapped[str | None] = mapped_column(String(10), info=shown(N_("Language"), "language"))
    first_seen: Mapped[datetime] = mapped_column(
        default=utcnow, info=shown(N_("First message"), "datetime")
    )
    last_seen: Mapped[datetime] = mapped_column(
        default=utcnow, info=shown(N_("Last message"), "datetime")
    )
    # The last message *from* the person: WhatsApp's 24-hour window is counted from it.
    last_inbound_at: Mapped[datetime | None] = mapped_column(
        info=internal("the same moment as last_seen, or earlier")
    )
    unreachable: Mapped[bool] = mapped_column(
        Boolean, default=False, info=internal("cleared whenever the person writes")
    )
    unreachable_reason: Mapped[str | None] = mapped_column(
        String(200), info=internal("the platform's error, cleared whenever the person writes")
    )
    # The version of the declaration this person has read to the end, if any.
    declaration_read: Mapped[str | None] = mapped_column(
        String(40), info=shown(N_("Declaration read to the end"))
    )
    subscribed: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        index=True,
        info=shown(N_("Subscribed to the bulletin"), "bool"),
    )
    subscribed_at: Mapped[datetime | None] = mapped_column(
        info=shown(N_("Subscribed since"), "datetime")
    )
    # The governorates whose news the person wants, as P-codes separated by spaces; None: all
    # of Iraq. Where someone cares about can say where their family is: personal, and shown.
    bulletin_places: Mapped[str | None] = mapped_column(
        String(200),
        info=personal(
            N_("Bulletin news about"),
            "places",
            plain="a targeted bulletin picks its subscribers by it in the database; a "
            "governorate, no finer than the public figures, and the row goes whole when forgotten",
        ),
    )


class Conversation(Base):
    """Where a contact is in a flow, with what they have answered so far."""

    __tablename__ = "conversations"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, info=internal("owner")
    )
    flow: Mapped[str] = mapped_column(String(40), info=shown(N_("Conversation in progress")))
    step: Mapped[str] = mapped_column(String(40), info=internal("the question being asked"))
    # The answers given so far (a place, a point, a phone number): personal, encrypted whole.
    data: Mapped[dict[str, Any]] = mapped_column(
        EncryptedJSON,
        default=dict,
        info=personal(N_("Answers so far"), "conversation", blank={}),
    )
    # Steps visited in this flow, for "back".
    history: Mapped[list[Any]] = mapped_column(default=list, info=internal("step names"))
    # The options of the last question asked, in order: [[payload, label], ...], so that a typed
    # "2" or a label means what the user saw.
    offered: Mapped[list[Any]] = mapped_column(default=list, info=internal("our own labels"))
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, info=internal("for deleting idle conversations")
    )


class ProcessedInbound(Base):
    """A platform message id already handled: a second delivery of it is skipped."""

    __tablename__ = "processed_inbound"
    __table_args__ = (UniqueConstraint("channel", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# The keys of an outbox body that only refers to what it sends (a bulletin, in a language).
REFERENCE_KEYS = frozenset({"bulletin", "locale"})


def quotes_content(body: dict[str, Any]) -> bool:
    """Whether an outbox body holds what a message says (to blank once it has gone), rather
    than a reference to it."""
    return not body.keys() <= REFERENCE_KEYS


class OutboxMessage(Base):
    """A message waiting to leave, or already sent: the sender's delivery ledger.

    A bulletin's delivery is a row with `bulletin_id`: one per (bulletin, recipient), made
    before the message is sent, so that a broadcast cut short resumes without sending twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "channel", "status", "priority", "turn", "id"),
        UniqueConstraint("bulletin_id", "contact_id"),
        # An id is never given again (SQLite reuses the highest one once it is deleted): the
        # sender writes an outcome by id, and a row deleted while in flight ("Delete my data")
        # must not have its outcome written over a newer row.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(100), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    priority: Mapped[int] = mapped_column(Integer)  # 0 reply, 1 notice, 2 broadcast
    # Fairness between people: how many messages to the same address were waiting when this
    # one was queued (bot.outbox.next_turn). The sender takes rows by (priority, turn, id), so
    # one person's first reply goes ahead of another's hundredth: round-robin by address.
    turn: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The message (bot.messages.Outbound.to_json), which may quote what people told us:
    # encrypted while it waits, blanked once it has gone (bot.outbox; on WhatsApp once it is
    # delivered, as a failed delivery sends it again; bot.retention a day after at the latest).
    # A bulletin's delivery holds only the bulletin's id and a language, rendered when sent.
    body: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON(plain_keys=REFERENCE_KEYS))
    # The person whose data the message carries, when it goes to someone else (a coordinator's
    # copy of a report or a signature): "Delete my data" removes it if it has not gone yet.
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
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
    failed_at: Mapped[datetime | None]  # when it failed or its person proved unreachable
    # On PostgreSQL, several processes may send: the one that fetched a row holds it until
    # `claimed_until` (renewed while it lives), so that no other sends it too. SQLite: unused.
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]


AREA = "the area (2 decimals, about 1 km), for the map and the figures, as the counts are"


class Report(Base):
    """A displaced family's report: where they are, who they are, what they need.

    Personal fields (free text, exact point, phone, photo) are Encrypted; they are blanked when
    the reporter asks to be forgotten or when the retention period ends, and the anonymous
    counts stay for statistics.
    """

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    reference: Mapped[str] = mapped_column(
        String(12), unique=True, info=internal("shown as the report's heading")
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True, info=internal("owner")
    )
    locale: Mapped[str] = mapped_column(String(10), info=internal("the contact's language"))
    status: Mapped[str] = mapped_column(
        String(20), default="new", index=True, info=shown(N_("Status"), "report_status")
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, index=True, info=shown(N_("Sent"), "datetime")
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, info=internal("bookkeeping")
    )
    governorate: Mapped[str] = mapped_column(
        String(12), index=True, info=shown(N_("Governorate"), "place")
    )
    district: Mapped[str | None] = mapped_column(String(12), info=shown(N_("District"), "place"))
    place: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Place")))
    # The area only (2 decimals, about 1 km), unless the family agreed to share the exact point.
    # Plain (not encrypted), as the counts are, for the map; blanked when forgotten.
    latitude: Mapped[float | None] = mapped_column(
        info=personal(N_("Location"), "point", plain=AREA)
    )
    longitude: Mapped[float | None] = mapped_column(
        info=personal(N_("Location"), "point", plain=AREA)
    )
    exact_point: Mapped[str | None] = mapped_column(
        Encrypted, info=personal(N_("The exact point"))
    )
    origin: Mapped[str | None] = mapped_column(
        String(12), info=shown(N_("Displaced from"), "place")
    )
    # YYYY-MM or a rough period
    displaced: Mapped[str | None] = mapped_column(String(20), info=shown(N_("When"), "when"))
    people: Mapped[int] = mapped_column(Integer, info=shown(N_("People"), "count"))
    children: Mapped[int] = mapped_column(
        Integer, default=0, info=shown(N_("Children under 5"), "count")
    )
    elderly: Mapped[int] = mapped_column(
        Integer, default=0, info=shown(N_("People over 60"), "count")
    )
    disabled: Mapped[int] = mapped_column(
        Integer, default=0, info=shown(N_("People with disabilities"), "count")
    )
    pregnant: Mapped[int] = mapped_column(
        Integer, default=0, info=shown(N_("Pregnant or breastfeeding women"), "count")
    )
    female_headed: Mapped[bool] = mapped_column(
        Boolean, default=False, info=shown(N_("Headed by a woman"), "bool")
    )
    shelter: Mapped[str] = mapped_column(String(20), info=shown(N_("Shelter"), "shelter"))
    needs: Mapped[list[Any]] = mapped_column(default=list, info=shown(N_("Needs"), "needs"))
    urgent: Mapped[str] = mapped_column(String(20), info=shown(N_("Most urgent"), "need"))
    notes: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Anything else")))
    photo: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Photo"), "photo"))
    contact_ok: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        info=personal(
            N_("May we contact you"), "bool", blank=False, plain="a yes or no; the phone is kept"
        ),
    )
    phone: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Phone")))
    # Whether the family agreed that its number be given to a relief organization (#22);
    # reports sent before the question was asked read as "no".
    share_phone: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        info=personal(
            N_("Number may go to a relief organization"),
            "bool",
            blank=False,
            plain="a yes or no; the phone is kept",
        ),
    )
    duplicate_of: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id", ondelete="SET NULL"), info=internal("coordinators' flag")
    )
    anonymized_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))


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
    # What was done (a status before and after, a filter): may hold a coordinator's note about
    # a family, so encrypted; "Delete my data" keeps who acted and what, not the content.
    detail: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, default=dict)


class Signature(Base):
    """An organization's signature of the declaration, by its representative.

    The representative's name and contacts are Encrypted and never shown publicly; the public
    list holds the organization's name, type and governorate, once verified.
    """

    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    receipt: Mapped[str] = mapped_column(
        String(16), unique=True, info=internal("shown as the signature's heading")
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True, info=internal("owner")
    )
    locale: Mapped[str] = mapped_column(String(10), info=internal("the contact's language"))
    # the declaration's version signed
    version: Mapped[str] = mapped_column(String(40), info=shown(N_("Version signed")))
    # of the text read, in `locale`
    text_sha256: Mapped[str] = mapped_column(String(64), info=internal("the text's hash"))
    # The organization's names, kind and place are public once verified: not personal.
    name_ar: Mapped[str | None] = mapped_column(
        String(200), info=shown(N_("Name of the organization"))
    )
    name_en: Mapped[str | None] = mapped_column(
        String(200), info=shown(N_("Name of the organization"))
    )
    # normalized, for duplicates
    name_key: Mapped[str] = mapped_column(
        String(200), index=True, info=internal("the names, folded for comparison")
    )
    org_type: Mapped[str] = mapped_column(
        String(30), info=shown(N_("Kind of organization"), "org_type")
    )
    governorate: Mapped[str] = mapped_column(String(12), info=shown(N_("Governorate"), "place"))
    city: Mapped[str] = mapped_column(String(100), info=shown(N_("City or town")))
    representative: Mapped[str | None] = mapped_column(
        Encrypted, info=personal(N_("Your full name"))
    )
    role: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Your role")))
    phone: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Phone")))
    email: Mapped[str | None] = mapped_column(Encrypted, info=personal(N_("Email")))
    # pending -> verified or rejected; any -> withdrawn
    status: Mapped[str] = mapped_column(
        String(20),
        default="pending",
        index=True,
        info=shown(N_("Status"), "signature_status"),
    )
    # why it was rejected (written by a coordinator about the organization)
    reason: Mapped[str | None] = mapped_column(Text, info=shown(N_("Reason")))
    similar_to: Mapped[int | None] = mapped_column(
        ForeignKey("signatures.id", ondelete="SET NULL"), info=internal("coordinators' flag")
    )
    # the representative's answer about `similar_to`
    same_organization: Mapped[bool | None] = mapped_column(
        info=internal("coordinators' flag, the representative's answer")
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, info=shown(N_("Signed"), "datetime")
    )
    decided_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))
    withdrawn_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))
    # When the representative asked to be forgotten: their fields are blank, the organization's
    # verified signature stands.
    forgotten_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))


class ReportMark(Base):
    """That someone sent a report, for the daily limit: a keyed hash of their address, a time.

    It outlives "Delete my data" (else deleting would reset the limit) but holds nothing else,
    and goes after a day (bot.retention).
    """

    __tablename__ = "report_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


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
    # The governorates' P-codes whose subscribers get it (and those who want all of Iraq's
    # news); empty: every subscriber.
    places: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    # Its deliveries counted as retention deletes their outbox rows, which hold the recipients'
    # addresses (bot.bulletins.fold_deliveries): counts per channel and language and the
    # chart's series, nothing of any person. bot.bulletins.figures adds the rows still there.
    tally: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))


class BulletinPicture(Base):
    """A photo uploaded on the console's bulletin desk, served from this bot to both platforms
    once its bulletin is published (a bulletin's `image` is then "upload:<id>")."""

    __tablename__ = "bulletin_pictures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Person(Base):
    """Someone with a role in the Initiative's work (admin, coordinator, editor or viewer).

    The address is the chat in which they sign in to the console and receive alerts.
    """

    __tablename__ = "people"

    address: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    # How colleagues know them ("Sara, Duhok office"): the People page shows it.
    name: Mapped[str | None] = mapped_column(String(100))
    added_by: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[datetime | None]


class SignInLink(Base):
    """A one-time link to the console, sent in the person's chat: only its hash is kept."""

    __tablename__ = "sign_in_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A link dies with the role it was sent for.
    address: Mapped[str] = mapped_column(
        ForeignKey("people.address", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in console session: the cookie's hash, whose it is, until when.

    Removing a person's role deletes their sessions with it (ON DELETE CASCADE).
    """

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(
        ForeignKey("people.address", ondelete="CASCADE"), index=True
    )
    # The form token of this session (CSRF): a form posted without it is refused.
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ReportMessage(Base):
    """A message between the coordinators and a family about its report: the report's thread.

    A coordinator writes from the console; the family answers in the chat (Reply). The words
    are the family's business: encrypted, and deleted when the family asks to be forgotten.
    """

    __tablename__ = "report_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    report_id: Mapped[int] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), index=True, info=internal("the thread")
    )
    at: Mapped[datetime] = mapped_column(default=utcnow, info=shown(N_("Sent"), "datetime"))
    # "out": to the family; "in": the family's answer.
    direction: Mapped[str] = mapped_column(String(3), info=internal("who wrote, as a word"))
    author: Mapped[str | None] = mapped_column(
        String(100), info=internal("the coordinator who wrote; none for the family")
    )
    body: Mapped[str] = mapped_column(Encrypted, info=personal(N_("Message")))


class Organization(Base):
    """A verified signatory organization's relief capacity: which needs, where, and whether
    families may be told its name. Its signature decides whether it is active (bot.organizations).
    """

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    signature_id: Mapped[int] = mapped_column(
        ForeignKey("signatures.id", ondelete="CASCADE"),
        unique=True,
        info=internal("the organization's signature"),
    )
    # Sectors of bot.config.NEEDS; P-codes of bot.gazetteer. The organization's, not a person's.
    needs: Mapped[list[Any]] = mapped_column(default=list, info=internal("the organization's"))
    governorates: Mapped[list[Any]] = mapped_column(
        default=list, info=internal("the organization's")
    )
    districts: Mapped[list[Any]] = mapped_column(default=list, info=internal("the organization's"))
    disclose_name: Mapped[bool] = mapped_column(
        Boolean, default=False, info=internal("the organization's")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, info=internal("bookkeeping"))
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, info=internal("bookkeeping")
    )


class OrganizationMember(Base):
    """Someone who receives an organization's referrals: its representative, or a colleague
    who joined with an invitation code. A person belongs to one organization at most; the row
    goes with the contact when they ask to be forgotten (ON DELETE CASCADE)."""

    __tablename__ = "organization_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"),
        index=True,
        info=internal("the organization"),
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), unique=True, info=internal("owner")
    )
    # "representative" or "colleague"
    role: Mapped[str] = mapped_column(
        String(20), info=shown(N_("Your part in an organization"), "member_role")
    )
    joined_at: Mapped[datetime] = mapped_column(
        default=utcnow, info=shown(N_("Joined the organization"), "datetime")
    )


class OrganizationInvitation(Base):
    """A one-time code for a colleague to join an organization: only its hash is kept."""

    __tablename__ = "organization_invitations"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Referral(Base):
    """A family's report passed to a signatory organization (#22), and how the loop closed:
    the organization's answer, what it did, and whether the family says help came.

    The notes may speak of the family (a coordinator's note to the organization, the
    organization's note on what it did): personal, encrypted, blanked when the family asks to
    be forgotten. The rest is about the organization's work, kept for the figures.
    """

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, info=internal("row id"))
    report_id: Mapped[int] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), index=True, info=internal("the report")
    )
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"),
        index=True,
        info=internal("the organization's"),
    )
    # sent -> accepted -> helped | not_helped; sent -> declined | expired; any open one ->
    # withdrawn (the family deleted its data) or cancelled (the organization was suspended).
    status: Mapped[str] = mapped_column(
        String(20), default="sent", index=True, info=internal("the organization's answer")
    )
    created_by: Mapped[str] = mapped_column(String(100), info=internal("the coordinator"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, info=internal("bookkeeping"))
    expires_at: Mapped[datetime] = mapped_column(index=True, info=internal("bookkeeping"))
    note: Mapped[str | None] = mapped_column(
        Encrypted, info=personal(N_("Note to the relief organization"))
    )
    answered_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))
    # no_capacity, outside_area or other
    decline_reason: Mapped[str | None] = mapped_column(
        String(20), info=internal("the organization's")
    )
    outcome_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))
    helped_needs: Mapped[list[Any]] = mapped_column(
        default=list, info=internal("the organization's work, for the figures")
    )
    outcome_note: Mapped[str | None] = mapped_column(
        Encrypted, info=personal(N_("What the relief organization wrote"))
    )
    # yes, partly or no: whether the family says the help came
    confirmed: Mapped[str | None] = mapped_column(
        String(10), info=internal("the family's yes or no, for the figures")
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))
    closed_at: Mapped[datetime | None] = mapped_column(info=internal("bookkeeping"))


class ApiToken(Base):
    """A partner's bearer token for the read-only API (/api/v1/): only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))  # the partner, as the admin named it
    scope: Mapped[str] = mapped_column(String(20))  # reports, figures or signatories
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]  # to the minute: written with the minute's audit line
