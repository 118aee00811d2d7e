"""Reporting a displaced family: one question at a time, a summary to check, then Send.

Nothing is stored as a report until Send; the answers so far live in the conversation (written
through at each message), so a restart or a detour loses none of them. The rules (the daily
limit, references, duplicates, alerts) are bot.reports'.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot import gazetteer, reports, when
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
from bot.forms import (
    Form,
    Question,
    Summary,
    choice,
    chosen_number,
    coded_buttons,
    governorate,
    multi,
    number_buttons,
    phone,
    pick_place,
    yes_no,
)
from bot.i18n import N_, _, current_locale, format_date, format_number, isolate, ngettext
from bot.messages import SHARE_LOCATION, Button
from bot.models import Report
from bot.reports import (
    MY_STATUS_LABELS,
    NEED_BUTTONS,
    NEED_LABELS,
    SHELTER_LABELS,
    WHEN_LABELS,
    place_name,
)

PLACE_LIMIT = 200
NOTES_LIMIT = 1000
MAX_PEOPLE = 30
COUNTS: dict[str, tuple[str, str]] = {
    "children": (N_("How many of them are children under 5?"), N_("Children under 5")),
    "elderly": (N_("How many of them are over 60?"), N_("People over 60")),
    "disabled": (N_("How many of them live with a disability?"), N_("People with disabilities")),
    "pregnant": (
        N_("How many women are pregnant or breastfeeding?"),
        N_("Pregnant or breastfeeding women"),
    ),
}


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


async def on_consent(ctx: Ctx) -> Transition | None:
    """Agree: go on (unless today's reports are used up). Decline: nothing is kept."""
    if ctx.choice != "r:agree":
        ctx.data.clear()
        ctx.say(_("Thank you. Nothing was stored."))
        return to_menu()
    if await reports.limit_reached(ctx.session, ctx.settings, ctx.address, ctx.now):
        return goto("limit")
    ctx.data["consent"] = True
    return None


def new_governorate(ctx: Ctx, pcode: str) -> None:
    """Another governorate: its district is asked again."""
    if ctx.data.get("gov") != pcode:
        ctx.data.pop("district", None)


def district_buttons(ctx: Ctx) -> list[Button]:
    """The districts of the governorate chosen, and "I do not know"."""
    districts = gazetteer.districts_of(str(ctx.data.get("gov")))
    buttons = [Button(p.name(current_locale()), f"dist:{p.pcode}") for p in districts]
    return [*buttons, Button(_("I do not know"), "dist:unknown")]


async def on_district(ctx: Ctx) -> Transition | None:
    """Store the district, or that the family does not know it."""
    if ctx.choice == "dist:unknown":
        ctx.data["district"] = None
        return None
    pcode = pick_place(ctx, "dist", gazetteer.districts_of(str(ctx.data.get("gov"))))
    if pcode is None:
        return retry(_("Please choose the district from the list, or \u201cI do not know\u201d."))
    ctx.data["district"] = pcode
    return None


async def on_place(ctx: Ctx) -> Transition | None:
    """Store the place name or the shared point (rounded unless the family agrees)."""
    location = ctx.inbound.location
    if location is not None:
        if not (-90 <= location.latitude <= 90 and -180 <= location.longitude <= 180):
            return retry()
        ctx.data["lat"], ctx.data["lon"] = location.latitude, location.longitude
        ctx.data.pop("precision", None)
        return None
    if ctx.choice == "place:skip":
        ctx.data["place"] = None
        return None
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
    return None


def describe_place(data: dict[str, Any]) -> str:
    """The place typed and whether a location was shared."""
    parts = []
    if data.get("place"):
        parts.append(isolate(str(data["place"])))  # typed: "12 Sharya Camp" keeps its order
    if data.get("lat") is not None:
        parts.append(_("location shared"))
    return " · ".join(parts) or _("Not given")


def place_columns(data: dict[str, Any]) -> dict[str, Any]:
    """The place, the rounded point, and the exact one only where the family agreed."""
    lat, lon = data.get("lat"), data.get("lon")
    exact = data.get("precision") == "exact"
    return {
        "place": data.get("place") or None,
        "latitude": round(float(lat), 2) if lat is not None else None,
        "longitude": round(float(lon), 2) if lon is not None else None,
        "exact_point": (
            f"{float(lat):.6f},{float(lon):.6f}"
            if exact and lat is not None and lon is not None
            else None
        ),
    }


def place_answers(row: Report) -> dict[str, Any]:
    """The place and the point a stored report holds: the exact one where the family agreed."""
    data: dict[str, Any] = {"place": row.place}
    if row.latitude is not None:
        exact = row.exact_point.split(",") if row.exact_point else None
        data["lat"], data["lon"] = (
            (float(exact[0]), float(exact[1])) if exact else (row.latitude, row.longitude)
        )
        data["precision"] = "exact" if exact else "area"
    return data


async def on_precision(ctx: Ctx) -> Transition | None:
    """Store the choice."""
    ctx.data["precision"] = "exact" if ctx.choice == "prec:exact" else "area"
    if ctx.data["precision"] == "area":
        # Only the area is kept from now on, in the conversation too: the exact point is not
        # held anywhere once the family chose not to share it.
        for key in ("lat", "lon"):
            if ctx.data.get(key) is not None:
                ctx.data[key] = round(float(ctx.data[key]), 2)
    return None


async def on_when(ctx: Ctx) -> Transition | None:
    """Store the period or the month."""
    if ctx.choice and ctx.choice.startswith("when:"):
        ctx.data["when"] = ctx.choice[5:]
        return None
    month = when.parse_month(ctx.text, ctx.now)
    if month is None:
        return retry(
            _("Please choose one of the answers, or type a past month and year, like 3/2024.")
        )
    ctx.data["when"] = month
    return None


async def on_people(ctx: Ctx) -> Transition | None:
    """Store the household size; counts that no longer fit are asked again."""
    number = chosen_number(ctx)
    if number is None or not 1 <= number <= MAX_PEOPLE:
        return retry(_("Please type a number from 1 to 30."))
    ctx.data["people"] = number
    if not counts_fit(ctx.data):
        for key in COUNTS:
            ctx.data.pop(key, None)
    return None


def counts_fit(data: dict[str, Any]) -> bool:
    """Whether the counts fit in the household (children and elders are separate people)."""
    people = int(data.get("people", 0))
    counts = {key: int(data.get(key, 0)) for key in COUNTS}
    return all(v <= people for v in counts.values()) and (
        counts["children"] + counts["elderly"] <= people
    )


def count(value: Any) -> str:
    """A number of people as the summary shows it."""
    return format_number(int(value or 0))


def count_question(key: str) -> Question:
    """How many of the family are of one group."""

    async def answer(ctx: Ctx) -> Transition | None:
        number = chosen_number(ctx)
        people = int(ctx.data.get("people", 1))
        if number is None or number < 0:
            return retry(_("Please type a number, 0 if none."))
        if number > people or not counts_fit({**ctx.data, key: number}):
            return retry(
                ngettext(
                    "That is more than the family's %(count)s person. Please check the number.",
                    "That is more than the family's %(count)s people. Please check the number.",
                    people,
                )
                % {"count": isolate(format_number(people))}
            )
        ctx.data[key] = number
        return None

    return Question(
        key,
        answer,
        prompt=COUNTS[key][0],
        options=lambda ctx: number_buttons(range(min(int(ctx.data.get("people", 1)), 5) + 1)),
        columns=6,
        label=COUNTS[key][1],
        describe=lambda data: count(data.get(key)),
        column=key,
        to_model=lambda data: {key: int(data.get(key, 0))},
        accepts_text=True,
        numbers_are_answers=True,
    )


def urgent_of_needs(ctx: Ctx, done: bool) -> None:
    """The most urgent need is one of the needs; with one need, it is that one."""
    chosen = ctx.data.get("needs", [])
    if ctx.data.get("urgent") not in chosen:  # Back may leave before Done
        ctx.data.pop("urgent", None)
    if done and len(chosen) == 1:
        ctx.data["urgent"] = chosen[0]


async def on_urgent(ctx: Ctx) -> Transition | None:
    """Store the most urgent need."""
    ctx.data["urgent"] = (ctx.choice or "").split(":", 1)[1]
    return None


async def on_notes(ctx: Ctx) -> Transition | None:
    """Store the note and the photo's reference."""
    if ctx.choice == "notes:skip":
        ctx.data.setdefault("notes", None)
        return None
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
    return None


def describe_notes(data: dict[str, Any]) -> str:
    """The note and whether a photo came with it."""
    parts = [isolate(str(data["notes"]))] if data.get("notes") else []
    if data.get("photo"):
        parts.append(_("a photo"))
    return " · ".join(parts) or _("Nothing")


def no_contact_no_phone(ctx: Ctx, agreed: bool) -> None:
    """Without consent no phone number is kept."""
    if not agreed:
        ctx.data.pop("phone", None)
        ctx.data.pop("share", None)


async def sent(ctx: Ctx, values: dict[str, Any]) -> Transition:
    """Send: store the report (unless today's reports are used up) and give its reference."""
    if await reports.limit_reached(ctx.session, ctx.settings, ctx.address, ctx.now):
        return goto("limit")
    report, alerts = await reports.store(
        ctx.session,
        ctx.settings,
        ctx.contact,
        ctx.address,
        values,
        locale=ctx.locale,
        now=ctx.now,
    )
    ctx.extra += alerts
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


async def ask_limit(ctx: Ctx) -> None:
    """Today's reports are used up: a way to reach the coordinators all the same."""
    parts = [reports.limit_text(ctx.settings)]
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
    if len(ctx.text) > reports.URGENT_LIMIT:
        return retry(too_long(reports.URGENT_LIMIT, ctx.length(ctx.text)))
    notices = await reports.pass_urgent(
        ctx.session, ctx.settings, ctx.contact, ctx.address, ctx.text, ctx.now
    )
    if notices is None:
        ctx.say(
            _(
                "You have already written to the coordinators today; they have your message. "
                "Please try again tomorrow."
            )
        )
        return to_menu()
    ctx.extra += notices
    ctx.say(_("Thank you. Your message was passed to the coordinators."))
    return to_menu()


FORM = Form(
    "report",
    [
        Question("consent", on_consent, ask=ask_consent),
        governorate(
            "gov",
            N_("In which governorate is the family staying now?"),
            prefix="gov",
            then=new_governorate,
            show=place_name,
            label=N_("Governorate"),
            column="governorate",
        ),
        Question(
            "district",
            on_district,
            prompt=N_("In which district?"),
            options=district_buttons,
            columns=2,
            label=N_("District"),
            show=place_name,
            column="district",
            accepts_text=True,
        ),
        Question(
            "place",
            on_place,
            prompt=N_(
                "What is the name of the camp, neighbourhood or village? Type it, or share your "
                "location. You may also skip this question."
            ),
            options=lambda ctx: [
                Button(_("Share my location"), SHARE_LOCATION),
                Button(_("Skip"), "place:skip"),
            ],
            label=N_("Place"),
            answered=lambda data: "place" in data or data.get("lat") is not None,
            describe=describe_place,
            to_model=place_columns,
            from_model=place_answers,
            accepts_text=True,
            accepts_media=True,
        ),
        Question(
            "precision",
            on_precision,
            prompt=N_(
                "Thank you. Shall we keep only the area (about 1 km around the point), or the "
                "exact point? The area is safer; the exact point helps relief teams find you."
            ),
            options=lambda ctx: [
                Button(_("Only the area"), "prec:area"),
                Button(_("The exact point"), "prec:exact"),
            ],
            recall=False,
            label=N_("Location"),
            edit=False,  # shared again under Place
            applies=lambda data: data.get("lat") is not None,
            show=lambda value: (
                _("The exact point") if value == "exact" else _("Only the area (about 1 km)")
            ),
        ),
        governorate(
            "origin",
            N_("From which governorate was the family displaced?"),
            prefix="orig",
            show=place_name,
            label=N_("Displaced from"),
            column="origin",
        ),
        Question(
            "when",
            on_when,
            prompt=N_(
                "When was the family displaced? Choose, or type the month and year, for "
                "example 3/2024."
            ),
            options=coded_buttons(WHEN_LABELS, "when"),
            label=N_("When"),
            show=reports.when_text,
            column="displaced",
            accepts_text=True,
        ),
        Question(
            "people",
            on_people,
            prompt=N_(
                "How many people are in the family, including you? Type a number from 1 to 30."
            ),
            options=lambda ctx: number_buttons(range(1, 11)),
            columns=5,
            label=N_("People"),
            describe=lambda data: count(data.get("people")),
            column="people",
            to_model=lambda data: {"people": int(data["people"])},
            accepts_text=True,
            numbers_are_answers=True,
        ),
        *(count_question(key) for key in COUNTS),
        yes_no(
            "female",
            N_("Is the family headed by a woman?"),
            label=N_("Headed by a woman"),
            column="female_headed",
            to_model=lambda data: {"female_headed": bool(data.get("female"))},
        ),
        choice(
            "shelter",
            N_("Where is the family sheltering?"),
            SHELTER_LABELS,
            prefix="shelter",
            label=N_("Shelter"),
            column="shelter",
            to_model=lambda data: {"shelter": str(data.get("shelter", "other"))},
        ),
        multi(
            "needs",
            N_("What does the family need? Choose all that apply, then press Done."),
            NEED_LABELS,
            prefix="need",
            at_least_one=N_("Please choose at least one need, then press Done."),
            buttons=NEED_BUTTONS,
            then=urgent_of_needs,
            label=N_("Needs"),
            show=reports.needs_text,
        ),
        Question(
            "urgent",
            on_urgent,
            prompt=N_("Which of these is the most urgent?"),
            options=lambda ctx: [
                Button(_(NEED_BUTTONS[n]), f"urgent:{n}") for n in ctx.data.get("needs", [])
            ],
            label=N_("Most urgent"),
            column="urgent",
            applies=lambda data: len(data.get("needs", [])) > 1,
            in_summary=lambda data: bool(data.get("urgent")),
            show=reports.need_text,
            to_model=lambda data: {"urgent": str(data.get("urgent") or data["needs"][0])},
        ),
        Question(
            "notes",
            on_notes,
            prompt=N_(
                "Is there anything else we should know? You can write up to 1,000 characters "
                "or send a photo. Please do not send photos that show faces. Or press Skip."
            ),
            options=lambda ctx: [Button(_("Skip"), "notes:skip")],
            label=N_("Anything else"),
            answered=lambda data: "notes" in data or "photo" in data,
            describe=describe_notes,
            to_model=lambda data: {
                "notes": data.get("notes") or None,
                "photo": data.get("photo") or None,
            },
            from_model=lambda row: (
                {"notes": row.notes} | ({"photo": row.photo} if row.photo else {})
            ),
            accepts_text=True,
            accepts_media=True,
        ),
        yes_no(
            "contact",
            N_("May a coordinator contact you about this report?"),
            then=no_contact_no_phone,
            label=N_("May we contact you"),
            column="contact_ok",
            to_model=lambda data: {"contact_ok": bool(data.get("contact"))},
        ),
        phone(
            "phone",
            N_(
                "Which phone number can the coordinator call? Share it with the button, or "
                "type it."
            ),
            label=N_("Phone"),
            applies=lambda data: data.get("contact") is True,
            column="phone",
            to_model=lambda data: {"phone": data.get("phone") if data.get("contact") else None},
        ),
        yes_no(
            "share",
            N_("May we give your number to a relief organization that can help you?"),
            label=N_("Number may go to a relief organization"),
            applies=lambda data: data.get("contact") is True,
            column="share_phone",
            to_model=lambda data: {"share_phone": bool(data.get("contact") and data.get("share"))},
        ),
    ],
    Summary(
        title=N_("Your report"),
        intro=N_("Please check your answers:"),
        outro=N_("Press \u201cSend the report\u201d if they are right, or edit any of them."),
        confirm=N_("Send the report"),
        payload="r:send",
        done=sent,
    ),
    recall=True,
    steps={"limit": Step(ask_limit, on_limit, accepts_text=True)},
)
FLOW = FORM.flow()


async def ask_mine(ctx: Ctx) -> None:
    """The person's reports, newest first, with their status."""
    mine = (
        await ctx.session.scalars(
            select(Report)
            .where(Report.contact_id == ctx.contact.id)
            .order_by(Report.id.desc())
            .limit(20)
        )
    ).all()
    if not mine:
        text = _("You have not sent a report yet.")
    else:
        zone = ctx.settings.timezone
        text = "\n".join(
            f"• {isolate(r.reference)} · {isolate(format_date(r.created_at, zone))} · "
            f"{place_name(r.governorate)} · {_(MY_STATUS_LABELS.get(r.status, 'Received'))}"
            for r in mine
        )
    ctx.say(text, title=_("My reports"), buttons=[nav_buttons(MENU)])


MINE = Flow("myreports", {"list": Step(ask_mine)})
