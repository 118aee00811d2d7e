"""Channel-neutral messages: addresses, what comes in and what goes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.i18n import current_locale

CHANNELS = ("telegram", "whatsapp", "console")
# Channels whose messages may wait until the person writes (WhatsApp's 24-hour window).
HOLDING_CHANNELS = frozenset({"whatsapp"})

InboundKind = Literal[
    "text", "button", "command", "location", "contact", "photo", "document", "resume", "other"
]
Priority = Literal["reply", "notice", "broadcast"]

# Payloads of buttons that ask the platform to share the user's location or phone number
# (Telegram's request_location / request_contact keyboard buttons). Where a channel has no such
# button they are ordinary options, and the flow takes a typed answer instead.
SHARE_LOCATION = "share:location"
SHARE_PHONE = "share:phone"


@dataclass(frozen=True, order=True)
class Address:
    """Where a person is reached: a channel and the id the channel knows them by."""

    channel: str
    id: str

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse `telegram:123`, `whatsapp:+9647...` or `console:me`; else raise ValueError."""
        channel, sep, ident = text.strip().partition(":")
        channel = channel.strip().lower()
        ident = ident.strip()
        if not sep or channel not in CHANNELS or not ident:
            raise ValueError(f"not an address: {text!r}")
        return cls(channel, ident)

    def __str__(self) -> str:
        return f"{self.channel}:{self.id}"

    @property
    def phone(self) -> str | None:
        """The phone number the address is, where the channel is a phone number (WhatsApp)."""
        return self.id if self.channel == "whatsapp" else None


@dataclass(frozen=True)
class Button:
    """An option offered to the user: a visible label and the payload a flow matches."""

    label: str
    payload: str


@dataclass(frozen=True)
class Location:
    """A point shared by the user."""

    latitude: float
    longitude: float
    name: str | None = None


@dataclass(frozen=True)
class Media:
    """A photo or document attached to a message, as the platform refers to it."""

    kind: Literal["photo", "document"]
    ref: str  # Telegram file_id or Twilio MediaUrl; the bytes stay on the platform
    content_type: str | None = None


@dataclass(frozen=True)
class Inbound:
    """One message from a user, already decoded by its channel adapter."""

    address: Address
    message_id: str  # the platform's id (update_id, MessageSid): the key for de-duplication
    kind: InboundKind = "text"
    text: str = ""
    payload: str | None = None  # the payload of a pressed button
    command: str | None = None  # "start" for "/start report"
    args: tuple[str, ...] = ()
    location: Location | None = None
    phone: str | None = None
    media: tuple[Media, ...] = ()
    language_hint: str | None = None  # e.g. Telegram's language_code; only a hint
    is_private: bool = True
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Outbound:
    """One message to a user. Text is plain: adapters escape it for their markup."""

    address: Address
    text: str
    title: str | None = None  # shown bold above the text
    buttons: tuple[tuple[Button, ...], ...] = ()  # rows of buttons
    photo: str | None = None
    # A file to attach, by its path on this server (an export); the transport deletes it once
    # it has reached the platform.
    document: str | None = None
    priority: Priority = "reply"
    # The language it is written in (the current one when made), for what a channel adds itself.
    locale: str | None = field(default_factory=current_locale)
    # Whether a typed number picks an option (False where numbers are the answer, such as the
    # size of a family): channels that list options then show them without numbers.
    numbered: bool = True
    # The contact whose personal data this message carries, when it goes to someone else (a
    # coordinator's copy of a report): "Delete my data" removes it if it has not gone yet.
    about: int | None = None
    # Deleted, address and all, once it has gone: the goodbye to a person who asked to be
    # forgotten.
    ephemeral: bool = False

    def options(self) -> list[Button]:
        """The buttons in reading order: the order that numbered lists use."""
        return [button for row in self.buttons for button in row]

    def asks_to_share(self) -> bool:
        """Whether a button asks for the user's location or phone number."""
        return any(b.payload in (SHARE_LOCATION, SHARE_PHONE) for b in self.options())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, for the outbox."""
        # Field by field: dataclasses.asdict copies deeply, and this runs for every reply.
        return {
            "address": str(self.address),
            "text": self.text,
            "title": self.title,
            "buttons": [[[b.label, b.payload] for b in row] for row in self.buttons],
            "photo": self.photo,
            "document": self.document,
            "priority": self.priority,
            "locale": self.locale,
            "numbered": self.numbered,
            **({"ephemeral": True} if self.ephemeral else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outbound:
        """Rebuild an Outbound from `to_json`'s dict."""
        return cls(
            address=Address.parse(data["address"]),
            text=data["text"],
            title=data.get("title"),
            buttons=tuple(
                tuple(Button(label, payload) for label, payload in row)
                for row in data.get("buttons", [])
            ),
            photo=data.get("photo"),
            document=data.get("document"),
            priority=data.get("priority", "reply"),
            locale=data.get("locale"),
            numbered=data.get("numbered", True),
            ephemeral=data.get("ephemeral", False),
        )
