"""Coordinators write the bulletin once per language and send it now, later, or every day or week.

The same steps edit a scheduled or recurring bulletin before it goes out: its texts and photo
are loaded, changed language by language, previewed, and saved over it, with its schedule kept.
Only addresses in COORDINATORS see any of this (/bulletin). Sending is done by bot/scheduler.py
and bot/sender.py; this flow only writes rows of the bulletins table.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from sqlalchemy import select

from bot import bulletins
from bot.bulletins import EDITABLE, TEXT_LIMIT, TITLE_LIMIT
from bot.flows import (
    MENU,
    Ctx,
    Flow,
    Step,
    Transition,
    goto,
    nav_buttons,
    retry,
    to_menu,
    too_long,
)
from bot.i18n import (
    LANGUAGE_NAMES,
    LOCALES,
    N_,
    _,
    direct,
    format_datetime,
    format_number,
    isolate,
    ngettext,
)
from bot.messages import Button, Outbound
from bot.models import Bulletin
from bot.reports import places_text
from bot.when import parse_time, parse_when
from handlers.bulletin import ask_governorates, choose_governorates

WEEKDAYS = (
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
)
STATUS = {
    "draft": N_("Draft"),
    "scheduled": N_("Scheduled"),
    "recurring": N_("Recurring"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "cancelled": N_("Cancelled"),
    "missed": N_("Missed"),
    "stopped": N_("Stopped"),
}


def texts(ctx: Ctx) -> dict[str, Any]:
    """The texts written so far: {locale: {"title", "text"}}."""
    written: dict[str, Any] = ctx.data.setdefault("texts", {})
    return written


def editing(ctx: Ctx) -> int | None:
    """The id of the bulletin being edited, or None while a new one is written."""
    found = ctx.data.get("edit")
    return int(found) if found else None


async def ask_home(ctx: Ctx) -> None:
    """What to do."""
    ctx.ask(
        _("The bulletin: write a new one, or see the scheduled and sent ones."),
        [
            Button(_("New bulletin"), "adm:new"),
            Button(_("Scheduled"), "adm:scheduled"),
            Button(_("Sent"), "adm:sent"),
        ],
        title=_("Bulletin"),
        nav=False,
    )


async def on_home(ctx: Ctx) -> Transition:
    """Start writing, or list."""
    if ctx.choice == "adm:new":
        ctx.data.clear()
        return goto("lang")
    ctx.data["list"] = "scheduled" if ctx.choice == "adm:scheduled" else "sent"
    return goto("list")


async def ask_lang(ctx: Ctx) -> None:
    """Which language to write next (at least one; all three is best)."""
    written = texts(ctx)
    buttons = [
        Button(("✅ " if loc in written else "") + LANGUAGE_NAMES[loc], f"lang:{loc}")
        for loc in LOCALES
    ]
    if written:
        buttons.append(Button(_("Done writing"), "lang:done"))
    if editing(ctx):
        question = _(
            "Which language will you change? You can also add a language, or remove one. "
            "Press \u201cDone writing\u201d when the texts are right."
        )
    else:
        question = _("In which language will you write? Each language has its own title and text.")
    ctx.ask(question, buttons)


async def on_lang(ctx: Ctx) -> Transition:
    """Write one language (change or remove it if it is written already), or go on."""
    if ctx.choice == "lang:done":
        return goto("image")
    ctx.data["writing"] = (ctx.choice or "lang:ar").removeprefix("lang:")
    return goto("written" if ctx.data["writing"] in texts(ctx) else "title")


async def written_or_title(ctx: Ctx) -> str | None:
    """A language removed meanwhile (then Back) has nothing to show: write it anew."""
    return None if ctx.data.get("writing") in texts(ctx) else "title"


async def ask_written(ctx: Ctx) -> None:
    """A language already written: its title and text as they stand; change or remove it."""
    locale = ctx.data["writing"]
    current = texts(ctx)[locale]
    # In the text's own direction, whatever the coordinator's language: it can be copied,
    # corrected and sent back.
    ctx.replies.append(
        Outbound(
            address=ctx.address,
            text=direct(current["text"], locale),
            title=direct(current["title"], locale),
        )
    )
    buttons = [Button(_("Change the title or text"), "one:change")]
    if len(texts(ctx)) > 1:  # a bulletin keeps at least one language
        buttons.append(Button(_("Remove this language"), "one:remove"))
    ctx.ask(
        _("This is the %(language)s text now. What do you want to do with it?")
        % {"language": LANGUAGE_NAMES[locale]},
        buttons,
    )


async def on_written(ctx: Ctx) -> Transition:
    """Change the language's title and text, or remove it."""
    locale = ctx.data["writing"]
    if ctx.choice == "one:remove":
        written = texts(ctx)
        if len(written) < 2:
            return retry(_("A bulletin needs at least one language: add another one first."))
        # A new dict: the conversation's JSON column is saved only when a value is replaced.
        ctx.data["texts"] = {loc: text for loc, text in written.items() if loc != locale}
        ctx.say(_("The %(language)s text was removed.") % {"language": LANGUAGE_NAMES[locale]})
        return goto("lang")
    return goto("title")


def current(ctx: Ctx, field: str) -> str | None:
    """The title or text the language being written has already, if any."""
    written = texts(ctx).get(ctx.data.get("writing", ""))
    return str(written[field]) if written else None


async def ask_title(ctx: Ctx) -> None:
    """The title in the language being written."""
    keep = [Button(_("Keep the title"), "keep")] if current(ctx, "title") is not None else []
    ctx.ask(
        _("The title, in %(language)s:") % {"language": LANGUAGE_NAMES[ctx.data["writing"]]},
        keep,
    )


async def on_title(ctx: Ctx) -> Transition:
    """Keep the title."""
    if ctx.choice == "keep":
        ctx.data["title"] = current(ctx, "title") or ""
        return goto("text")
    title = ctx.text.strip()
    if len(title) > TITLE_LIMIT:
        return retry(too_long(TITLE_LIMIT, ctx.length(title)))
    ctx.data["title"] = title
    return goto("text")


async def ask_text(ctx: Ctx) -> None:
    """The text in the language being written."""
    keep = [Button(_("Keep the text"), "keep")] if current(ctx, "text") is not None else []
    ctx.ask(
        _("The text, in %(language)s:") % {"language": LANGUAGE_NAMES[ctx.data["writing"]]},
        keep,
    )


async def on_text(ctx: Ctx) -> Transition:
    """Keep the text, and ask for another language."""
    text = (current(ctx, "text") or "") if ctx.choice == "keep" else ctx.text.strip()
    if len(text) > TEXT_LIMIT:
        return retry(too_long(TEXT_LIMIT, ctx.length(text)))
    # A new dict: the conversation's JSON column is saved only when a value is replaced.
    ctx.data["texts"] = {
        **texts(ctx),
        ctx.data["writing"]: {"title": ctx.data.pop("title", ""), "text": text},
    }
    return goto("lang")


async def ask_image(ctx: Ctx) -> None:
    """An optional photo (one there already can be kept, replaced or removed)."""
    if ctx.data.get("image"):
        ctx.ask(
            _("The bulletin has a photo. Send another photo to replace it, or keep or remove it."),
            [Button(_("Keep the photo"), "img:keep"), Button(_("Remove the photo"), "img:remove")],
        )
        return
    ctx.ask(_("Send a photo for the bulletin, or press Skip."), [Button(_("Skip"), "img:skip")])


async def on_image(ctx: Ctx) -> Transition:
    """Keep the photo's reference."""
    photos = [m for m in ctx.inbound.media if m.kind == "photo"]
    if photos:
        ctx.data["image"] = photos[0].ref
    elif ctx.choice in ("img:skip", "img:remove"):
        ctx.data["image"] = None
    elif ctx.choice != "img:keep":
        return retry(
            _("Please send a photo, or choose one of the buttons.")
            if ctx.data.get("image")
            else _("Please send a photo, or press Skip.")
        )
    return goto("preview")


def draft(ctx: Ctx) -> Bulletin:
    """The bulletin as written so far (not saved)."""
    return Bulletin(
        texts=dict(texts(ctx)),
        image=ctx.data.get("image"),
        places=list(ctx.data.get("targets", [])),
        created_by=str(ctx.address),
        created_at=ctx.now,
        published_at=ctx.now,
        public_id="B-PREVIEW",
    )


async def ask_preview(ctx: Ctx) -> None:
    """The bulletin exactly as subscribers will see it, in each language; then what to do."""
    bulletin = draft(ctx)
    edited = editing(ctx)
    if edited:
        stored = await ctx.session.get(Bulletin, edited)
        if stored is not None and stored.status == "scheduled" and stored.scheduled_at:
            bulletin.published_at = stored.scheduled_at  # the date its readers will see
    for locale in LOCALES:
        ctx.say(_("Preview for %(language)s readers:") % {"language": LANGUAGE_NAMES[locale]})
        shown = bulletins.render(bulletin, ctx.address, locale, ctx.settings.timezone)
        # A reply, not a broadcast: the previews must come before the question that follows.
        ctx.replies.append(dataclasses.replace(shown, priority="reply"))
    goes_to = target_line(bulletin.places)
    targeting = Button(_("Choose governorates"), "go:places")
    if edited:
        ctx.ask(
            "\n".join([goes_to, _("Save these changes? The bulletin keeps its schedule.")]),
            [
                Button(_("Save the changes"), "go:save"),
                Button(_("Discard the changes"), "go:discard"),
                targeting,
            ],
        )
        return
    ctx.ask(
        "\n".join([goes_to, _("Send it now, or choose when.")]),
        [
            targeting,
            Button(_("Send now"), "go:now"),
            Button(_("Schedule"), "go:later"),
            Button(_("Every day"), "go:daily"),
            Button(_("Every week"), "go:weekly"),
            Button(_("Cancel"), "go:cancel"),
        ],
    )


async def on_preview(ctx: Ctx) -> Transition:
    """Send now, or ask when; or save or discard an edit."""
    if ctx.choice == "go:save":
        return await save_edit(ctx)
    if ctx.choice == "go:discard":
        ctx.data.clear()
        ctx.say(_("The changes were discarded. The bulletin stays as it was."))
        return to_menu()
    if ctx.choice == "go:cancel":
        ctx.data.clear()
        ctx.say(_("The bulletin was discarded."))
        return to_menu()
    if ctx.choice == "go:now":
        return goto("confirm")
    if ctx.choice == "go:places":
        ctx.data["places"] = list(ctx.data.get("targets", []))
        return goto("places")
    ctx.data["recurrence"] = {"go:daily": "daily", "go:weekly": "weekly"}.get(ctx.choice or "")
    return goto("time" if ctx.data["recurrence"] else "when")


def target_line(places: list[str]) -> str:
    """To whom a bulletin goes, in the coordinators' words."""
    if not places:
        return _("It goes to every subscriber.")
    return _(
        "It goes to the subscribers of %(places)s, and to those who receive the news about "
        "all of Iraq."
    ) % {"places": places_text(places)}


async def ask_places(ctx: Ctx) -> None:
    """Every subscriber, or the governorates chosen (marked), then Done."""
    ask_governorates(
        ctx,
        _(
            "Which governorates is this bulletin about? Its subscribers get it, and those who "
            "receive the news about all of Iraq. Choose, then press Done; none: everyone."
        ),
        _("Every subscriber"),
    )


async def on_places(ctx: Ctx) -> Transition:
    """Choose or unchoose one; Every subscriber or Done goes back to the preview."""
    chosen = await choose_governorates(ctx)
    if not isinstance(chosen, list):
        return chosen
    ctx.data["targets"] = chosen
    return goto("preview")


def audience_lines(found: bulletins.Audience) -> list[str]:
    """Who a bulletin reaches, by channel and language, in the current locale."""
    channels = {"telegram": "Telegram", "whatsapp": "WhatsApp", "console": _("Console")}
    lines = [
        f"• {channels.get(channel, channel)} · {LANGUAGE_NAMES.get(locale, locale)}: "
        f"{isolate(format_number(count))}"
        for (channel, locale), count in sorted(found.groups.items())
    ]
    if found.fallback:
        lines.append(
            ngettext(
                "%(count)s of them will get it in another language, with a note: it has no "
                "text in theirs.",
                "%(count)s of them will get it in another language, with a note: it has no "
                "text in theirs.",
                found.fallback,
            )
            % {"count": isolate(format_number(found.fallback))}
        )
    if found.outside_window:
        lines.append(
            ngettext(
                "%(count)s of them on WhatsApp have not written in 24 hours: they get the "
                "approved template, and the text once they answer.",
                "%(count)s of them on WhatsApp have not written in 24 hours: they get the "
                "approved template, and the text once they answer.",
                found.outside_window,
            )
            % {"count": isolate(format_number(found.outside_window))}
        )
    return lines


async def ask_confirm(ctx: Ctx) -> None:
    """To how many people it goes now, by channel and language; then a last word."""
    bulletin = draft(ctx)
    found = await bulletins.audience(ctx.session, list(bulletin.texts), bulletin.places, ctx.now)
    lines = [
        target_line(bulletin.places),
        ngettext(
            "Sent now, this bulletin goes to %(count)s subscriber:",
            "Sent now, this bulletin goes to %(count)s subscribers:",
            found.total,
        )
        % {"count": isolate(format_number(found.total))},
        *audience_lines(found),
        "",
        _("It cannot be taken back once sent. Send it?"),
    ]
    ctx.ask(
        "\n".join(lines),
        [
            Button(
                ngettext(
                    "Yes, send it to %(count)s person",
                    "Yes, send it to %(count)s people",
                    found.total,
                )
                % {"count": format_number(found.total)},
                "send:yes",
            ),
            Button(_("Not yet"), "send:no"),
        ],
    )


async def on_confirm(ctx: Ctx) -> Transition:
    """Publish it (the scheduler queues its deliveries), or back to the choices."""
    if ctx.choice != "send:yes":
        return goto("preview")
    bulletin = draft(ctx)
    bulletin.public_id = None
    ctx.session.add(bulletin)
    await bulletins.publish(ctx.session, bulletin, ctx.now)
    ctx.say(
        _("Sending has started: bulletin %(id)s. See its figures under /bulletin, Sent.")
        % {"id": isolate(bulletin.public_id or "-")}
    )
    ctx.data.clear()
    return to_menu()


def refusal(bulletin: Bulletin) -> str:
    """Why a bulletin can no longer be edited."""
    if bulletin.status in ("sending", "sent", "stopped"):
        return _(
            "This bulletin is already being sent or has been sent: it can no longer be changed. "
            "Nothing was saved."
        )
    return _(
        "This bulletin is no longer scheduled: it can no longer be changed. Nothing was saved."
    )


async def save_edit(ctx: Ctx) -> Transition:
    """Write the edited texts and photo over the stored bulletin, if it has not gone out."""
    edited = editing(ctx)
    # Locked: the scheduler publishing it at this moment either waits for this change or
    # has already marked it sending, and then nothing is changed.
    bulletin = await ctx.session.get(Bulletin, edited, with_for_update=True) if edited else None
    if not ctx.may("bulletins"):  # the role was taken away since the edit began
        ctx.data.clear()
        ctx.say(_("Cancelled. Nothing was saved."))
        return to_menu()
    if bulletin is None:
        ctx.data.clear()
        ctx.say(_("This bulletin no longer exists."))
        return to_menu()
    if bulletin.status not in EDITABLE:
        ctx.data.clear()
        ctx.say(refusal(bulletin))
        return to_menu()
    entry = bulletins.edit(
        bulletin,
        texts(ctx),
        ctx.data.get("image"),
        str(ctx.address),
        ctx.now,
        places=list(ctx.data.get("targets", [])),
    )
    ctx.data.clear()
    if entry is None:
        ctx.say(_("Nothing was changed."))
        return to_menu()
    ctx.session.add(entry)
    ctx.say(
        "\n".join(
            [
                _("Saved. The bulletin keeps its schedule."),
                schedule_line(bulletin, ctx.settings.timezone),
            ]
        )
    )
    return to_menu()


def schedule_line(bulletin: Bulletin, zone: str) -> str:
    """When a scheduled or recurring bulletin goes out, in the coordinators' words."""
    if bulletin.recurrence == "daily":
        return _("Every day at %(time)s") % {"time": isolate(bulletin.time_of_day or "-")}
    if bulletin.recurrence == "weekly":
        return _("Every %(day)s at %(time)s") % {
            "day": _(WEEKDAYS[bulletin.weekday or 0]),
            "time": isolate(bulletin.time_of_day or "-"),
        }
    if bulletin.scheduled_at is None:
        return ""
    return _("Scheduled for %(when)s.") % {
        "when": isolate(format_datetime(bulletin.scheduled_at, zone))
    }


async def ask_when(ctx: Ctx) -> None:
    """The date and time, in the coordinators' time zone."""
    ctx.ask(
        _(
            "When? Type a date and time in %(zone)s time, for example 2026-12-01 09:00, or "
            "\u201ctomorrow 9:00\u201d."
        )
        % {"zone": isolate(ctx.settings.timezone)}
    )


async def on_when(ctx: Ctx) -> Transition:
    """Schedule at that time (a new bulletin, or a new time for one already scheduled)."""
    moment = parse_when(ctx.text, ctx.now, ctx.settings.timezone)
    if moment is None:
        return retry(
            _("I could not read a future date and time. Please type it like 2026-12-01 09:00.")
        )
    existing = ctx.data.get("bulletin")
    if existing:
        # Locked: the scheduler publishing it at this moment goes first, or waits.
        bulletin = await ctx.session.get(Bulletin, int(existing), with_for_update=True)
        if bulletin is None or bulletin.status != "scheduled":
            return to_menu()
        ctx.session.add(bulletins.reschedule(bulletin, moment, str(ctx.address), ctx.now))
    else:
        bulletin = draft(ctx)
        bulletin.public_id = None
        ctx.session.add(bulletin)
        bulletin.status = "scheduled"
        bulletin.scheduled_at = moment
        bulletin.published_at = None
    ctx.say(
        _("Scheduled for %(when)s.")
        % {"when": isolate(format_datetime(moment, ctx.settings.timezone))}
    )
    ctx.data.clear()
    return to_menu()


async def ask_time(ctx: Ctx) -> None:
    """The time of day of a recurring bulletin."""
    ctx.ask(_("At what time? Type it like 09:00."))


async def on_time(ctx: Ctx) -> Transition:
    """Keep the time; a weekly one also needs its day."""
    moment = parse_time(ctx.text)
    if moment is None:
        return retry(_("Please type a time like 09:00."))
    ctx.data["time"] = moment.strftime("%H:%M")
    if ctx.data.get("recurrence") == "weekly":
        return goto("weekday")
    return await make_recurring(ctx, None)


async def ask_weekday(ctx: Ctx) -> None:
    """The day of a weekly bulletin."""
    ctx.ask(
        _("On which day?"),
        [Button(_(day), f"day:{n}") for n, day in enumerate(WEEKDAYS)],
        columns=2,
    )


async def on_weekday(ctx: Ctx) -> Transition:
    """Keep the day and save."""
    return await make_recurring(ctx, int((ctx.choice or "day:0").removeprefix("day:")))


async def make_recurring(ctx: Ctx, weekday: int | None) -> Transition:
    """Save a recurring bulletin (a template; each time it fires, a copy goes out)."""
    bulletin = draft(ctx)
    bulletin.public_id = None
    bulletin.published_at = None
    bulletin.status = "recurring"
    bulletin.recurrence = str(ctx.data["recurrence"])
    bulletin.time_of_day = str(ctx.data["time"])
    bulletin.weekday = weekday
    ctx.session.add(bulletin)
    ctx.say(_("Saved. It will go out at %(time)s.") % {"time": isolate(bulletin.time_of_day)})
    ctx.data.clear()
    return to_menu()


async def ask_list(ctx: Ctx) -> None:
    """The scheduled (and recurring) bulletins, or the latest sent ones."""
    scheduled = ctx.data.get("list") == "scheduled"
    statuses = (
        ("scheduled", "recurring") if scheduled else ("sending", "sent", "stopped", "missed")
    )
    rows = (
        await ctx.session.scalars(
            select(Bulletin)
            .where(Bulletin.status.in_(statuses))
            .order_by(Bulletin.id.desc())
            .limit(10)
        )
    ).all()
    buttons = [
        Button(f"{b.public_id or '#' + str(b.id)} · {title_of(b)[:40]}", f"item:{b.id}")
        for b in rows
    ]
    if not rows:
        heading = _("None.")
    elif scheduled:
        heading = _("Scheduled bulletins:")
    else:
        heading = _("Bulletins sent lately:")
    ctx.ask(heading, buttons)


def title_of(bulletin: Bulletin) -> str:
    """A bulletin's title in the first language it has."""
    first = next(iter(bulletin.texts.values()), {"title": "-"})
    return str(first.get("title", "-"))


async def on_list(ctx: Ctx) -> Transition:
    """Open one."""
    ctx.data["bulletin"] = int((ctx.choice or "item:0").removeprefix("item:"))
    return goto("item")


CHANNEL_NAMES = {"telegram": "Telegram", "whatsapp": "WhatsApp", "console": "Console"}


def describe_figures(item: bulletins.Figures) -> list[str]:
    """One channel and language's deliveries, in the current locale."""

    def n(count: int) -> str:
        return isolate(format_number(count))

    language = LANGUAGE_NAMES.get(item.locale, item.locale)
    lines = [f"• {CHANNEL_NAMES.get(item.channel, item.channel)} · {language}"]
    lines.append(
        _("Recipients %(recipients)s · sent %(sent)s · not yet sent %(waiting)s")
        % {"recipients": n(item.recipients), "sent": n(item.sent), "waiting": n(item.waiting)}
    )
    if item.channel == "whatsapp":  # the only channel that reports delivery
        lines.append(_("Delivered: %(delivered)s") % {"delivered": n(item.delivered)})
    if item.held:
        lines.append(
            _("Waiting until they write to us (WhatsApp's 24-hour window): %(held)s")
            % {"held": n(item.held)}
        )
    if item.failed or item.unreachable:
        lines.append(
            _("Failed %(failed)s · unreachable or opted out %(unreachable)s")
            % {"failed": n(item.failed), "unreachable": n(item.unreachable)}
        )
        reasons = sorted(item.reasons.items(), key=lambda pair: -pair[1])[:5]
        lines += [f"   {isolate(reason)}: {n(count)}" for reason, count in reasons]
    if item.stopped:
        lines.append(_("Stopped before sending: %(stopped)s") % {"stopped": n(item.stopped)})
    return lines


async def ask_item(ctx: Ctx) -> None:
    """One bulletin: status, times, languages, figures; and what can be done with it."""
    bulletin = await ctx.session.get(Bulletin, int(ctx.data.get("bulletin", 0)))
    if bulletin is None:
        ctx.say(_("This bulletin no longer exists."), buttons=[nav_buttons(MENU)])
        return
    zone = ctx.settings.timezone
    lines = [
        _("Status: %(status)s") % {"status": _(STATUS[bulletin.status])},
        _("Title: %(title)s") % {"title": title_of(bulletin)},
        _("Languages: %(languages)s")
        % {"languages": ", ".join(LANGUAGE_NAMES[loc] for loc in bulletin.texts)},
        target_line(list(bulletin.places or [])),
    ]
    if (bulletin.scheduled_at and bulletin.status == "scheduled") or bulletin.recurrence:
        lines.append(schedule_line(bulletin, zone))
    if bulletin.public_id:
        lines.append(
            _("Published as %(id)s on %(when)s.")
            % {
                "id": isolate(bulletin.public_id),
                "when": isolate(
                    format_datetime(bulletin.published_at or bulletin.created_at, zone)
                ),
            }
        )
        for item in await bulletins.figures(ctx.session, bulletin.id):
            lines += ["", *describe_figures(item)]
    buttons = []
    if bulletin.status in EDITABLE:
        buttons.append(Button(_("Edit the text or photo"), "it:edit"))
    if bulletin.status == "scheduled":
        buttons += [Button(_("Change the time"), "it:time"), Button(_("Cancel it"), "it:cancel")]
    if bulletin.status == "recurring":
        buttons.append(Button(_("Cancel it"), "it:cancel"))
    if bulletin.status in ("sending", "sent"):
        buttons.append(Button(_("Stop sending"), "it:stop"))
    buttons.append(Button(_("Refresh"), "it:refresh"))
    ctx.ask("\n".join(lines), buttons, title=bulletin.public_id or _("Bulletin"))


async def on_item(ctx: Ctx) -> Transition:
    """Edit, cancel, reschedule, stop, or refresh the figures."""
    # Locked: the scheduler publishing it at this moment goes first, or waits.
    bulletin = await ctx.session.get(
        Bulletin, int(ctx.data.get("bulletin", 0)), with_for_update=True
    )
    if bulletin is None:
        return to_menu()
    if ctx.choice == "it:edit":
        if bulletin.status not in EDITABLE:  # it went out since this view was shown
            ctx.say(refusal(bulletin))
            return goto("item")
        # The compose steps work on a copy in the conversation; only Save writes it back.
        kept: dict[str, Any] = {k: ctx.data[k] for k in ("list", "bulletin") if k in ctx.data}
        ctx.data.clear()
        ctx.data.update(
            kept,
            edit=bulletin.id,
            texts=copy.deepcopy(bulletin.texts),
            image=bulletin.image,
            targets=list(bulletin.places or []),
        )
        return goto("lang")
    if ctx.choice == "it:cancel" and bulletin.status in bulletins.EDITABLE:
        ctx.session.add(bulletins.cancel(bulletin, str(ctx.address), ctx.now))
        ctx.say(_("Cancelled."))
    elif ctx.choice == "it:time" and bulletin.status == "scheduled":
        return goto("when")
    elif ctx.choice == "it:stop" and bulletin.status in ("sending", "sent"):
        stopped = await bulletins.stop(ctx.session, bulletin, str(ctx.address), ctx.now)
        ctx.say(
            _("Stopped. %(count)s messages not yet sent were cancelled.")
            % {"count": isolate(format_number(stopped))}
        )
    return goto("item")


FLOW = Flow(
    "bulletin_admin",
    {
        "home": Step(ask_home, on_home),
        "lang": Step(ask_lang, on_lang),
        "written": Step(ask_written, on_written, redirect=written_or_title),
        "title": Step(ask_title, on_title, accepts_text=True),
        "text": Step(ask_text, on_text, accepts_text=True, numbers_are_answers=True),
        "image": Step(ask_image, on_image, accepts_media=True),
        "preview": Step(ask_preview, on_preview),
        "confirm": Step(ask_confirm, on_confirm),
        "places": Step(ask_places, on_places, accepts_text=True),
        "when": Step(ask_when, on_when, accepts_text=True, numbers_are_answers=True),
        "time": Step(ask_time, on_time, accepts_text=True, numbers_are_answers=True),
        "weekday": Step(ask_weekday, on_weekday),
        "list": Step(ask_list, on_list),
        "item": Step(ask_item, on_item),
    },
    coordinators_only=True,
    permission="bulletins",
)
