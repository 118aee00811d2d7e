"""The bulletin for citizens: subscribe, unsubscribe, the latest, the archive, a check."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import ColumnElement, func, select

from bot import bulletins, gazetteer
from bot.flows import MENU, Action, Ctx, Flow, Step, Transition, goto, nav_buttons, retry
from bot.forms import multi
from bot.i18n import N_, _, current_locale, format_datetime, format_number, isolate
from bot.messages import Button
from bot.models import Bulletin
from bot.reports import places_text

PAGE = 5
# Unsubscribe words that work in any state, as the whole message, in the three languages.
STOP_WORDS = (
    "stop",
    "unsubscribe",
    "إيقاف",
    "ايقاف",
    "توقف",
    "إلغاء الاشتراك",
    "وەستان",
    "وەستاندن",
)


def published() -> ColumnElement[bool]:
    """Bulletins that went out (not templates, drafts or scheduled ones)."""
    return Bulletin.public_id.is_not(None)


async def ask_home(ctx: Ctx) -> None:
    """Whether the person is subscribed, and what they can do."""
    subscribed = ctx.contact.subscribed
    toggle = (
        Button(_("Unsubscribe"), "bul:off") if subscribed else Button(_("Subscribe"), "bul:on")
    )
    text = _(
        "The Initiative's information bulletin tells what is happening, without "
        "falsification. Subscribe to receive it here, in your language."
    )
    places = []
    if subscribed:
        text = "\n".join(
            [
                _("You receive the bulletin here, in your language."),
                _("News about: %(places)s") % {"places": places_text(ctx.contact.bulletin_places)},
            ]
        )
        places = [[Button(_("Choose governorates"), "bul:places")]]
    ctx.say(
        text,
        title=_("Bulletin"),
        buttons=[
            [toggle],
            *places,
            [Button(_("Latest bulletin"), "bul:latest")],
            [Button(_("Archive"), "bul:archive")],
            [Button(_("Is this genuine?"), "bul:check")],
            nav_buttons(MENU),
        ],
    )


async def on_home(ctx: Ctx) -> Transition:
    """Act on the choice."""
    if ctx.choice == "bul:on":
        ctx.contact.subscribed = True
        ctx.contact.subscribed_at = ctx.now
        ctx.say(_("You are subscribed. Send \u201cstop\u201d at any time to unsubscribe."))
        return goto("home")
    if ctx.choice == "bul:places":
        ctx.data["places"] = (ctx.contact.bulletin_places or "").split()
        return goto("places")
    if ctx.choice == "bul:off":
        return await unsubscribe(ctx, "")
    if ctx.choice == "bul:latest":
        latest = await ctx.session.scalar(
            select(Bulletin).where(published()).order_by(Bulletin.published_at.desc()).limit(1)
        )
        if latest is None:
            ctx.say(_("No bulletin has been published yet."))
        else:
            show(ctx, latest)
        return goto("home")
    if ctx.choice == "bul:archive":
        ctx.data["page"] = 0
        return goto("archive")
    return goto("check")


def when(bulletin: Bulletin) -> datetime:
    """When a bulletin went out."""
    return bulletin.published_at or bulletin.created_at


def show(ctx: Ctx, bulletin: Bulletin) -> None:
    """Send one bulletin as a subscriber gets it."""
    shown = bulletins.render(
        bulletin, ctx.address, ctx.locale, ctx.settings.timezone, ctx.settings.public_url
    )
    # Asked for, so a reply: it comes before the menu that follows it, not after.
    ctx.replies.append(dataclasses.replace(shown, priority="reply"))


async def unsubscribe(ctx: Ctx, _rest: str) -> Transition:
    """Stop the bulletin for this person (the keyword "stop" in any state, or the button)."""
    ctx.contact.subscribed = False
    return retry(_("You are unsubscribed. You will not receive the bulletin any more."))


async def ask_archive(ctx: Ctx) -> None:
    """A page of past bulletins, with the SHA-256 of each language's text."""
    page = int(ctx.data.get("page", 0))
    total = int(await ctx.session.scalar(select(func.count(Bulletin.id)).where(published())) or 0)
    rows = (
        await ctx.session.scalars(
            select(Bulletin)
            .where(published())
            .order_by(Bulletin.published_at.desc())
            .offset(page * PAGE)
            .limit(PAGE)
        )
    ).all()
    lines = [_("%(count)s bulletins published.") % {"count": isolate(format_number(total))}]
    buttons = []
    for bulletin in rows:
        shown = bulletins.language_for(bulletin, ctx.locale)
        lines.append("")
        lines.append(
            f"{isolate(bulletin.public_id or '-')} · "
            f"{isolate(format_datetime(when(bulletin), ctx.settings.timezone))}"
        )
        lines.append(bulletin.texts[shown]["title"])
        for locale, digest in sorted(bulletin.hashes.items()):
            lines.append(f"SHA-256 ({locale}): {isolate(digest)}")
        buttons.append(
            Button(_("Read %(id)s") % {"id": bulletin.public_id}, f"arch:{bulletin.id}")
        )
    pager = []
    if page > 0:
        pager.append(Button(_("Previous page"), "arch:prev"))
    if (page + 1) * PAGE < total:
        pager.append(Button(_("Next page"), "arch:next"))
    ctx.ask("\n".join(lines), [*buttons, *pager], title=_("Archive"))


async def on_archive(ctx: Ctx) -> Transition:
    """Read one, or turn the page."""
    choice = ctx.choice or ""
    page = int(ctx.data.get("page", 0))
    if choice == "arch:next":
        ctx.data["page"] = page + 1
    elif choice == "arch:prev":
        ctx.data["page"] = max(0, page - 1)
    else:
        bulletin = await ctx.session.get(Bulletin, int(choice.removeprefix("arch:") or 0))
        if bulletin is not None and bulletin.public_id:
            show(ctx, bulletin)
    return goto("archive")


async def ask_check(ctx: Ctx) -> None:
    """Ask for the text to check."""
    ctx.ask(
        _(
            "Paste or forward the text you received, and I will tell you whether it is a "
            "bulletin the Initiative published."
        )
    )


async def on_check(ctx: Ctx) -> Transition:
    """Compare with every published bulletin, after normalizing."""
    found = await bulletins.find_genuine(ctx.session, ctx.text)
    _public_id, rest = bulletins.pasted_parts(ctx.text)
    if found is not None and not bulletins.normalized(rest):  # the id, typed alone
        shown = found.texts[bulletins.language_for(found, ctx.locale)]
        ctx.say(
            _("Bulletin %(id)s was published by the Initiative on %(date)s: %(title)s")
            % {
                "id": isolate(found.public_id or "-"),
                "date": isolate(
                    format_datetime(found.published_at or found.created_at, ctx.settings.timezone)
                ),
                "title": shown["title"],
            }
        )
    elif found is None:
        ctx.say(
            _(
                "This text does not match any bulletin the Initiative published. It may have "
                "been changed, or it is not from us."
            )
        )
    else:
        ctx.say(
            _("Yes: this text matches bulletin %(id)s, published on %(date)s.")
            % {
                "id": isolate(found.public_id or "-"),
                "date": isolate(
                    format_datetime(found.published_at or found.created_at, ctx.settings.timezone)
                ),
            }
        )
    return goto("home")


def governorate_names(_ctx: Ctx) -> dict[str, str]:
    """The 18 governorates by P-code, named in the reader's language."""
    return {g.pcode: g.name(current_locale()) for g in gazetteer.GOVERNORATES}


PLACES_PROMPT = N_(
    "Which governorates do you want news about? Choose one or more, then press Done. "
    "Choose none to receive the news about all of Iraq."
)
# Several governorates, chosen as the report's needs are: each button chooses or unchooses one,
# several may be typed at once ("Duhok, Erbil").
PLACES = multi("places", PLACES_PROMPT, governorate_names, prefix="gov", at_least_one=None)


def ask_governorates(ctx: Ctx, prompt: str, everyone: str) -> None:
    """Ask for several governorates (those chosen marked), with `everyone` first and Done last
    (`prompt` and `everyone` in the reader's language)."""
    chosen = ctx.data.get("places", [])
    options = [
        Button(("✅ " if code in chosen else "") + name, f"gov:{code}")
        for code, name in governorate_names(ctx).items()
    ]
    ctx.ask(
        prompt,
        [Button(everyone, "gov:all"), *options, Button(_("Done"), "gov:done")],
        columns=2,
    )


async def choose_governorates(ctx: Ctx) -> list[str] | Transition:
    """The governorates chosen once the person is done (none: all), or the step to go on."""
    if ctx.choice == "gov:all":
        ctx.data.pop("places", None)
        return []
    step = await PLACES.answer(ctx)
    if step is not None:
        return step
    return bulletins.clean_places(ctx.data.pop("places", []))


async def ask_places(ctx: Ctx) -> None:
    """All of Iraq, then the governorates (those chosen marked), then Done."""
    ask_governorates(ctx, _(PLACES_PROMPT), _("All of Iraq"))


async def on_places(ctx: Ctx) -> Transition:
    """Choose or unchoose one; All of Iraq or Done keeps the choice."""
    chosen = await choose_governorates(ctx)
    if not isinstance(chosen, list):
        return chosen
    ctx.contact.bulletin_places = bulletins.stored_places(chosen)
    ctx.say(
        _("You will receive the news about: %(places)s")
        % {"places": places_text(ctx.contact.bulletin_places)}
    )
    return goto("home")


FLOW = Flow(
    "bulletin",
    {
        "home": Step(ask_home, on_home),
        "places": Step(ask_places, on_places, accepts_text=True),
        "archive": Step(ask_archive, on_archive),
        "check": Step(ask_check, on_check, accepts_text=True),
    },
)
KEYWORDS = {word: Action(unsubscribe, coordinators_only=False) for word in STOP_WORDS}
