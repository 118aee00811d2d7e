"""The console's bulletin desk: write a bulletin in the three languages side by side, see what
each channel will show and to whom it goes, send it now, later or regularly, edit, cancel or
stop it, and follow its delivery. The rules are bot.bulletins'; the plumbing is the Console's.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot import bulletins, gazetteer, signin
from bot.bulletins import EDITABLE, PUBLISHED, TEXT_LIMIT, TITLE_LIMIT
from bot.channels import telegram as telegram_channel
from bot.channels import whatsapp as whatsapp_channel
from bot.flows import too_long
from bot.i18n import (
    LANGUAGE_NAMES,
    LOCALES,
    N_,
    _,
    format_datetime,
    format_number,
    is_rtl,
    ngettext,
    use_locale,
)
from bot.messages import Address, Outbound
from bot.models import Bulletin, BulletinPicture, utcnow
from bot.reports import places_text
from bot.text import clean_input, split_text
from bot.when import parse_time, parse_when
from handlers.bulletin_admin import STATUS, WEEKDAYS, schedule_line, target_line

if TYPE_CHECKING:
    from bot.webconsole import Console

PERMISSION = "bulletins"
PHOTO_LIMIT = 5 * 1024 * 1024  # bytes: what Telegram fetches by address, and WhatsApp takes
# The photo's kind by its first bytes, whatever the browser says it is.
PHOTO_KINDS = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
# A compose form: three titles and texts in Arabic letters (two bytes each, percent-encoded
# three times over), and the photo.
FIELDS_LIMIT = 128 * 1024
BODY_LIMIT = PHOTO_LIMIT + FIELDS_LIMIT
PARTS_LIMIT = 60  # fields of a form, at most (it has about 40)
CHANNELS = {"telegram": "Telegram", "whatsapp": "WhatsApp"}
LISTED = 20  # bulletins of each list on the desk
# What the desk says after an action (?done=...), as N_ messages.
DONE = {
    "scheduled": N_("Scheduled. It can still be edited or cancelled until it goes out."),
    "recurring": N_("Saved. It will go out regularly until it is cancelled."),
    "draft": N_("Check the audience below, then send it."),
    "sending": N_("Sending has started."),
    "saved": N_("Saved."),
    "unchanged": N_("Nothing was changed."),
    "cancelled": N_("Cancelled."),
    "stopped": N_("Stopped. The messages not yet sent were cancelled."),
}
ACTIONS = ("preview", "now", "schedule", "daily", "weekly", "save")
NOT_A_TIME = N_("I could not read a future date and time. Please type it like 2026-12-01 09:00.")
GONE_OUT = N_("This bulletin is already being sent or has been sent: it can no longer be changed.")


@dataclass
class Upload:
    """A file posted with a form."""

    content: bytes


@dataclass
class Compose:
    """A compose form as posted: what it says, and what is wrong with it (translated)."""

    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # as typed, to show them again
    places: list[str] = field(default_factory=list)
    image: str | None = None
    problems: list[str] = field(default_factory=list)


class Malformed(ValueError):
    """A form that the desk's pages never send: 400."""


class TooLarge(ValueError):
    """A body over the limit: 413, unread."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused unread when it says it is larger than `limit`, and cut off when it
    turns out larger."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def parse_form(content_type: str, body: bytes) -> tuple[list[tuple[str, str]], Upload | None]:
    """A urlencoded or multipart form's fields in order, and its photo; Malformed otherwise."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            fields = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=PARTS_LIMIT
            )
        except ValueError as exc:  # UnicodeDecodeError too
            raise Malformed(type(exc).__name__) from None
        return fields, None
    if not content_type.startswith("multipart/form-data"):
        raise Malformed("not a form")
    try:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise Malformed("content type") from None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise Malformed("multipart")
    pairs: list[tuple[str, str]] = []
    upload: Upload | None = None
    for number, part in enumerate(message.iter_parts()):
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if number >= PARTS_LIMIT or not isinstance(name, str) or not isinstance(payload, bytes):
            raise Malformed("part")
        if part.get_filename() is not None:
            if name != "photo" or upload is not None:
                raise Malformed("file")
            upload = Upload(payload) if payload else None
            continue
        try:
            pairs.append((name, payload.decode("utf-8")))
        except UnicodeDecodeError:
            raise Malformed("encoding") from None
    return pairs, upload


def photo_kind(content: bytes) -> str | None:
    """The photo's media type, when it is a JPEG or PNG picture."""
    return next((kind for magic, kind in PHOTO_KINDS.items() if content.startswith(magic)), None)


def compose_from(pairs: Sequence[tuple[str, str]]) -> Compose:
    """The texts and governorates posted (problems translated in the current locale);
    Malformed for a field the page cannot send."""
    fields = dict(pairs)
    found = Compose(fields={k: v for k, v in fields.items() if k != "csrf"})
    for locale in LOCALES:
        title = clean_input(fields.get(f"title_{locale}", ""), TITLE_LIMIT * 4)
        text = clean_input(fields.get(f"text_{locale}", ""), TEXT_LIMIT * 4)
        language = LANGUAGE_NAMES[locale]
        if len(title) > TITLE_LIMIT:
            found.problems.append(f"{language}: {too_long(TITLE_LIMIT, len(title))}")
        if len(text) > TEXT_LIMIT:
            found.problems.append(f"{language}: {too_long(TEXT_LIMIT, len(text))}")
        if bool(title) != bool(text):
            found.problems.append(
                _("%(language)s: write both the title and the text, or neither.")
                % {"language": language}
            )
        elif title:
            found.texts[locale] = {"title": title, "text": text}
    if not found.texts and not found.problems:
        found.problems.append(_("Write the title and the text in at least one language."))
    try:
        found.places = bulletins.clean_places([v for k, v in pairs if k == "place"])
    except ValueError:
        raise Malformed("place") from None
    image = fields.get("image", "")
    if image and not _upload_reference(image):
        raise Malformed("image")
    found.image = None if fields.get("remove_photo") == "yes" else (image or None)
    return found


def _upload_reference(image: str) -> bool:
    """Whether a posted image field names an uploaded picture ("upload:<id>")."""
    ident = image.removeprefix(bulletins.UPLOAD)
    return (
        image.startswith(bulletins.UPLOAD)
        and ident.isascii()
        and ident.isdigit()
        and len(ident) <= 12
    )


def draft_of(composed: Compose, who: str, now: datetime) -> Bulletin:
    """A bulletin made of the form (not saved), dated now, as its preview shows it."""
    return Bulletin(
        texts=composed.texts,
        image=composed.image,
        places=composed.places,
        created_by=who,
        created_at=now,
        published_at=now,
        public_id="B-PREVIEW",
        status="draft",
    )


def channel_parts(message: Outbound, channel: str, photo: bool) -> list[str]:
    """The messages a subscriber receives on `channel`, as each channel's adapter cuts them
    (bot/channels): Telegram's HTML (escaped, the title bold), WhatsApp's text in parts."""
    if channel == "telegram":
        fits = len(message.text) + len(message.title or "") < telegram_channel.CAPTION_LIMIT - 10
        if photo and fits:
            return [telegram_channel.html_text(message, message.text, True)]
        limit = telegram_channel.TEXT_LIMIT - len(message.title or "") - 10
        return [
            telegram_channel.html_text(message, part, number == 0)
            for number, part in enumerate(split_text(message.text, limit))
        ]
    return split_text(whatsapp_channel.body_of(message), whatsapp_channel.TEXT_LIMIT)


def previews(bulletin: Bulletin, timezone: str) -> list[dict[str, Any]]:
    """What readers of each language see on each channel, in the current locale's words."""
    found = []
    for locale in LOCALES:
        shown = bulletins.language_for(bulletin, locale) if bulletin.texts else locale
        channels = []
        if bulletin.texts:
            for channel, name in CHANNELS.items():
                message = bulletins.render(bulletin, Address(channel, "preview"), locale, timezone)
                parts = channel_parts(message, channel, bool(bulletin.image))
                channels.append({"channel": channel, "name": name, "parts": parts})
        found.append(
            {
                "locale": locale,
                "language": LANGUAGE_NAMES[locale],
                "dir": "rtl" if is_rtl(locale) else "ltr",
                "fallback": bulletins.fallback_note(shown) if shown != locale else None,
                "channels": channels,
            }
        )
    return found


def audience_view(found: bulletins.Audience) -> dict[str, Any]:
    """The audience as the desk shows it, in the current locale."""
    return {
        "total": found.total,
        "headline": ngettext(
            "Sent now, this bulletin goes to %(count)s subscriber:",
            "Sent now, this bulletin goes to %(count)s subscribers:",
            found.total,
        )
        % {"count": format_number(found.total)},
        "targets": target_line(found.places),
        "groups": [
            (CHANNELS.get(channel, _("Console")), LANGUAGE_NAMES.get(locale, locale), count)
            for (channel, locale), count in sorted(found.groups.items())
        ],
        "fallback": found.fallback,
        "outside_window": found.outside_window,
    }


def picture_url(image: str | None) -> str | None:
    """Where the desk shows a bulletin's uploaded photo."""
    if image and _upload_reference(image):
        return f"/console/bulletins/pictures/{image.removeprefix(bulletins.UPLOAD)}"
    return None


def title_of(bulletin: Bulletin) -> str:
    """A bulletin's title in the first language it has."""
    first = next(iter(bulletin.texts.values()), {"title": "-"})
    return str(first.get("title", "-"))


def chart(found: bulletins.Timeline, timezone: str) -> dict[str, Any]:
    """The chart's lines as SVG points (a 320 × 160 box), its scale and its labels."""
    top = max(found.sent[-1], found.delivered[-1], found.failed[-1], 1)
    left, right, high, low = 36.0, 312.0, 12.0, 132.0

    def points(counts: list[int]) -> str:
        step = (right - left) / (len(counts) - 1 or 1)
        return " ".join(
            f"{left + step * n:.1f},{low - (low - high) * count / top:.1f}"
            for n, count in enumerate(counts)
        )

    return {
        "top": format_number(top),
        "start": format_datetime(found.start, timezone),
        "end": format_datetime(found.end, timezone),
        "lines": [
            ("sent", _("Sent"), points(found.sent), found.sent[-1]),
            ("delivered", _("Delivered"), points(found.delivered), found.delivered[-1]),
            ("failed", _("Failed"), points(found.failed), found.failed[-1]),
        ],
    }


def routes(console: Console) -> list[BaseRoute]:
    """The desk's routes, bound to the console."""
    zone = console.settings.timezone

    async def posted(
        request: Request,
    ) -> tuple[signin.Signed, str, Compose, Upload | None] | Response:
        """A signed-in editor's form (urlencoded, or multipart with a photo), checked like
        every console form: size first, then origin and this session's token."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        who, locale = found
        try:
            body = await read_body(request, BODY_LIMIT)
            pairs, upload = parse_form(request.headers.get("content-type", ""), body)
            with use_locale(locale):
                composed = compose_from(pairs)
        except TooLarge:
            return console.render(
                request, "too_large.html", {}, who=who, locale=locale, status=413
            )
        except Malformed:
            return console.bad_request(request, locale, who)
        if not console.same_origin(request) or not signin.csrf_ok(who, dict(pairs).get("csrf")):
            return console.bad_request(request, locale, who)
        if composed.image is not None and not await exists(composed.image):
            return console.bad_request(request, locale, who)  # a photo this desk never kept
        return who, locale, composed, upload

    async def exists(image: str) -> bool:
        """Whether an uploaded photo's reference names a photo that is kept."""
        ident = int(image.removeprefix(bulletins.UPLOAD))
        async with console.db.read() as connection:
            found = await connection.scalar(
                select(BulletinPicture.id).where(BulletinPicture.id == ident)
            )
        return found is not None

    async def keep_photo(composed: Compose, upload: Upload | None, who: str) -> None:
        """Store a posted photo (kept by its reference in the form from then on)."""
        if upload is None:
            return
        kind = photo_kind(upload.content)
        if kind is None or len(upload.content) > PHOTO_LIMIT:
            composed.problems.append(_("The photo must be a JPEG or PNG picture of at most 5 MB."))
            return
        async with console.db.transaction() as session:
            picture = BulletinPicture(content=upload.content, media_type=kind, created_by=who)
            session.add(picture)
            await session.flush()
            composed.image = f"{bulletins.UPLOAD}{picture.id}"

    async def context_for(
        composed: Compose, bulletin: Bulletin | None, locale: str
    ) -> dict[str, Any]:
        """What the compose page shows: the form, the previews and the audience."""
        draft = draft_of(composed, "", utcnow())
        if bulletin is not None and bulletin.scheduled_at and bulletin.status == "scheduled":
            draft.published_at = bulletin.scheduled_at  # the date its readers will see
        async with console.db.reading() as session:
            found = await bulletins.audience(
                session, list(composed.texts), composed.places, utcnow()
            )
        return {
            "composed": composed,
            "bulletin": bulletin,
            "previews": previews(draft, zone),
            "audience": audience_view(found),
            "picture": picture_url(composed.image),
            "upload": composed.image if picture_url(composed.image) else "",
            "has_image": bool(composed.image),
            "governorates": [(g.pcode, g.name(locale)) for g in gazetteer.GOVERNORATES],
            "weekdays": [(n, _(day)) for n, day in enumerate(WEEKDAYS)],
            "zone": zone,
            "writing": [
                (loc, LANGUAGE_NAMES[loc], "rtl" if is_rtl(loc) else "ltr") for loc in LOCALES
            ],
        }

    async def compose_page(
        request: Request,
        who: signin.Signed,
        locale: str,
        composed: Compose,
        bulletin: Bulletin | None,
        status: int = 200,
    ) -> Response:
        """The compose page, filled in."""
        with use_locale(locale):
            context = await context_for(composed, bulletin, locale)
        return console.render(
            request, "bulletin_compose.html", context, who=who, locale=locale, status=status
        )

    async def desk(request: Request) -> Response:
        """The bulletins waiting to go out and those sent lately, and a new one's link."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        who, locale = found
        async with console.db.reading() as session:
            waiting = (
                await session.scalars(
                    select(Bulletin)
                    .where(Bulletin.status.in_(EDITABLE))
                    .order_by(Bulletin.id.desc())
                    .limit(LISTED)
                )
            ).all()
            sent = (
                await session.scalars(
                    select(Bulletin)
                    .where(Bulletin.status.in_((*PUBLISHED, "missed", "cancelled")))
                    .order_by(Bulletin.id.desc())
                    .limit(LISTED)
                )
            ).all()
        with use_locale(locale):
            context = {
                "waiting": [row_view(b) for b in waiting],
                "sent": [row_view(b) for b in sent],
            }
        return console.render(request, "bulletins.html", context, who=who, locale=locale)

    def row_view(bulletin: Bulletin) -> dict[str, Any]:
        """One line of the desk's lists, in the current locale."""
        when = bulletin.published_at or bulletin.scheduled_at
        return {
            "id": bulletin.id,
            "public_id": bulletin.public_id or "",
            "title": title_of(bulletin),
            "status": _(STATUS.get(bulletin.status, "Draft")),
            "when": schedule_line(bulletin, zone)
            if bulletin.status in ("scheduled", "recurring")
            else (format_datetime(when, zone) if when else ""),
            "places": places_text(list(bulletin.places or [])),
        }

    async def new(request: Request) -> Response:
        """An empty compose page."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        who, locale = found
        return await compose_page(request, who, locale, Compose(), None)

    async def preview(request: Request) -> Response:
        """The previews and the audience of a form as it stands, for the page's script."""
        post = await posted(request)
        if isinstance(post, Response):
            return post
        who, locale, composed, _upload = post
        with use_locale(locale):
            context = await context_for(composed, None, locale)
            html = console.env.get_template("bulletin_live.html").render(
                locale=locale, who=who, **context
            )
        response = HTMLResponse(html)
        console.protect(response)
        return response

    async def submit(request: Request) -> Response:
        """A new bulletin: preview again, or keep it as a draft to send, or schedule it."""
        post = await posted(request)
        if isinstance(post, Response):
            return post
        who, locale, composed, upload = post
        action = composed.fields.get("action", "")
        if action not in ACTIONS or action == "save":
            return console.bad_request(request, locale, who)
        now = utcnow()
        with use_locale(locale):
            await keep_photo(composed, upload, who.address)
            bulletin = draft_of(composed, who.address, now)
            bulletin.public_id, bulletin.published_at = None, None
            if action != "preview":
                schedule(bulletin, composed, action, now)
        if action == "preview" or composed.problems:
            status = 400 if composed.problems and action != "preview" else 200
            return await compose_page(request, who, locale, composed, None, status)
        async with console.db.transaction() as session:
            session.add(bulletin)
            await session.flush()
            session.add(bulletins.written(bulletin, who.address, now))
        return done(f"/console/bulletins/{bulletin.id}", bulletin.status)

    def schedule(bulletin: Bulletin, composed: Compose, action: str, now: datetime) -> None:
        """Set when a new bulletin goes: a draft to confirm (now), a time, or a recurrence."""
        fields = composed.fields
        if action == "now":
            bulletin.status = "draft"
        elif action == "schedule":
            moment = parse_when(fields.get("when", "").replace("T", " "), now, zone)
            if moment is None:
                composed.problems.append(_(NOT_A_TIME))
                return
            bulletin.status, bulletin.scheduled_at = "scheduled", moment
        else:
            at = parse_time(fields.get("time", ""))
            day = fields.get("weekday", "")
            if at is None:
                composed.problems.append(_("Please type a time like 09:00."))
                return
            if action == "weekly" and day not in {str(n) for n in range(7)}:
                composed.problems.append(_("On which day?"))
                return
            bulletin.status, bulletin.recurrence = "recurring", action
            bulletin.time_of_day = at.strftime("%H:%M")
            bulletin.weekday = int(day) if action == "weekly" else None

    def done(path: str, what: str) -> Response:
        """After an action: back to the page, which says what was done."""
        response = RedirectResponse(f"{path}?done={what}", status_code=303)
        console.protect(response)
        return response

    async def load(request: Request) -> int | None:
        """The bulletin id in the address (None: not a number)."""
        ident = str(request.path_params["ident"])
        return int(ident) if ident.isascii() and ident.isdigit() and len(ident) <= 9 else None

    async def opening(request: Request) -> tuple[signin.Signed, str, int | None] | Response:
        """The editor, the page's locale and the bulletin id in the address; else the answer
        (how to sign in, 403)."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        return (*found, await load(request))

    def not_found(request: Request, who: signin.Signed, locale: str) -> Response:
        return console.render(request, "not_found.html", {}, who=who, locale=locale, status=404)

    async def one(request: Request, *, problem: str | None = None) -> Response:
        """One bulletin: its status, previews, audience or delivery, and what can be done."""
        opened = await opening(request)
        if isinstance(opened, Response):
            return opened
        who, locale, ident = opened
        async with console.db.reading() as session:
            bulletin = await session.get(Bulletin, ident) if ident is not None else None
            if bulletin is None:
                return not_found(request, who, locale)
            figures = await bulletins.figures(session, bulletin.id)
            found_audience = await bulletins.audience(
                session, list(bulletin.texts), list(bulletin.places or []), utcnow()
            )
            line = await bulletins.timeline(session, bulletin.id) if bulletin.public_id else None
        with use_locale(locale):
            shown = Bulletin(
                texts=bulletin.texts,
                image=bulletin.image,
                places=bulletin.places,
                created_by=bulletin.created_by,
                created_at=bulletin.created_at,
                published_at=bulletin.published_at or bulletin.scheduled_at or utcnow(),
                public_id=bulletin.public_id or "B-PREVIEW",
                status=bulletin.status,
            )
            done_key = request.query_params.get("done", "")
            context = {
                "bulletin": bulletin,
                "title": title_of(bulletin),
                "status": _(STATUS.get(bulletin.status, "Draft")),
                "schedule": schedule_line(bulletin, zone)
                if bulletin.status in ("scheduled", "recurring")
                else "",
                "published": format_datetime(bulletin.published_at, zone)
                if bulletin.published_at
                else "",
                "targets": target_line(list(bulletin.places or [])),
                "previews": previews(shown, zone),
                "picture": picture_url(bulletin.image),
                "has_image": bool(bulletin.image),
                "audience": audience_view(found_audience),
                "editable": bulletin.status in EDITABLE,
                "stoppable": bulletin.status in ("sending", "sent"),
                "figures": [figure_view(item) for item in figures],
                "chart": chart(line, zone) if line is not None else None,
                "message": _(DONE[done_key]) if done_key in DONE else "",
                "problem": problem,
            }
        return console.render(
            request,
            "bulletin.html",
            context,
            who=who,
            locale=locale,
            status=409 if problem else 200,
        )

    def figure_view(item: bulletins.Figures) -> dict[str, Any]:
        """One channel and language's deliveries as the table shows them."""
        return {
            "channel": CHANNELS.get(item.channel, item.channel),
            "language": LANGUAGE_NAMES.get(item.locale, item.locale),
            "item": item,
            "reasons": sorted(item.reasons.items(), key=lambda pair: -pair[1]),
        }

    async def act(request: Request) -> Response:
        """Send a draft, cancel what has not gone out, stop a broadcast; audited."""
        post = await console.posted(request, PERMISSION)
        if isinstance(post, Response):
            return post
        who, locale = post.who, post.locale
        action = post.fields.get("action", "")
        ident = await load(request)
        if action not in ("send", "cancel", "stop") or ident is None:
            return console.bad_request(request, locale, who)
        now = utcnow()
        refused = False
        async with console.db.transaction() as session:
            # Locked: the scheduler publishing it at this moment goes first, or waits.
            bulletin = await session.get(Bulletin, ident, with_for_update=True)
            if bulletin is None:
                return not_found(request, who, locale)
            if action == "send" and bulletin.status == "draft":
                found = await bulletins.audience(
                    session, list(bulletin.texts), list(bulletin.places or []), now
                )
                await bulletins.publish(session, bulletin, now)
                session.add(bulletins.sent(bulletin, who.address, now, found.total))
                what = "sending"
            elif action == "cancel" and bulletin.status in EDITABLE:
                session.add(bulletins.cancel(bulletin, who.address, now))
                what = "cancelled"
            elif action == "stop" and bulletin.status in ("sending", "sent"):
                await bulletins.stop(session, bulletin, who.address, now)
                what = "stopped"
            else:
                refused = True
        if refused:
            with use_locale(locale):
                return await one(
                    request,
                    problem=_(
                        "This bulletin has changed meanwhile: nothing was done. Here it is now."
                    ),
                )
        # A bulletin sending is queued by the scheduler at its next look (bot/scheduler.py).
        return done(f"/console/bulletins/{ident}", what)

    async def edit_page(request: Request) -> Response:
        """The compose page with a bulletin not yet out."""
        opened = await opening(request)
        if isinstance(opened, Response):
            return opened
        who, locale, ident = opened
        async with console.db.reading() as session:
            bulletin = await session.get(Bulletin, ident) if ident is not None else None
        if bulletin is None:
            return not_found(request, who, locale)
        if bulletin.status not in EDITABLE:
            with use_locale(locale):
                return await one(
                    request,
                    problem=_(GONE_OUT),
                )
        fields: dict[str, str] = {}
        for loc, text in bulletin.texts.items():
            fields[f"title_{loc}"], fields[f"text_{loc}"] = text["title"], text["text"]
        if bulletin.scheduled_at is not None:
            local = bulletin.scheduled_at.astimezone(ZoneInfo(zone))
            fields["when"] = local.strftime("%Y-%m-%dT%H:%M")
        fields["time"] = bulletin.time_of_day or ""
        fields["weekday"] = str(bulletin.weekday) if bulletin.weekday is not None else ""
        composed = Compose(
            texts=dict(bulletin.texts),
            fields=fields,
            places=list(bulletin.places or []),
            image=bulletin.image,
        )
        return await compose_page(request, who, locale, composed, bulletin)

    async def save(request: Request) -> Response:
        """Write the edited texts, photo, governorates and time over a bulletin not yet out."""
        post = await posted(request)
        if isinstance(post, Response):
            return post
        who, locale, composed, upload = post
        action = composed.fields.get("action", "")
        ident = await load(request)
        if action not in ("preview", "save") or ident is None:
            return console.bad_request(request, locale, who)
        now = utcnow()
        with use_locale(locale):
            await keep_photo(composed, upload, who.address)
        async with console.db.transaction() as session:
            # Locked: the scheduler publishing it at this moment waits for this change, or
            # has marked it sending already and then nothing is changed.
            bulletin = await session.get(Bulletin, ident, with_for_update=True)
            if bulletin is None:
                return not_found(request, who, locale)
            if composed.image is None and composed.fields.get("remove_photo") != "yes":
                composed.image = bulletin.image  # the photo it has, uploaded or from the chat
            if bulletin.status not in EDITABLE:
                refused = True
            else:
                refused = False
                moment = None
                with use_locale(locale):
                    if bulletin.status == "scheduled":
                        moment = parse_when(
                            composed.fields.get("when", "").replace("T", " "), now, zone
                        )
                        if moment is None:
                            composed.problems.append(_(NOT_A_TIME))
                    at = parse_time(composed.fields.get("time", ""))
                    if bulletin.status == "recurring" and at is None:
                        composed.problems.append(_("Please type a time like 09:00."))
                if action == "preview" or composed.problems:
                    session.expunge(bulletin)
                else:
                    entries = [
                        bulletins.edit(
                            bulletin,
                            composed.texts,
                            composed.image,
                            who.address,
                            now,
                            places=composed.places,
                        )
                    ]
                    if moment is not None and moment != bulletin.scheduled_at:
                        entries.append(bulletins.reschedule(bulletin, moment, who.address, now))
                    if bulletin.status == "recurring" and at is not None:
                        day = composed.fields.get("weekday", "")
                        weekday = (
                            int(day) if day in {str(n) for n in range(7)} else bulletin.weekday
                        )
                        entries.append(
                            bulletins.set_recurrence(
                                bulletin, at.strftime("%H:%M"), weekday, who.address, now
                            )
                        )
                    for entry in entries:
                        if entry is not None:
                            session.add(entry)
                    changed = any(entry is not None for entry in entries)
        if refused:
            with use_locale(locale):
                return await one(
                    request,
                    problem=_(GONE_OUT),
                )
        if action == "preview" or composed.problems:
            status = 400 if composed.problems and action != "preview" else 200
            return await compose_page(request, who, locale, composed, bulletin, status)
        return done(f"/console/bulletins/{ident}", "saved" if changed else "unchanged")

    async def picture(request: Request) -> Response:
        """An uploaded photo, for the desk's previews (editors only)."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        who, locale = found
        ident = str(request.path_params["ident"])
        taken = await bulletins.uploaded_picture(console.db, f"{bulletins.UPLOAD}{ident}")
        if taken is None:
            return not_found(request, who, locale)
        content, kind = taken
        response = Response(content, media_type=kind)
        console.protect(response)
        return response

    return [
        Route("/console/bulletins", desk, methods=["GET"]),
        Route("/console/bulletins/new", new, methods=["GET"]),
        Route("/console/bulletins/new", submit, methods=["POST"]),
        Route("/console/bulletins/preview", preview, methods=["POST"]),
        Route("/console/bulletins/pictures/{ident}", picture, methods=["GET"]),
        Route("/console/bulletins/{ident}", one, methods=["GET"]),
        Route("/console/bulletins/{ident}", act, methods=["POST"]),
        Route("/console/bulletins/{ident}/edit", edit_page, methods=["GET"]),
        Route("/console/bulletins/{ident}/edit", save, methods=["POST"]),
    ]
