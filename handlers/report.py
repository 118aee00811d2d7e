"""Reporting a displaced family: one question at a time, a summary to check, then Send.

Nothing is stored as a report until Send; the answers so far live in the conversation (written
through at each message), so a restart or a detour loses none of them.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from sqlalchemy import func, or_, select

from bot import crypto, gazetteer
from bot.config import NEEDS
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
    N_,
    _,
    current_locale,
    direct,
    format_date,
    format_number,
    is_rtl,
    isolate,
    ngettext,
    use_locale,
)
from bot.messages import SHARE_LOCATION, SHARE_PHONE, Address, Button, Outbound
from bot.models import Report, ReportMark
from bot.text import ascii_digits, parse_int

PLACE_LIMIT = 200
NOTES_LIMIT = 1000
MAX_PEOPLE = 30
DUPLICATE_WINDOW = timedelta(days=7)
# Reference codes: no 0/O, 1/I/L, so that they can be read out over a bad phone line.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

NEED_LABELS: dict[str, str] = {
    "food": N_("Food"),
    "water": N_("Drinking water"),
    "shelter": N_("Shelter and household items"),
    "health": N_("Health care and medicine"),
    "wash": N_("Sanitation and hygiene"),
    "legal": N_("Civil documents and legal help"),
    "protection": N_("Protection and safety"),
    "education": N_("Education"),
    "cash": N_("Cash"),
    "psychosocial": N_("Psychosocial support"),
}
# Buttons of the needs stand two to a row: each has a short label (at most 20 characters in every
# language, tests/test_i18n.py checks it); the summary keeps the full wording above.
NEED_BUTTONS: dict[str, str] = {
    **NEED_LABELS,
    "shelter": N_("Shelter, home items"),
    "health": N_("Health and medicine"),
    "wash": N_("Sanitation, hygiene"),
    "legal": N_("Documents, legal aid"),
    "protection": N_("Protection"),
    "psychosocial": N_("Emotional support"),
}
SHELTER_LABELS: dict[str, str] = {
    "camp": N_("Camp"),
    "informal": N_("Informal settlement"),
    "unfinished": N_("Unfinished or abandoned building"),
    "collective": N_("School or religious building"),
    "rented": N_("Rented home"),
    "host": N_("With a host family"),
    "other": N_("Other"),
}
WHEN_LABELS: dict[str, str] = {
    "lt1m": N_("Less than a month ago"),
    "1to6m": N_("1 to 6 months ago"),
    "6to12m": N_("6 to 12 months ago"),
    "gt1y": N_("More than a year ago"),
    "unknown": N_("I do not remember"),
}
STATUS_LABELS: dict[str, str] = {
    "new": N_("Received"),
    "verified": N_("Verified"),
    "referred": N_("Referred to a relief organization"),
    "resolved": N_("Resolved"),
    "duplicate": N_("Duplicate"),
    "invalid": N_("Closed"),
}
# The status as "My reports" shows it to the family: coordinators' words such as "Duplicate" or
# "Closed" read like a refusal.
MY_STATUS_LABELS: dict[str, str] = {
    "new": N_("Received"),
    "verified": N_("Checked; help is being sought"),
    "referred": N_("Referred to a relief organization"),
    "resolved": N_("Followed up; help given"),
    "duplicate": N_("Followed with your earlier request"),
    "invalid": N_("Closed after follow-up"),
}
# What each status means for the family, in plain words: a bare "Duplicate" or "Closed" reads
# like a refusal.
STATUS_NOTICES: dict[str, str] = {
    "new": N_(
        "Your report %(reference)s was received. A coordinator of the Initiative will read it."
    ),
    "verified": N_(
        "A coordinator has checked your report %(reference)s and is now looking for help "
        "for your family."
    ),
    "referred": N_(
        "Your report %(reference)s was passed to a relief organization, which will look at how "
        "it can help your family."
    ),
    "resolved": N_(
        "Your report %(reference)s was followed up and the help it asked for was given. If "
        "your family still needs help, you can send a new report."
    ),
    "duplicate": N_(
        "Your report %(reference)s repeats an earlier request. Nothing is lost: your earlier "
        "request is being followed."
    ),
    "invalid": N_(
        "Your report %(reference)s was closed after follow-up. If your family still needs "
        "help, you can send a new report."
    ),
}
COUNTS: dict[str, tuple[str, str]] = {
    "children": (N_("How many of them are children under 5?"), N_("Children under 5")),
    "elderly": (N_("How many of them are over 60?"), N_("People over 60")),
    "disabled": (N_("How many of them live with a disability?"), N_("People with disabilities")),
    "pregnant": (
        N_("How many women are pregnant or breastfeeding?"),
        N_("Pregnant or breastfeeding women"),
    ),
}

# The questions in order; each answer is stored under the step's name in ctx.data.
ORDER = (
    "consent",
    "gov",
    "district",
    "place",
    "precision",
    "origin",
    "when",
    "people",
    "children",
    "elderly",
    "disabled",
    "pregnant",
    "female",
    "shelter",
    "needs",
    "urgent",
    "notes",
    "contact",
    "phone",
    "summary",
)


def applies(data: dict[str, Any], step: str) -> bool:
    """Whether a question is asked at all, given the answers so far."""
    if step == "precision":
        return data.get("lat") is not None
    if step == "urgent":
        return len(data.get("needs", [])) > 1
    if step == "phone":
        return data.get("contact") is True
    return True


def answered(data: dict[str, Any], step: str) -> bool:
    """Whether a question has an answer that still holds."""
    if step == "needs":
        return bool(data.get("needs"))
    if step == "notes":
        return "notes" in data or "photo" in data
    if step == "place":
        return "place" in data or data.get("lat") is not None
    return step in data


def next_step(ctx: Ctx, after: str) -> Transition:
    """The next question; when editing from the summary, the next one still unanswered."""
    data = ctx.data
    for step in ORDER[ORDER.index(after) + 1 :]:
        if not applies(data, step):
            continue
        if data.get("editing") and answered(data, step) and step != "summary":
            continue
        return goto(step)
    return goto("summary")


def current(ctx: Ctx, step: str) -> str:
    """A line showing the answer already given to this question, if any."""
    if not answered(ctx.data, step):
        return ""
    return "\n\n" + _("Your answer now: %(answer)s") % {"answer": describe(ctx.data, step)}


def place_name(pcode: str | None) -> str:
    """A P-code's name in the current locale."""
    found = gazetteer.place(pcode) if pcode else None
    return found.name(current_locale()) if found else _("I do not know")


def describe(data: dict[str, Any], step: str) -> str:
    """An answer as the summary shows it, in the current locale."""
    value = data.get(step)
    if step in ("gov", "origin", "district"):
        return place_name(value)
    if step == "place":
        parts = []
        if data.get("place"):
            parts.append(isolate(str(data["place"])))  # typed: "12 Sharya Camp" keeps its order
        if data.get("lat") is not None:
            parts.append(_("location shared"))
        return " · ".join(parts) or _("Not given")
    if step == "precision":
        return _("The exact point") if value == "exact" else _("Only the area (about 1 km)")
    if step == "when":
        if isinstance(value, str) and value in WHEN_LABELS:
            return _(WHEN_LABELS[value])
        return isolate(str(value))
    if step in ("people", *COUNTS):
        return format_number(int(value or 0))
    if step == "female":
        return _("Yes") if value else _("No")
    if step == "shelter":
        return _(SHELTER_LABELS.get(str(value), "Other"))
    if step == "needs":
        # The comma of the reader's script: an Arabic comma would show in English text.
        comma = "، " if is_rtl() else ", "
        return comma.join(_(NEED_LABELS[n]) for n in data.get("needs", []) if n in NEED_LABELS)
    if step == "urgent":
        return _(NEED_LABELS[str(value)]) if value in NEED_LABELS else ""
    if step == "notes":
        parts = [isolate(str(data["notes"]))] if data.get("notes") else []
        if data.get("photo"):
            parts.append(_("a photo"))
        return " · ".join(parts) or _("Nothing")
    if step == "contact":
        return _("Yes") if value else _("No")
    if step == "phone":
        return isolate(str(value))
    return str(value)


def options_row(items: list[Button], columns: int) -> list[list[Button]]:
    """Buttons in rows of `columns`."""
    return [items[i : i + columns] for i in range(0, len(items), columns)]


def governorate_buttons(prefix: str) -> list[Button]:
    """The 18 governorates, named in the current locale."""
    return [
        Button(p.name(current_locale()), f"{prefix}:{p.pcode}") for p in gazetteer.GOVERNORATES
    ]


# Questions --------------------------------------------------------------------------------------


async def ask_consent(ctx: Ctx) -> None:
    """Say what is collected, why, who sees it, for how long; ask for agreement."""
    days = ctx.settings.report_retention_days
    ctx.ask(
        _(
            "Before we start, please read this.\n\n"
            "We will ask where your family is staying now, how many you are, and what you "
            "need. The Initiative's coordinators will see your answers, and may share them "
            "with the relief organizations they ask to help you. We do not ask for names.\n\n"
            "A phone number is asked only if you want a coordinator to call you."
        )
        + "\n"
        + ngettext(
            "Your personal details are kept for %(days)s day at most, and you can delete them "
            "at any time with /forget.",
            "Your personal details are kept for %(days)s days at most, and you can delete them "
            "at any time with /forget.",
            days,
        )
        % {"days": isolate(format_number(days))}
        + "\n\n"
        + _("Do you agree?"),
        [Button(_("I agree"), "r:agree"), Button(_("No, thank you"), "r:decline")],
        title=_("Report a displaced family"),
    )


async def on_consent(ctx: Ctx) -> Transition:
    """Agree: go on (unless today's reports are used up). Decline: nothing is kept."""
    if ctx.choice != "r:agree":
        ctx.data.clear()
        ctx.say(_("Thank you. Nothing was stored."))
        return to_menu()
    if await reports_today(ctx) >= ctx.settings.reports_per_day:
        return goto("limit")
    ctx.data["consent"] = True
    return next_step(ctx, "consent")


async def ask_gov(ctx: Ctx) -> None:
    """Which governorate the family is in now."""
    ctx.ask(
        _("In which governorate is the family staying now?") + current(ctx, "gov"),
        governorate_buttons("gov"),
        columns=2,
    )


async def on_gov(ctx: Ctx) -> Transition:
    """Store the governorate (a P-code); a new one clears the district."""
    pcode = pick_place(ctx, "gov", gazetteer.GOVERNORATES)
    if pcode is None:
        return retry(_("Please choose the governorate from the list, or type its name."))
    if ctx.data.get("gov") != pcode:
        ctx.data.pop("district", None)
    ctx.data["gov"] = pcode
    return next_step(ctx, "gov")


async def ask_district(ctx: Ctx) -> None:
    """Which district of that governorate ("I do not know" allowed)."""
    districts = gazetteer.districts_of(str(ctx.data.get("gov")))
    buttons = [Button(p.name(current_locale()), f"dist:{p.pcode}") for p in districts]
    buttons.append(Button(_("I do not know"), "dist:unknown"))
    ctx.ask(_("In which district?") + current(ctx, "district"), buttons, columns=2)


async def on_district(ctx: Ctx) -> Transition:
    """Store the district, or that the family does not know it."""
    if ctx.choice == "dist:unknown":
        ctx.data["district"] = None
        return next_step(ctx, "district")
    districts = gazetteer.districts_of(str(ctx.data.get("gov")))
    pcode = pick_place(ctx, "dist", districts)
    if pcode is None:
        return retry(_("Please choose the district from the list, or \u201cI do not know\u201d."))
    ctx.data["district"] = pcode
    return next_step(ctx, "district")


def pick_place(ctx: Ctx, prefix: str, among: Any) -> str | None:
    """A P-code from a pressed button or a typed name."""
    if ctx.choice and ctx.choice.startswith(f"{prefix}:"):
        return ctx.choice.split(":", 1)[1]
    found = gazetteer.find(ctx.text, among) if ctx.text else None
    return found.pcode if found else None


async def ask_place(ctx: Ctx) -> None:
    """The camp, neighbourhood or village, typed; or a shared location."""
    ctx.ask(
        _(
            "What is the name of the camp, neighbourhood or village? Type it, or share your "
            "location. You may also skip this question."
        )
        + current(ctx, "place"),
        [Button(_("Share my location"), SHARE_LOCATION), Button(_("Skip"), "place:skip")],
    )


async def on_place(ctx: Ctx) -> Transition:
    """Store the place name or the shared point (rounded unless the family agrees)."""
    location = ctx.inbound.location
    if location is not None:
        if not (-90 <= location.latitude <= 90 and -180 <= location.longitude <= 180):
            return retry()
        ctx.data["lat"], ctx.data["lon"] = location.latitude, location.longitude
        ctx.data.pop("precision", None)
        return next_step(ctx, "place")
    if ctx.choice == "place:skip":
        ctx.data["place"] = None
        return next_step(ctx, "place")
    if ctx.choice == SHARE_LOCATION:  # a channel without the share button: typed it instead
        if ctx.address.channel == "whatsapp":
            return retry(
                _(
                    "To share your location on WhatsApp: press 📎 (or +) below, choose "
                    "Location, then Send your current location. Or type the name of the place, "
                    "or skip this question."
                )
            )
        return retry(
            _(
                "This chat cannot share a location: please type the name of the place, or "
                "skip this question."
            )
        )
    text = ctx.text.strip()
    if ctx.inbound.media or not text:  # a photo, or a shared contact: no place in it
        return retry(_("Please type the name of the place, or share your location."))
    if len(text) > PLACE_LIMIT:
        return retry(too_long(PLACE_LIMIT, ctx.length(text)))
    ctx.data["place"] = text
    return next_step(ctx, "place")


async def ask_precision(ctx: Ctx) -> None:
    """May coordinators see the exact point, or only the area?"""
    ctx.ask(
        _(
            "Thank you. Shall we keep only the area (about 1 km around the point), or the exact "
            "point? The area is safer; the exact point helps relief teams find you."
        ),
        [
            Button(_("Only the area"), "prec:area"),
            Button(_("The exact point"), "prec:exact"),
        ],
    )


async def on_precision(ctx: Ctx) -> Transition:
    """Store the choice."""
    ctx.data["precision"] = "exact" if ctx.choice == "prec:exact" else "area"
    if ctx.data["precision"] == "area":
        # Only the area is kept from now on, in the conversation too: the exact point is not
        # held anywhere once the family chose not to share it.
        for key in ("lat", "lon"):
            if ctx.data.get(key) is not None:
                ctx.data[key] = round(float(ctx.data[key]), 2)
    return next_step(ctx, "precision")


async def ask_origin(ctx: Ctx) -> None:
    """The governorate the family comes from."""
    ctx.ask(
        _("From which governorate was the family displaced?") + current(ctx, "origin"),
        governorate_buttons("orig"),
        columns=2,
    )


async def on_origin(ctx: Ctx) -> Transition:
    """Store the governorate of origin."""
    pcode = pick_place(ctx, "orig", gazetteer.GOVERNORATES)
    if pcode is None:
        return retry(_("Please choose the governorate from the list, or type its name."))
    ctx.data["origin"] = pcode
    return next_step(ctx, "origin")


async def ask_when(ctx: Ctx) -> None:
    """When the family was displaced: a rough period, or a month and year typed."""
    ctx.ask(
        _("When was the family displaced? Choose, or type the month and year, for example 3/2024.")
        + current(ctx, "when"),
        [Button(_(label), f"when:{code}") for code, label in WHEN_LABELS.items()],
    )


def parse_month(text: str, now: datetime) -> str | None:
    """'3/2024', '2024-03', '٠٣/٢٠٢٤' -> '2024-03'; None if not a past month since 2003."""
    cleaned = ascii_digits(text).strip()
    match = re.fullmatch(r"(\d{1,2})\s*[/\-.]\s*(\d{4})", cleaned, re.ASCII)
    if match:
        month, year = int(match.group(1)), int(match.group(2))
    else:
        match = re.fullmatch(r"(\d{4})\s*[/\-.]\s*(\d{1,2})", cleaned, re.ASCII)
        if not match:
            return None
        year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or not 2003 <= year <= now.year:
        return None
    if (year, month) > (now.year, now.month):
        return None
    return f"{year:04d}-{month:02d}"


async def on_when(ctx: Ctx) -> Transition:
    """Store the period or the month."""
    if ctx.choice and ctx.choice.startswith("when:"):
        ctx.data["when"] = ctx.choice[5:]
        return next_step(ctx, "when")
    month = parse_month(ctx.text, ctx.now)
    if month is None:
        return retry(
            _("Please choose one of the answers, or type a past month and year, like 3/2024.")
        )
    ctx.data["when"] = month
    return next_step(ctx, "when")


async def ask_people(ctx: Ctx) -> None:
    """How many people the family has."""
    ctx.ask(
        _("How many people are in the family, including you? Type a number from 1 to 30.")
        + current(ctx, "people"),
        [Button(format_number(n), f"n:{n}") for n in range(1, 11)],
        columns=5,
    )


def chosen_number(ctx: Ctx) -> int | None:
    """A number from a button or typed in any digit script."""
    if ctx.choice and ctx.choice.startswith("n:"):
        return int(ctx.choice[2:])
    return parse_int(ctx.text)


async def on_people(ctx: Ctx) -> Transition:
    """Store the household size; counts that no longer fit are asked again."""
    number = chosen_number(ctx)
    if number is None or not 1 <= number <= MAX_PEOPLE:
        return retry(_("Please type a number from 1 to 30."))
    ctx.data["people"] = number
    if not counts_fit(ctx.data):
        for key in COUNTS:
            ctx.data.pop(key, None)
    return next_step(ctx, "people")


def counts_fit(data: dict[str, Any]) -> bool:
    """Whether the counts fit in the household (children and elders are separate people)."""
    people = int(data.get("people", 0))
    counts = {key: int(data.get(key, 0)) for key in COUNTS}
    return all(v <= people for v in counts.values()) and (
        counts["children"] + counts["elderly"] <= people
    )


def count_step(key: str) -> Step:
    """A question about how many of the family are of one group."""

    async def ask(ctx: Ctx) -> None:
        people = int(ctx.data.get("people", 1))
        ctx.ask(
            _(COUNTS[key][0]) + current(ctx, key),
            [Button(format_number(n), f"n:{n}") for n in range(min(people, 5) + 1)],
            columns=6,
        )

    async def answer(ctx: Ctx) -> Transition:
        number = chosen_number(ctx)
        people = int(ctx.data.get("people", 1))
        if number is None or number < 0:
            return retry(_("Please type a number, 0 if none."))
        trial = {**ctx.data, key: number}
        if number > people or not counts_fit(trial):
            return retry(
                ngettext(
                    "That is more than the family's %(count)s person. Please check the number.",
                    "That is more than the family's %(count)s people. Please check the number.",
                    people,
                )
                % {"count": isolate(format_number(people))}
            )
        ctx.data[key] = number
        return next_step(ctx, key)

    return Step(ask, answer, accepts_text=True, numbers_are_answers=True)


async def ask_female(ctx: Ctx) -> None:
    """Whether a woman heads the household."""
    ctx.ask(
        _("Is the family headed by a woman?") + current(ctx, "female"),
        [Button(_("Yes"), "yes"), Button(_("No"), "no")],
        columns=2,
    )


async def on_female(ctx: Ctx) -> Transition:
    """Store yes or no."""
    ctx.data["female"] = ctx.choice == "yes"
    return next_step(ctx, "female")


async def ask_shelter(ctx: Ctx) -> None:
    """Where the family is sheltering."""
    ctx.ask(
        _("Where is the family sheltering?") + current(ctx, "shelter"),
        [Button(_(label), f"shelter:{code}") for code, label in SHELTER_LABELS.items()],
    )


async def on_shelter(ctx: Ctx) -> Transition:
    """Store the shelter category."""
    ctx.data["shelter"] = (ctx.choice or "shelter:other").split(":", 1)[1]
    return next_step(ctx, "shelter")


async def ask_needs(ctx: Ctx) -> None:
    """What the family needs: several, with Done."""
    chosen = ctx.data.get("needs", [])
    buttons = [
        Button(("✅ " if code in chosen else "") + _(label), f"need:{code}")
        for code, label in NEED_BUTTONS.items()
    ]
    buttons.append(Button(_("Done"), "need:done"))
    ctx.ask(
        _("What does the family need? Choose all that apply, then press Done."),
        buttons,
        columns=2,
    )


async def on_needs(ctx: Ctx) -> Transition:
    """Toggle a need, or finish when at least one is chosen."""
    chosen: list[str] = list(ctx.data.get("needs", []))
    if ctx.choice == "need:done":
        if not chosen:
            return retry(_("Please choose at least one need, then press Done."))
        if ctx.data.get("urgent") not in chosen:
            ctx.data.pop("urgent", None)
        if len(chosen) == 1:
            ctx.data["urgent"] = chosen[0]
        return next_step(ctx, "needs")
    code = (ctx.choice or "").removeprefix("need:")
    if code in NEED_LABELS:
        if code in chosen:
            chosen.remove(code)
        else:
            chosen.append(code)
        ctx.data["needs"] = [n for n in NEEDS if n in chosen]  # a stable order
        if ctx.data.get("urgent") not in chosen:  # Back may leave before Done
            ctx.data.pop("urgent", None)
    return goto("needs")


async def ask_urgent(ctx: Ctx) -> None:
    """Which need is the most urgent."""
    ctx.ask(
        _("Which of these is the most urgent?") + current(ctx, "urgent"),
        [Button(_(NEED_BUTTONS[n]), f"urgent:{n}") for n in ctx.data.get("needs", [])],
    )


async def on_urgent(ctx: Ctx) -> Transition:
    """Store the most urgent need."""
    ctx.data["urgent"] = (ctx.choice or "").split(":", 1)[1]
    return next_step(ctx, "urgent")


async def ask_notes(ctx: Ctx) -> None:
    """Anything else: a short text and/or a photo, or Skip."""
    ctx.ask(
        _(
            "Is there anything else we should know? You can write up to 1,000 characters "
            "or send a photo. Please do not send photos that show faces. Or press Skip."
        )
        + current(ctx, "notes"),
        [Button(_("Skip"), "notes:skip")],
    )


async def on_notes(ctx: Ctx) -> Transition:
    """Store the note and the photo's reference."""
    if ctx.choice == "notes:skip":
        ctx.data.setdefault("notes", None)
        return next_step(ctx, "notes")
    photos = [m for m in ctx.inbound.media if m.kind == "photo"]
    text = ctx.text.strip()
    if not photos and (ctx.inbound.media or not text):  # a file, a location, a contact
        return retry(_("Please send a photo or a text, or press Skip."))
    if len(text) > NOTES_LIMIT:
        return retry(too_long(NOTES_LIMIT, ctx.length(text)))
    if photos:
        ctx.data["photo"] = photos[0].ref
    if text or not photos:
        ctx.data["notes"] = text or None
    else:
        ctx.data.setdefault("notes", None)
    return next_step(ctx, "notes")


async def ask_contact(ctx: Ctx) -> None:
    """May a coordinator contact the family?"""
    ctx.ask(
        _("May a coordinator contact you about this report?") + current(ctx, "contact"),
        [Button(_("Yes"), "yes"), Button(_("No"), "no")],
        columns=2,
    )


async def on_contact(ctx: Ctx) -> Transition:
    """Store the answer; without consent no phone number is kept."""
    ctx.data["contact"] = ctx.choice == "yes"
    if not ctx.data["contact"]:
        ctx.data.pop("phone", None)
    return next_step(ctx, "contact")


async def ask_phone(ctx: Ctx) -> None:
    """The phone number: the platform's share button, or typed."""
    ctx.ask(
        _("Which phone number can the coordinator call? Share it with the button, or type it.")
        + current(ctx, "phone"),
        [Button(_("Share my phone number"), SHARE_PHONE)],
    )


def valid_phone(text: str) -> str | None:
    """A phone number in E.164 form, Iraqi numbers also without the country code."""
    cleaned = ascii_digits(text).strip().replace(" ", "").replace("-", "")
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if re.fullmatch(r"964\d{9,10}", cleaned):
        cleaned = "+" + cleaned  # shared contacts come without the +
    try:
        number = phonenumbers.parse(cleaned, "IQ")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def shared_phone(ctx: Ctx) -> str:
    """The number shared (Telegram's button), the chat's own (WhatsApp), or the typed one."""
    if ctx.inbound.phone:
        return ctx.inbound.phone
    if ctx.choice == SHARE_PHONE and ctx.address.phone:
        return ctx.address.phone  # on WhatsApp the chat is the phone number
    return ctx.text


async def on_phone(ctx: Ctx) -> Transition:
    """Store a valid number."""
    phone = valid_phone(shared_phone(ctx))
    if phone is None:
        return retry(
            _("That does not look like a phone number. Please type it like 0770 123 4567.")
        )
    ctx.data["phone"] = phone
    return next_step(ctx, "phone")


EDITABLE = (
    ("gov", N_("Governorate")),
    ("district", N_("District")),
    ("place", N_("Place")),
    ("origin", N_("Displaced from")),
    ("when", N_("When")),
    ("people", N_("People")),
    ("children", N_("Children under 5")),
    ("elderly", N_("People over 60")),
    ("disabled", N_("People with disabilities")),
    ("pregnant", N_("Pregnant or breastfeeding women")),
    ("female", N_("Headed by a woman")),
    ("shelter", N_("Shelter")),
    ("needs", N_("Needs")),
    ("urgent", N_("Most urgent")),
    ("notes", N_("Anything else")),
    ("contact", N_("May we contact you")),
    ("phone", N_("Phone")),
)


def summary_lines(data: dict[str, Any]) -> str:
    """Every answer, one per line, in the current locale."""
    lines = []
    for step, label in EDITABLE:
        if not applies(data, step) and step != "urgent":
            continue
        if step == "precision" or (step == "urgent" and not data.get("urgent")):
            continue
        lines.append(f"• {_(label)}: {describe(data, step)}")
        if step == "place" and data.get("lat") is not None:
            lines.append(f"• {location_label()}: {describe(data, 'precision')}")
    return "\n".join(lines)


def location_label() -> str:
    """The summary's label for a shared location."""
    return _("Location")


async def ask_summary(ctx: Ctx) -> None:
    """The answers to check, with Edit for each and Send."""
    ctx.data["editing"] = True
    buttons = [Button(_("Send the report"), "r:send")]
    buttons += [
        Button(_("Edit: %(item)s") % {"item": _(label)}, f"edit:{step}")
        for step, label in EDITABLE
        if applies(ctx.data, step)
    ]
    ctx.say(
        _("Please check your answers:")
        + "\n\n"
        + summary_lines(ctx.data)
        + "\n\n"
        + _("Press \u201cSend the report\u201d if they are right, or edit any of them."),
        title=_("Your report"),
        buttons=[[buttons[0]], *options_row(buttons[1:], 2), nav_buttons(MENU)],
    )


async def on_summary(ctx: Ctx) -> Transition:
    """Edit one answer, or send the report."""
    if ctx.choice and ctx.choice.startswith("edit:"):
        return goto(ctx.choice[5:])
    if ctx.choice != "r:send":
        return retry()
    unanswered = next_step(ctx, "consent")
    if unanswered.target != "summary":  # Back out of an edit can leave a question unanswered
        ctx.say(answer_first())
        return unanswered
    if await reports_today(ctx) >= ctx.settings.reports_per_day:
        return goto("limit")
    report = await store(ctx)
    ctx.data.clear()
    ctx.say(
        _(
            "Thank you. Your report was sent to the Initiative's coordinators.\n\n"
            "Its reference is %(reference)s. Keep it: you can follow your report under "
            "\u201cMy reports\u201d in the menu, and we will tell you when its status changes."
        )
        % {"reference": isolate(report.reference)}
    )
    return to_menu()


def answer_first() -> str:
    """What Send or Confirm says when a question has no answer."""
    return _("Please answer this question first.")


def limit_text(ctx: Ctx) -> str:
    """The answer when today's reports are used up."""
    return ngettext(
        "You have already sent %(count)s report today, the most we can take from one person "
        "in a day. Please try again tomorrow.",
        "You have already sent %(count)s reports today, the most we can take from one person "
        "in a day. Please try again tomorrow.",
        ctx.settings.reports_per_day,
    ) % {"count": isolate(format_number(ctx.settings.reports_per_day))}


URGENT_LIMIT = 1000  # characters of a message to the coordinators


async def ask_limit(ctx: Ctx) -> None:
    """Today's reports are used up: a way to reach the coordinators all the same."""
    parts = [limit_text(ctx)]
    if ctx.settings.urgent_contact:
        parts.append(
            _("If it is urgent, call: %(contact)s")
            % {"contact": isolate(ctx.settings.urgent_contact)}
        )
    parts.append(
        _(
            "If it is urgent, you can also write here, in one message, what is urgent and how "
            "to reach you: it goes to the Initiative's coordinators at once."
        )
    )
    ctx.ask("\n\n".join(parts), nav_buttons(MENU), nav=False)


async def on_limit(ctx: Ctx) -> Transition:
    """Pass one message a day to the coordinators."""
    if len(ctx.text) > URGENT_LIMIT:
        return retry(too_long(URGENT_LIMIT, ctx.length(ctx.text)))
    key = crypto.keyed_hash(f"urgent {ctx.address}")
    since = ctx.now - timedelta(days=1)
    sent = await ctx.session.scalar(
        select(func.count(ReportMark.id)).where(ReportMark.key == key, ReportMark.at >= since)
    )
    if sent:
        ctx.say(
            _(
                "You have already written to the coordinators today; they have your message. "
                "Please try again tomorrow."
            )
        )
        return to_menu()
    ctx.session.add(ReportMark(key=key, at=ctx.now))
    for address, locale in await ctx.coordinators():
        with use_locale(locale):
            ctx.extra.append(
                Outbound(
                    address=address,
                    text=direct(
                        _(
                            "Urgent message from %(address)s, who has sent today's reports "
                            "already:\n%(text)s"
                        )
                        % {"address": isolate(str(ctx.address)), "text": ctx.text}
                    ),
                    priority="notice",
                    about=ctx.contact.id,
                )
            )
    ctx.say(_("Thank you. Your message was passed to the coordinators."))
    return to_menu()


async def reports_today(ctx: Ctx) -> int:
    """How many reports this address sent in the last 24 hours, by the marks their reports left
    (bot.models.ReportMark): they outlive "Delete my data", so that deleting does not reset it."""
    since = ctx.now - timedelta(days=1)
    return int(
        await ctx.session.scalar(
            select(func.count(ReportMark.id)).where(
                ReportMark.key == crypto.keyed_hash(str(ctx.address)), ReportMark.at >= since
            )
        )
        or 0
    )


async def new_reference(ctx: Ctx) -> str:
    """A reference like R-7K3M9 that no report has yet."""
    while True:
        code = "R-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(5))
        taken = await ctx.session.scalar(select(Report.id).where(Report.reference == code))
        if taken is None:
            return code


async def store(ctx: Ctx) -> Report:
    """Save the report, flag a probable duplicate, and alert the coordinators where needed."""
    data = ctx.data
    lat, lon = data.get("lat"), data.get("lon")
    exact = data.get("precision") == "exact" and lat is not None
    report = Report(
        reference=await new_reference(ctx),
        contact_id=ctx.contact.id,
        locale=ctx.locale,
        created_at=ctx.now,
        updated_at=ctx.now,
        governorate=data["gov"],
        district=data.get("district"),
        place=data.get("place") or None,
        latitude=round(float(lat), 2) if lat is not None else None,
        longitude=round(float(lon), 2) if lon is not None else None,
        exact_point=(
            f"{float(lat):.6f},{float(lon):.6f}"
            if exact and lat is not None and lon is not None
            else None
        ),
        origin=data.get("origin"),
        displaced=data.get("when"),
        people=int(data["people"]),
        children=int(data.get("children", 0)),
        elderly=int(data.get("elderly", 0)),
        disabled=int(data.get("disabled", 0)),
        pregnant=int(data.get("pregnant", 0)),
        female_headed=bool(data.get("female")),
        shelter=str(data.get("shelter", "other")),
        needs=list(data.get("needs", [])),
        urgent=str(data.get("urgent") or data["needs"][0]),
        notes=data.get("notes") or None,
        photo=data.get("photo") or None,
        contact_ok=bool(data.get("contact")),
        phone=data.get("phone") if data.get("contact") else None,
    )
    report.duplicate_of = await probable_duplicate(ctx, report)
    ctx.session.add(report)
    ctx.session.add(ReportMark(key=crypto.keyed_hash(str(ctx.address)), at=ctx.now))
    await ctx.session.flush()
    alert = set(report.needs) & ctx.settings.report_alert_needs
    if alert or report.duplicate_of is not None:
        await notify_coordinators(ctx, report)
    return report


async def probable_duplicate(ctx: Ctx, report: Report) -> int | None:
    """An earlier report from the same contact or phone, same district and size, within 7 days."""
    since = ctx.now - DUPLICATE_WINDOW
    same_person = [Report.contact_id == ctx.contact.id]
    candidates = await ctx.session.scalars(
        select(Report)
        .where(
            Report.created_at >= since,
            Report.governorate == report.governorate,
            Report.district.is_(None)
            if report.district is None
            else Report.district == report.district,
            Report.people == report.people,
            or_(*same_person, Report.phone.is_not(None)),
        )
        .order_by(Report.id)
    )
    for earlier in candidates:
        if earlier.contact_id == ctx.contact.id or (
            report.phone and earlier.phone == report.phone
        ):
            return earlier.id
    return None


async def notify_coordinators(ctx: Ctx, report: Report) -> None:
    """Tell every coordinator, each in their language, with a button to open the report."""
    for address, locale in await ctx.coordinators():
        with use_locale(locale):
            ctx.extra.append(coordinator_alert(address, report))


def coordinator_alert(address: Address, report: Report) -> Outbound:
    """A new report's notice for one coordinator, in the current locale."""
    lines = [
        _("New report %(reference)s") % {"reference": isolate(report.reference)},
        f"{place_name(report.governorate)} · {place_name(report.district)}",
        ngettext("%(count)s person", "%(count)s people", report.people)
        % {"count": isolate(format_number(report.people))},
        _("Needs: %(needs)s") % {"needs": describe({"needs": report.needs}, "needs")},
    ]
    if report.duplicate_of is not None:
        lines.append(_("Probably a duplicate of an earlier report."))
    return Outbound(
        address=address,
        text=direct("\n".join(lines)),
        buttons=((Button(_("Open the report"), f"rep:open:{report.reference}"),),),
        priority="notice",
        about=report.contact_id,
    )


FLOW = Flow(
    "report",
    {
        "consent": Step(ask_consent, on_consent),
        "gov": Step(ask_gov, on_gov, accepts_text=True),
        "district": Step(ask_district, on_district, accepts_text=True),
        "place": Step(ask_place, on_place, accepts_text=True, accepts_media=True),
        "precision": Step(ask_precision, on_precision),
        "origin": Step(ask_origin, on_origin, accepts_text=True),
        "when": Step(ask_when, on_when, accepts_text=True),
        "people": Step(ask_people, on_people, accepts_text=True, numbers_are_answers=True),
        **{key: count_step(key) for key in COUNTS},
        "female": Step(ask_female, on_female),
        "shelter": Step(ask_shelter, on_shelter),
        "needs": Step(ask_needs, on_needs),
        "urgent": Step(ask_urgent, on_urgent),
        "notes": Step(ask_notes, on_notes, accepts_text=True, accepts_media=True),
        "contact": Step(ask_contact, on_contact),
        "phone": Step(
            ask_phone, on_phone, accepts_text=True, accepts_media=True, numbers_are_answers=True
        ),
        "summary": Step(ask_summary, on_summary),
        "limit": Step(ask_limit, on_limit, accepts_text=True),
    },
)


async def ask_mine(ctx: Ctx) -> None:
    """The person's reports, newest first, with their status."""
    reports = (
        await ctx.session.scalars(
            select(Report)
            .where(Report.contact_id == ctx.contact.id)
            .order_by(Report.id.desc())
            .limit(20)
        )
    ).all()
    if not reports:
        text = _("You have not sent a report yet.")
    else:
        zone = ctx.settings.timezone
        text = "\n".join(
            f"• {isolate(r.reference)} · {isolate(format_date(r.created_at, zone))} · "
            f"{place_name(r.governorate)} · {_(MY_STATUS_LABELS.get(r.status, 'Received'))}"
            for r in reports
        )
    ctx.say(text, title=_("My reports"), buttons=[nav_buttons(MENU)])


MINE = Flow("myreports", {"list": Step(ask_mine)})


def status_notice(
    report: Report, address: Address, locale: str, note: str | None = None
) -> Outbound:
    """Tell a reporter, in their language, that their report's status changed; with the
    coordinator's note when the coordinator chose to send it."""
    with use_locale(locale):
        notice = STATUS_NOTICES.get(report.status, STATUS_NOTICES["new"])
        text = _(notice) % {"reference": isolate(report.reference)}
        if note:
            text += "\n\n" + _("A note from the coordinator: %(note)s") % {"note": note}
        return Outbound(address=address, text=direct(text), priority="notice")
