"""The information bulletin's core: publishing, queueing deliveries, rendering, checking texts.

A broadcast queues one outbox row per (bulletin, subscriber), in batches read from the
database, never all at once; the unique (bulletin_id, contact_id) makes queueing again after a
crash harmless. The sender renders each row in its recipient's language when it sends it.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import functools
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, inspect, literal, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import gazetteer, outbox
from bot.db import Database
from bot.i18n import (
    LANGUAGE_NAMES_TRANSLATED,
    LOCALES,
    _,
    direct,
    format_datetime,
    isolate,
    use_locale,
)
from bot.logs import redact
from bot.messages import Address, Outbound
from bot.models import AuditEntry, Bulletin, BulletinPicture, Contact, OutboxMessage
from bot.text import ascii_digits, fold, strip_bidi

logger = logging.getLogger(__name__)

BATCH = 1000
PAUSE = 0.02  # seconds between two batches of deliveries: others' turn at the database
FALLBACK = ("ar", "en")  # a missing language falls back to Arabic, then English
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
TITLE_LIMIT = 200
TEXT_LIMIT = 3500  # with the title and footer, within one Telegram message
EDITABLE = ("draft", "scheduled", "recurring")  # not yet out: their texts may still change
GOVERNORATE_CODES = frozenset(g.pcode for g in gazetteer.GOVERNORATES)
UPLOAD = "upload:"  # a bulletin's image uploaded on the console: "upload:<BulletinPicture id>"
PUBLISHED = ("sending", "sent", "stopped")  # out, under a public id


def language_for(bulletin: Bulletin, locale: str) -> str:
    """The language a subscriber gets: their own, else Arabic, else English, else any."""
    for candidate in (locale, *FALLBACK, *LOCALES):
        if candidate in bulletin.texts:
            return candidate
    raise ValueError("a bulletin without text")


def plain(bulletin_text: dict[str, str]) -> str:
    """The text whose SHA-256 is published: the title, a blank line, the text."""
    return f"{bulletin_text['title'].strip()}\n\n{bulletin_text['text'].strip()}"


def sha256(text: str) -> str:
    """The SHA-256 of a text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalized(text: str) -> str:
    """A text reduced for the "Is this genuine?" comparison.

    Whitespace, bidi marks and Arabic letter forms (hamza, ta marbuta, alef maqsura, tashkeel,
    tatweel, digits) do not count; forwarding and copying change them.
    """
    return fold(strip_bidi(text))


async def publish(session: AsyncSession, bulletin: Bulletin, now: datetime) -> None:
    """Give a bulletin its public id and hashes, and mark it sending."""
    if inspect(bulletin).persistent:
        # Read the row again, locked: an edit committed since it was loaded must be the text
        # that is hashed and sent, and an edit waiting for the lock then finds it sending.
        await session.refresh(bulletin, with_for_update=True)
    while bulletin.public_id is None:
        code = "B-" + "".join(secrets.choice(CODE_ALPHABET) for _i in range(6))
        if await session.scalar(select(Bulletin.id).where(Bulletin.public_id == code)) is None:
            bulletin.public_id = code
    bulletin.hashes = {loc: sha256(plain(t)) for loc, t in bulletin.texts.items()}
    bulletin.status = "sending"
    bulletin.published_at = now


def edit(
    bulletin: Bulletin,
    texts: dict[str, Any],
    image: str | None,
    actor: str,
    now: datetime,
    places: Sequence[str] | None = None,
) -> AuditEntry | None:
    """Give a scheduled or recurring bulletin new texts and photo, and its governorates when
    `places` is given (none: every subscriber); its schedule stays.

    Returns the audit entry of the change (for the caller to add), or None when nothing changed.
    """
    if bulletin.status not in EDITABLE:
        raise ValueError(f"bulletin {bulletin.id} is {bulletin.status}: it cannot be edited")
    if not texts:
        raise ValueError("a bulletin needs a title and text in at least one language")
    new = {loc: dict(texts[loc]) for loc in LOCALES if loc in texts}
    old = dict(bulletin.texts)
    detail: dict[str, Any] = {
        "bulletin": bulletin.id,
        "added": [loc for loc in new if loc not in old],
        "changed": [loc for loc in new if loc in old and plain(new[loc]) != plain(old[loc])],
        "removed": [loc for loc in old if loc not in new],
    }
    if image != bulletin.image:
        detail["image"] = (
            "removed" if image is None else "added" if not bulletin.image else "changed"
        )
    if places is not None and clean_places(places) != list(bulletin.places or []):
        detail["places"] = {"before": list(bulletin.places or []), "after": clean_places(places)}
        bulletin.places = clean_places(places)
    if not (
        detail["added"]
        or detail["changed"]
        or detail["removed"]
        or "image" in detail
        or "places" in detail
    ):
        return None
    # The SHA-256 of each version, so that the log says which text was replaced by which.
    detail["before"] = {loc: sha256(plain(t)) for loc, t in old.items()}
    detail["after"] = {loc: sha256(plain(t)) for loc, t in new.items()}
    # A new dict, not changed in place: the JSON column only notices a new value.
    bulletin.texts = new
    bulletin.image = image
    bulletin.hashes = {}  # computed from the texts as they are when it is published
    return AuditEntry(at=now, actor=actor, action="bulletin:edit", detail=detail)


def clean_places(places: Sequence[str]) -> list[str]:
    """Governorates' P-codes in the gazetteer's order, each once; ValueError for any other."""
    unknown = [p for p in places if p not in GOVERNORATE_CODES]
    if unknown:
        raise ValueError(f"not a governorate: {unknown[0]!r}")
    return [g.pcode for g in gazetteer.GOVERNORATES if g.pcode in places]


def stored_places(places: Sequence[str]) -> str | None:
    """A subscriber's chosen governorates as stored (None: all of Iraq)."""
    return " ".join(clean_places(places)) or None


def recipients(places: Sequence[str]) -> list[ColumnElement[bool]]:
    """Who a bulletin for `places` (none: everyone) goes to: subscribed, reachable, and wanting
    all of Iraq's news or one of those governorates'. The one rule, for the audience and the
    deliveries alike."""
    conditions: list[ColumnElement[bool]] = [
        Contact.subscribed.is_(True),
        Contact.unreachable.is_(False),
    ]
    codes = clean_places(places)  # P-codes only: nothing of LIKE's syntax gets in
    if codes:
        padded = literal(" ") + Contact.bulletin_places + literal(" ")
        conditions.append(
            or_(
                Contact.bulletin_places.is_(None),
                *(padded.like(f"% {code} %") for code in codes),
            )
        )
    return conditions


@dataclass
class Audience:
    """Who a bulletin would reach now: subscribers by (channel, language), how many of them
    would get it in another language than theirs, and how many WhatsApp subscribers are
    outside the 24-hour window (they get the approved template)."""

    groups: dict[tuple[str, str], int] = field(default_factory=dict)
    fallback: int = 0
    outside_window: int = 0
    places: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Everyone it would reach."""
        return sum(self.groups.values())


async def audience(
    session: AsyncSession,
    languages: Sequence[str],
    places: Sequence[str] = (),
    now: datetime | None = None,
) -> Audience:
    """The subscribers a bulletin written in `languages` for `places` goes to, counted as
    queue_deliveries chooses them (bot.bulletins.recipients)."""
    cutoff = (now or datetime.now(UTC)) - outbox.WINDOW
    outside = case(
        (
            (Contact.channel == "whatsapp")
            & (Contact.last_inbound_at.is_(None) | (Contact.last_inbound_at < cutoff)),
            1,
        ),
        else_=0,
    )
    rows = await session.execute(
        select(Contact.channel, Contact.locale, func.count(), func.sum(outside))
        .where(*recipients(places))
        .group_by(Contact.channel, Contact.locale)
    )
    found = Audience(places=clean_places(places))
    for channel, locale, count, closed in rows.all():
        key = (str(channel), str(locale or "ar"))
        found.groups[key] = found.groups.get(key, 0) + int(count)
        found.outside_window += int(closed or 0)
        if key[1] not in languages:
            found.fallback += int(count)
    return found


async def queue_deliveries(
    db: Database, bulletin_id: int, now: datetime, also: Sequence[Address] = ()
) -> int:
    """Create the missing delivery rows for a bulletin's subscribers, in batches; mark it sent.

    Safe to run again (after a crash): subscribers who have a row are skipped. `also` are
    addresses that get it too, in the default language (a Telegram channel).
    """
    queued = 0
    last = 0
    if also:
        async with db.transaction() as session:
            bulletin = await session.get(Bulletin, bulletin_id)
            if bulletin is None or bulletin.status != "sending":
                return 0
            locale = language_for(bulletin, "ar")
            await outbox.add_deliveries(
                session,
                [
                    outbox.delivery(str(address), address.channel, None, bulletin_id, locale)
                    for address in also
                    if not await outbox.delivered_to(session, bulletin_id, str(address))
                ],
            )
    while True:
        async with db.transaction() as session:
            bulletin = await session.get(Bulletin, bulletin_id)
            if bulletin is None or bulletin.status != "sending":
                return queued
            batch = (
                await session.execute(
                    select(Contact.id, Contact.address, Contact.channel, Contact.locale)
                    .where(Contact.id > last, *recipients(bulletin.places))
                    .order_by(Contact.id)
                    .limit(BATCH)
                )
            ).all()
            # Plain rows, not ORM objects: 100,000 of them for a large broadcast. Those who have
            # theirs already (a run cut short) are skipped by the unique (bulletin, contact),
            # not looked for: a NOT EXISTS over the ledger was planned on PostgreSQL from the
            # statistics of an outbox still empty, and read all of the bulletin's rows at each
            # batch (a first broadcast to 100,000 took 22 to 26 s instead of 8).
            queued += await outbox.add_deliveries(
                session,
                [
                    outbox.delivery(
                        row.address,
                        row.channel,
                        row.id,
                        bulletin_id,
                        language_for(bulletin, row.locale or "ar"),
                        row.locale,
                    )
                    for row in batch
                ],
            )
            if len(batch) < BATCH:
                bulletin.status = "sent"
                bulletin.finished_at = now
                return queued
            last = batch[-1].id
        # SQLite's lock goes to whoever asks when it is free, and the others poll for it (every
        # 0.1 s once they have waited a while): batches back to back would keep people's
        # messages and the sender waiting until every subscriber is queued.
        await asyncio.sleep(PAUSE)


# Where a picture sent to the bot came from: a Telegram file id, or Twilio's address of a
# WhatsApp message's media (which needs the account's credentials when media authentication
# is on). Anything else is an address given with --image, which anyone may fetch.
TWILIO_MEDIA = re.compile(
    r"/Accounts/AC[0-9a-f]{32}/Messages/MM[0-9a-f]{32}/Media/ME[0-9a-f]{32}$"
)


def picture_source(image: str | None) -> str | None:
    """Where a bulletin's picture came from: telegram, whatsapp, upload (the console) or public
    (None: no picture)."""
    if not image:
        return None
    if image.startswith(UPLOAD):
        return "upload"
    if not image.startswith(("https://", "http://")):
        return "telegram"
    return "whatsapp" if TWILIO_MEDIA.search(image.split("?")[0]) else "public"


def picture_for(bulletin: Bulletin, channel: str, public_url: str | None) -> str | None:
    """The bulletin's picture as `channel` can send it.

    A photo sent to the bot is known to the platform it came from only: a Telegram file id, or
    a Twilio address that may need the account's credentials. The other platform gets it from
    the web app, which serves a published bulletin's picture at PUBLIC_URL/media/bulletin/<public
    id> (bot/web.py), taken from where it came from.
    """
    source = picture_source(bulletin.image)
    if source in (None, "public") or (source == channel == "telegram"):
        return bulletin.image
    # A Telegram file id elsewhere, or Twilio's address (even on WhatsApp: Twilio's media may
    # ask for credentials, which the web app has).
    if public_url is None or bulletin.status not in PUBLISHED or not bulletin.public_id:
        # A preview, or no address to serve it from: the text goes alone, or the picture to
        # the platform it came from.
        return bulletin.image if source == channel else None
    return f"{public_url.rstrip('/')}/media/bulletin/{bulletin.public_id}"


async def published_picture(db: Database, public_id: str) -> str | None:
    """A published bulletin's picture as the platform it came from knows it; None if none.

    A read without a lock: anyone may ask for any id, as often as they like.
    """
    async with db.read() as conn:
        image = await conn.scalar(
            select(Bulletin.image).where(
                Bulletin.public_id == public_id, Bulletin.status.in_(PUBLISHED)
            )
        )
    return image if picture_source(image) in ("telegram", "whatsapp", "upload") else None


async def uploaded_picture(db: Database, reference: str) -> tuple[bytes, str] | None:
    """The bytes and type of a photo uploaded on the console ("upload:<id>"); None if none."""
    ident = reference.removeprefix(UPLOAD)
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 12):
        return None
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(BulletinPicture.content, BulletinPicture.media_type).where(
                    BulletinPicture.id == int(ident)
                )
            )
        ).first()
    return None if row is None else (bytes(row[0]), str(row[1]))


def render(
    bulletin: Bulletin,
    address: Address,
    locale: str,
    timezone: str,
    public_url: str | None = None,
) -> Outbound:
    """A bulletin as one subscriber sees it, in their language (or the fallback, said so)."""
    shown = language_for(bulletin, locale)
    text = bulletin.texts[shown]
    with use_locale(locale):
        footer = _("Bulletin %(id)s · %(date)s") % {
            "id": isolate(bulletin.public_id or "-"),
            "date": isolate(
                format_datetime(bulletin.published_at or bulletin.created_at, timezone)
            ),
        }
        note = fallback_note(shown) if shown != locale else ""
    with use_locale(shown):
        body = direct(text["text"].strip())
        title = direct(text["title"].strip())
    parts = [body, "", direct(footer, locale)]
    if note:
        parts = [direct(note, locale), "", *parts]
    return Outbound(
        address=address,
        text="\n".join(parts),
        title=title,
        photo=picture_for(bulletin, address.channel, public_url),
        priority="broadcast",
        locale=locale,
    )


def fallback_note(shown: str) -> str:
    """What a subscriber reads above a bulletin given in another language, in the current
    locale."""
    language = _(LANGUAGE_NAMES_TRANSLATED[shown])
    return _("This bulletin is not available in your language; here it is in %(language)s.") % {
        "language": language
    }


@dataclass
class _Known:
    """A bulletin as the Renderer last saw it, and its rendering per language asked for."""

    bulletin: Bulletin
    checked: float  # time.monotonic() of the last look at its status
    stopped: bool = False
    rendered: dict[tuple[str, str], Outbound] = field(default_factory=dict)  # locale, channel


class Renderer:
    """Turns an outbox row's body into the Outbound to send (bulletins rendered at send time)."""

    # Seconds between looks at a bulletin's status while it goes out: a stop is honoured
    # within this, also for the deliveries the sender has already fetched.
    REFRESH = 1.0

    def __init__(self, db: Database, timezone: str, public_url: str | None = None) -> None:
        self.db = db
        self.timezone = timezone
        self.public_url = public_url
        self._known: dict[int, _Known] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, body: dict[str, Any], address: str) -> Outbound | None:
        """The Outbound; None when the bulletin was stopped (the row is then cancelled)."""
        if "bulletin" not in body:
            return Outbound.from_json(body)
        known = await self._bulletin(int(body["bulletin"]))
        if known is None or known.stopped:
            return None
        # Every subscriber of a language gets the same text: it is rendered once per language
        # (dates, catalogs and bidi marks cost more than the send), then only addressed.
        locale = str(body.get("locale", "ar"))
        to = Address.parse(address)
        key = (locale, to.channel)  # the picture differs by channel
        template = known.rendered.get(key)
        if template is None:
            template = render(known.bulletin, to, locale, self.timezone, self.public_url)
            known.rendered[key] = template
        return dataclasses.replace(template, address=to)

    async def _bulletin(self, bulletin_id: int) -> _Known | None:
        """The bulletin, its status looked at again when the last look is REFRESH old."""
        known = self._known.get(bulletin_id)
        if known is not None and time.monotonic() - known.checked < self.REFRESH:
            return known
        async with self._lock:  # one look for all the sends that need it
            known = self._known.get(bulletin_id)
            now = time.monotonic()
            if known is None:
                async with self.db.transaction() as session:
                    bulletin = await session.get(Bulletin, bulletin_id)
                if bulletin is None:
                    return None
                known = _Known(bulletin, now, bulletin.status == "stopped")
                self._known[bulletin_id] = known
            elif now - known.checked >= self.REFRESH:
                known.checked = now
                try:
                    async with self.db.transaction() as session:
                        status = await session.scalar(
                            select(Bulletin.status).where(Bulletin.id == bulletin_id)
                        )
                except DBAPIError:  # busy (a broadcast being queued): the next look will do
                    logger.warning("bulletin %s: its status could not be read", bulletin_id)
                else:
                    known.stopped = status in (None, "stopped")
        return known


def cancel(bulletin: Bulletin, actor: str, now: datetime) -> AuditEntry:
    """Cancel a scheduled or recurring bulletin; returns the audit entry (for the caller to add).

    The caller holds the bulletin's row lock, so the scheduler cannot be publishing it.
    """
    if bulletin.status not in EDITABLE:
        raise ValueError(f"bulletin {bulletin.id} is {bulletin.status}, not scheduled")
    was = bulletin.status
    bulletin.status = "cancelled"
    return AuditEntry(
        at=now, actor=actor, action="bulletin:cancel", detail={"bulletin": bulletin.id, "was": was}
    )


def reschedule(bulletin: Bulletin, moment: datetime, actor: str, now: datetime) -> AuditEntry:
    """Give a scheduled bulletin a new time; returns the audit entry (for the caller to add)."""
    if bulletin.status != "scheduled":
        raise ValueError(f"bulletin {bulletin.id} is {bulletin.status}, not scheduled")
    before = bulletin.scheduled_at
    bulletin.scheduled_at = moment
    bulletin.published_at = None
    detail = {
        "bulletin": bulletin.id,
        "before": before.isoformat() if before else None,
        "after": moment.isoformat(),
    }
    return AuditEntry(at=now, actor=actor, action="bulletin:reschedule", detail=detail)


def set_recurrence(
    bulletin: Bulletin, time_of_day: str, weekday: int | None, actor: str, now: datetime
) -> AuditEntry | None:
    """Give a recurring bulletin a new time (and day, when weekly); the audit entry (for the
    caller to add), or None when nothing changed."""
    if bulletin.status != "recurring":
        raise ValueError(f"bulletin {bulletin.id} is {bulletin.status}, not recurring")
    weekday = weekday if bulletin.recurrence == "weekly" else None
    before = {"time": bulletin.time_of_day, "weekday": bulletin.weekday}
    after = {"time": time_of_day, "weekday": weekday}
    if before == after:
        return None
    bulletin.time_of_day, bulletin.weekday = time_of_day, weekday
    detail = {"bulletin": bulletin.id, "before": before, "after": after}
    return AuditEntry(at=now, actor=actor, action="bulletin:reschedule", detail=detail)


def written(bulletin: Bulletin, actor: str, now: datetime) -> AuditEntry:
    """The audit entry of a bulletin written and sent, scheduled or kept as a draft (for the
    caller to add once the bulletin has its id)."""
    detail: dict[str, Any] = {
        "bulletin": bulletin.id,
        "status": bulletin.status,
        "languages": sorted(bulletin.texts),
        "places": list(bulletin.places or []),
        "hashes": {loc: sha256(plain(t)) for loc, t in bulletin.texts.items()},
    }
    return AuditEntry(at=now, actor=actor, action="bulletin:write", detail=detail)


def sent(bulletin: Bulletin, actor: str, now: datetime, audience: int) -> AuditEntry:
    """The audit entry of a bulletin sent now, with to how many it was said to go."""
    detail = {"bulletin": bulletin.id, "public_id": bulletin.public_id, "audience": audience}
    return AuditEntry(at=now, actor=actor, action="bulletin:send", detail=detail)


async def stop(session: AsyncSession, bulletin: Bulletin, actor: str, now: datetime) -> int:
    """Stop a broadcast in progress: its unsent deliveries are cancelled, and it is audited."""
    bulletin.status = "stopped"
    count = await outbox.cancel_deliveries(session, bulletin.id, "stopped by a coordinator")
    detail = {"bulletin": bulletin.id, "cancelled": count}
    session.add(AuditEntry(at=now, actor=actor, action="bulletin:stop", detail=detail))
    return count


@dataclass
class Figures:
    """A bulletin's deliveries on one channel in one language."""

    channel: str
    locale: str
    recipients: int = 0
    sent: int = 0
    delivered: int = 0  # where the channel reports it (WhatsApp)
    waiting: int = 0  # not sent yet
    held: int = 0  # waiting for the person to write (WhatsApp's 24-hour window)
    failed: int = 0
    unreachable: int = 0  # blocked the bot, opted out, not on the platform
    stopped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why they failed or were unreachable


COUNTS = ("recipients", "sent", "delivered", "waiting", "held", "failed", "unreachable", "stopped")


def reason(status: str, error: str | None) -> str:
    """Why a delivery failed or its person is unreachable, as the figures show it: with the
    address, phone number or chat id a platform's words may quote masked, as in the logs
    (Twilio: "The 'To' number whatsapp:+964... is not a valid phone number")."""
    return redact(error or status)[:80]


def _count(found: dict[tuple[str, str], Figures], row: Sequence[Any]) -> None:
    """Count into `found` a group of deliveries: (channel, locale, status, error, how many,
    how many delivered)."""
    channel, locale, status, error, count, delivered = row
    item = found.setdefault((channel, locale or "-"), Figures(channel, locale or "-"))
    item.recipients += count
    if status == "sent":
        item.sent += count
        item.delivered += delivered
    elif status == "pending":
        item.waiting += count
    elif status == "held":
        item.held += count
    elif status == "cancelled":
        item.stopped += count
    else:  # failed, unreachable
        if status == "unreachable":
            item.unreachable += count
        else:
            item.failed += count
        why = reason(status, error)
        item.reasons[why] = item.reasons.get(why, 0) + count


async def _counted(session: AsyncSession, bulletin_id: int) -> dict[tuple[str, str], Figures]:
    """A bulletin's deliveries still in the outbox, per channel and language."""
    rows = await session.execute(
        select(
            OutboxMessage.channel,
            OutboxMessage.locale,
            OutboxMessage.status,
            OutboxMessage.error,
            func.count(OutboxMessage.id),
            func.count(OutboxMessage.delivered_at),
        )
        .where(OutboxMessage.bulletin_id == bulletin_id)
        .group_by(
            OutboxMessage.channel, OutboxMessage.locale, OutboxMessage.status, OutboxMessage.error
        )
    )
    found: dict[tuple[str, str], Figures] = {}
    for row in rows:
        _count(found, row)
    return found


def _tallied(tally: dict[str, Any]) -> dict[tuple[str, str], Figures]:
    """The figures a bulletin's tally holds, per channel and language."""
    found: dict[tuple[str, str], Figures] = {}
    for stored in tally.get("figures", []):
        item = Figures(
            str(stored["channel"]),
            str(stored["locale"]),
            **{name: int(stored.get(name, 0)) for name in COUNTS},
            reasons={str(k): int(v) for k, v in stored.get("reasons", {}).items()},
        )
        found[(item.channel, item.locale)] = item
    return found


def _added(
    found: dict[tuple[str, str], Figures], more: dict[tuple[str, str], Figures]
) -> dict[tuple[str, str], Figures]:
    """`found` with `more` counted in."""
    for key, extra in more.items():
        item = found.setdefault(key, Figures(*key))
        for name in COUNTS:
            setattr(item, name, getattr(item, name) + getattr(extra, name))
        for why, count in extra.reasons.items():
            item.reasons[why] = item.reasons.get(why, 0) + count
    return found


async def figures(session: AsyncSession, bulletin_id: int) -> list[Figures]:
    """A bulletin's deliveries per channel and language: sent, delivered, failed and why.

    The tally (the rows retention has deleted) and the outbox rows still there: a row is in
    one or the other, never both, as it is counted and deleted in one transaction.
    """
    tally = await session.scalar(select(Bulletin.tally).where(Bulletin.id == bulletin_id))
    found = _added(_tallied(tally or {}), await _counted(session, bulletin_id))
    for item in found.values():
        # The most frequent first, then by name: the same order however they were counted.
        item.reasons = dict(sorted(item.reasons.items(), key=lambda pair: (-pair[1], pair[0])))
    return [found[key] for key in sorted(found)]


@dataclass
class Timeline:
    """A bulletin's deliveries over time: sent, delivered and failed by each of BUCKETS
    moments, cumulative, from `start` to `end`."""

    start: datetime
    end: datetime
    sent: list[int]
    delivered: list[int]
    failed: list[int]

    def __add__(self, other: Timeline) -> Timeline:
        """Both counted together (the same moments)."""
        return Timeline(
            self.start,
            self.end,
            [a + b for a, b in zip(self.sent, other.sent, strict=True)],
            [a + b for a, b in zip(self.delivered, other.delivered, strict=True)],
            [a + b for a, b in zip(self.failed, other.failed, strict=True)],
        )

    def to_json(self) -> dict[str, Any]:
        """As a tally keeps it."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Timeline:
        """As a tally kept it."""
        return cls(
            datetime.fromisoformat(stored["start"]),
            datetime.fromisoformat(stored["end"]),
            [int(n) for n in stored["sent"]],
            [int(n) for n in stored["delivered"]],
            [int(n) for n in stored["failed"]],
        )


BUCKETS = 24  # points of the delivery chart
_MOMENTS = (OutboxMessage.sent_at, OutboxMessage.delivered_at, OutboxMessage.failed_at)


async def _span(session: AsyncSession | AsyncConnection, where: Sequence[Any]) -> list[datetime]:
    """The first and last moment anything happened to the rows matching `where` (none before
    any)."""
    bounds = (
        await session.execute(
            select(*(func.min(c) for c in _MOMENTS), *(func.max(c) for c in _MOMENTS)).where(
                *where
            )
        )
    ).one()
    moments = [moment for moment in bounds if moment is not None]
    return [min(moments), max(moments)] if moments else []


def _stretched(moments: Sequence[datetime]) -> tuple[datetime, datetime] | None:
    """The chart's first and last moments for these moments: a minute at least."""
    if not moments:
        return None
    start = min(moments)
    return start, max(max(moments), start + timedelta(minutes=1))


async def _bounds(session: AsyncSession, where: Sequence[Any]) -> tuple[datetime, datetime] | None:
    """The chart's first and last moments for the rows matching `where`; None before any."""
    return _stretched(await _span(session, where))


def _edges(start: datetime, end: datetime) -> list[datetime]:
    """The chart's moments from `start` to `end` but the last, which counts every moment."""
    step = (end - start) / BUCKETS
    return [start + step * (n + 1) for n in range(BUCKETS - 1)]


def _bucketed(moments: Sequence[Sequence[datetime | None]], stored: Timeline) -> Timeline:
    """The tally's series with a batch's (sent, delivered, failed) moments added, counted as
    _series counts them in the database."""
    edges = _edges(stored.start, stored.end)
    series: list[list[int]] = []
    for column in range(len(_MOMENTS)):
        ordered = sorted(moment for row in moments if (moment := row[column]) is not None)
        series.append([bisect.bisect_right(ordered, edge) for edge in edges] + [len(ordered)])
    return stored + Timeline(stored.start, stored.end, *series)


async def _series(
    session: AsyncSession, where: Sequence[Any], start: datetime, end: datetime
) -> Timeline:
    """Sent, delivered and failed among the rows matching `where` by each of BUCKETS moments
    from `start` to `end`; a moment after the end counts at the end."""
    edges = _edges(start, end)
    # Comparisons only: the same statement on SQLite and PostgreSQL. The last point counts
    # every moment, so that a row the tally's moments did not foresee is counted all the same.
    counts = (
        await session.execute(
            select(
                *(
                    count
                    for column in _MOMENTS
                    for count in (
                        *(func.count(case((column <= edge, 1))) for edge in edges),
                        func.count(column),
                    )
                )
            ).where(*where)
        )
    ).one()
    found = [int(n) for n in counts]
    return Timeline(
        start, end, found[:BUCKETS], found[BUCKETS : 2 * BUCKETS], found[2 * BUCKETS :]
    )


async def timeline(session: AsyncSession, bulletin_id: int) -> Timeline | None:
    """A bulletin's deliveries over time; None before any.

    Counted by the database (a bulletin to 100,000 people has as many rows, too many to bring
    over for a page). Once retention has begun with its rows, the tally's series fixes the
    moments (spanning all the bulletin's rows then: prepare_charts) and the rows still there
    are counted at those moments and added: one rule, right whether none, some or all of the
    rows are gone (a moment after the last, from a late delivery, counts at the last).
    """
    tally = await session.scalar(select(Bulletin.tally).where(Bulletin.id == bulletin_id))
    mine = [OutboxMessage.bulletin_id == bulletin_id]
    if tally and tally.get("chart"):
        stored = Timeline.from_json(tally["chart"])
        return stored + await _series(session, mine, stored.start, stored.end)
    bounds = await _bounds(session, mine)
    return None if bounds is None else await _series(session, mine, *bounds)


def _unfilled(bounds: tuple[datetime, datetime] | None) -> dict[str, Any] | None:
    """A tally's chart from `bounds` with nothing counted yet; None: nothing to chart."""
    if bounds is None:
        return None
    return Timeline(*bounds, *([0] * BUCKETS for _n in range(3))).to_json()


async def prepare_charts(db: Database, before: datetime, chunk: int) -> int:
    """Fix the chart's moments in the tally of each bulletin published before `before` that
    has none yet, for fold_deliveries; return how many were fixed.

    The moments span all its rows: those counted later fall within. They are read `chunk`
    rows at a time, with a turn for others between two reads: on SQLite a read holds the
    loop, and a bulletin to 200,000 people has as many rows (0.17 s in one read).
    """
    async with db.read() as connection:
        tallies = (
            await connection.execute(
                select(Bulletin.id, Bulletin.tally).where(
                    Bulletin.published_at < before, Bulletin.status.in_(PUBLISHED)
                )
            )
        ).all()
    fixed = 0
    for bulletin_id, tally in tallies:
        if "chart" in (tally or {}):
            continue
        mine = OutboxMessage.bulletin_id == bulletin_id
        async with db.read() as connection:
            low, high = (
                await connection.execute(
                    select(func.min(OutboxMessage.id), func.max(OutboxMessage.id)).where(mine)
                )
            ).one()
        moments: list[datetime] = []
        for start in range(low or 0, (high or -1) + 1, chunk):
            async with db.read() as connection:
                moments += await _span(
                    connection, [mine, OutboxMessage.id >= start, OutboxMessage.id < start + chunk]
                )
            await asyncio.sleep(0)
        bounds = _stretched(moments)
        async with db.transaction() as session:
            bulletin = await session.get(Bulletin, bulletin_id, with_for_update=True)
            if bulletin is None or "chart" in bulletin.tally:
                continue
            # None: nothing to chart yet (fold_deliveries then reads the moments itself).
            bulletin.tally = {**bulletin.tally, "chart": _unfilled(bounds)}
            fixed += 1
    return fixed


async def fold_deliveries(
    session: AsyncSession, where: Sequence[Any], limit: int | None = None
) -> list[int]:
    """Count the bulletin deliveries among the outbox rows matching `where` (`limit` of them at
    most) into their bulletins' tallies; return all those rows' ids, for the caller to delete
    in the same transaction.

    Counted and deleted at once, a row is counted once: a crash undoes both. One read for the
    batch (locked on PostgreSQL: what is counted is what is deleted), counted here, then each
    bulletin's tally is written.
    """
    chosen = (
        select(
            OutboxMessage.id,
            OutboxMessage.bulletin_id,
            OutboxMessage.channel,
            OutboxMessage.locale,
            OutboxMessage.status,
            OutboxMessage.error,
            *_MOMENTS,
        )
        .where(*where)
        .limit(limit)
        .with_for_update()
    )
    # On the connection: plain rows, without the ORM's work for each (a batch has thousands).
    rows = (await (await session.connection()).execute(chosen)).all()
    counted: dict[int, dict[tuple[str, str], Figures]] = {}
    moments: dict[int, list[Sequence[datetime | None]]] = {}
    for _id, bulletin_id, channel, locale, status, error, sent, delivered, failed in rows:
        if bulletin_id is None:
            continue
        found = counted.setdefault(bulletin_id, {})
        _count(found, (channel, locale, status, error, 1, int(delivered is not None)))
        moments.setdefault(bulletin_id, []).append((sent, delivered, failed))
    # One bulletin after another, in order (a lock order).
    for bulletin_id in sorted(counted):
        bulletin = await session.get(Bulletin, bulletin_id, with_for_update=True)
        if bulletin is None:
            continue
        tally = dict(bulletin.tally or {})
        chart = tally.get("chart")
        if not chart:
            # The first series spans the moments of all the bulletin's rows, those counted
            # later too: they then fall within it (read here when prepare_charts found none).
            chart = _unfilled(await _bounds(session, [OutboxMessage.bulletin_id == bulletin_id]))
        figured = _added(_tallied(tally), counted[bulletin_id])
        # A new dict, not changed in place: the JSON column only notices a new value.
        bulletin.tally = {
            "figures": [dataclasses.asdict(figured[key]) for key in sorted(figured)],
            "chart": None
            if not chart
            else _bucketed(moments[bulletin_id], Timeline.from_json(chart)).to_json(),
        }
    return [row[0] for row in rows]


# A public id as people type or paste it (B-7K3M9Q), in any case.
PUBLIC_ID = re.compile(rf"\bB-[{CODE_ALPHABET}]{{6}}\b", re.IGNORECASE)


@functools.cache
def _notes() -> frozenset[str]:
    """Every fallback note a bulletin can carry, in every language, normalized."""
    found: set[str] = set()
    for locale in LOCALES:
        with use_locale(locale):
            found.update(normalized(fallback_note(shown)) for shown in LOCALES)
    return frozenset(found)


def pasted_parts(text: str) -> tuple[str | None, str]:
    """A pasted or forwarded bulletin: the public id its footer (or the person) gives, and its
    title and text without what each channel adds (the footer, the fallback note, WhatsApp's
    bold marks, the console's title marks)."""
    public_id = None
    kept = []
    for line in strip_bidi(text).splitlines():
        bare = line.strip()
        found = PUBLIC_ID.search(ascii_digits(bare))
        if found is not None:
            public_id = found.group(0).upper()
            continue  # the footer, or the id typed alone
        if normalized(bare) in _notes():
            continue
        if bare.startswith("== ") and bare.endswith(" =="):
            bare = bare[3:-3]
        kept.append(bare.strip("*").strip())
    return public_id, "\n".join(kept)


def _matches(bulletin: Bulletin, wanted: str) -> bool:
    """Whether a normalized text is one of the bulletin's languages, whole."""
    for item in bulletin.texts.values():
        candidates = (plain(item), item["text"], f"{item['title']}\n{item['text']}")
        if any(normalized(c) == wanted for c in candidates):
            return True
    return False


async def find_genuine(session: AsyncSession, text: str) -> Bulletin | None:
    """The published bulletin that `text` is, whole (title and text in any language, as any
    channel delivered it), or that its id names; None if none, or if anything differs."""
    public_id, rest = pasted_parts(text)
    wanted = normalized(rest)
    if public_id is not None:
        bulletin = await session.scalar(
            select(Bulletin).where(Bulletin.public_id == public_id, Bulletin.status.in_(PUBLISHED))
        )
        if bulletin is None or (wanted and not _matches(bulletin, wanted)):
            return None
        return bulletin
    if len(wanted) < 10:
        return None
    published = await session.stream_scalars(
        select(Bulletin).where(Bulletin.public_id.is_not(None)).order_by(Bulletin.id.desc())
    )
    async for bulletin in published:
        if _matches(bulletin, wanted):
            return bulletin
    return None
