"""A person's own data: "My data" shows all of it; "Delete my data" removes it.

What is shown and what is deleted both follow bot.personal's declaration (bot.privacy): a
column added to a person's tables appears here without editing this file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot.flows import MENU, Ctx, Flow, Step, Transition, nav_buttons, start, to_menu
from bot.forms import Form
from bot.i18n import (
    LANGUAGE_NAMES,
    N_,
    _,
    format_datetime,
    format_number,
    isolate,
    ngettext,
    pgettext,
)
from bot.messages import Button
from bot.models import Report, Signature
from bot.privacy import Holding, holdings
from bot.reports import (
    MY_STATUS_LABELS,
    need_text,
    needs_text,
    place_name,
    places_text,
    shelter_text,
    when_text,
)
from bot.signatures import STATUS_LABELS as SIGNATURE_STATUS
from bot.signatures import type_text
from handlers.report import FORM as REPORT_FORM
from handlers.sign import FORM as SIGN_FORM

# The forms whose answers "My data" names question by question, in progress (by flow) and
# stored (by table): both read the forms' declarations.
FORMS: dict[str, tuple[str, Form]] = {
    "report": (N_("Report a displaced family"), REPORT_FORM),
    "sign": (N_("Sign the declaration"), SIGN_FORM),
}
TABLES: dict[str, Form] = {"reports": REPORT_FORM, "signatures": SIGN_FORM}
MEMBER_ROLES: dict[str, str] = {
    "representative": N_("Representative"),
    "colleague": N_("Colleague"),
}


def _yes_no(value: Any) -> str:
    return _("Yes") if value else _("No")


def _labelled(labels: dict[str, str], fallback: str) -> Callable[[Any], str]:
    return lambda value: _(labels.get(str(value), fallback))


def _answers(flow: str, data: Any) -> str:
    """Answers given so far in a form, named as its summary names them."""
    if not isinstance(data, dict):
        return "-"
    form = FORMS[flow][1] if flow in FORMS else None
    parts = [f"{label}: {words}" for label, words in (form.listing(data) if form else [])]
    return "; ".join(parts) or "-"


def formatters(ctx: Ctx) -> dict[str, Callable[[Any], str]]:
    """How each kind of value (bot.personal.KINDS) reads in "My data", in the current locale."""
    zone = ctx.settings.timezone
    return {
        "text": lambda v: str(v),
        "address": lambda v: isolate(str(v)),
        "datetime": lambda v: isolate(format_datetime(v, zone)),
        "bool": _yes_no,
        "language": lambda v: LANGUAGE_NAMES.get(str(v), "-"),
        "place": place_name,
        "places": places_text,
        "count": lambda v: isolate(format_number(int(v))),
        "needs": needs_text,
        "need": lambda v: need_text(v) or "-",
        "shelter": shelter_text,
        "when": when_text,
        "point": lambda v: isolate(f"{float(v):.2f}"),
        "report_status": _labelled(MY_STATUS_LABELS, "Received"),
        "org_type": type_text,
        "signature_status": _labelled(SIGNATURE_STATUS, "Pending verification"),
        "photo": lambda v: _("a photo"),
        "conversation": lambda v: _answers("", v),
        "member_role": _labelled(MEMBER_ROLES, "Colleague"),
    }


def holding_lines(holding: Holding, show: dict[str, Callable[[Any], str]]) -> list[str]:
    """One line per label (values under one label joined: a point's two coordinates); a column
    that a form's question fills reads as that question says it."""
    by_column = TABLES[holding.table].shows() if holding.table in TABLES else {}
    joined: dict[str, list[str]] = {}
    for column, label, kind, value in holding.values:
        if value is None or value == "" or value == [] or value == {}:
            continue
        joined.setdefault(label, []).append(by_column.get(column, show[kind])(value))
    return [f"• {_(label)}: {', '.join(values)}" for label, values in joined.items()]


async def ask_mydata(ctx: Ctx) -> None:
    """Everything stored about this person, in their language."""
    show = formatters(ctx)
    lines: list[str] = []
    held = await holdings(ctx.session, ctx.contact)
    for holding in held:
        if holding.table == "contacts":
            lines += holding_lines(holding, show)
        elif holding.table == "conversations":
            flow = str(holding.values[0][3])
            title = FORMS.get(flow, (None,))[0]
            lines += [
                "",
                _("A conversation in progress: %(flow)s") % {"flow": _(title) if title else "-"},
            ]
            in_flow: dict[str, Callable[[Any], str]] = {
                **show,
                "conversation": functools.partial(_answers, flow),
            }
            lines += holding_lines(holding, in_flow)[1:]  # its flow is named just above
        elif holding.table == "reports":
            lines += ["", _("Report %(reference)s") % {"reference": isolate(holding.heading)}]
            lines += holding_lines(holding, show)
        elif holding.table == "report_messages":
            lines += [
                "",
                _("A message about report %(reference)s")
                % {"reference": isolate(holding.heading)},
            ]
            lines += holding_lines(holding, show)
        elif holding.table == "referrals":
            lines += [
                "",
                _("Report %(reference)s, passed to a relief organization")
                % {"reference": isolate(holding.heading)},
            ]
            lines += holding_lines(holding, show)
        elif holding.table == "signatures":
            lines += ["", _("Signature %(receipt)s") % {"receipt": isolate(holding.heading)}]
            lines += holding_lines(holding, show)
        elif holding.table == "organization_members":
            lines += [
                "",
                _("Organization: %(name)s") % {"name": isolate(holding.heading or "-")},
            ]
            lines += holding_lines(holding, show)
        elif holding.table == "outbox":
            count = sum(int(n) for _column, _status, _kind, n in holding.values)
            lines += [
                "",
                ngettext(
                    "%(count)s message to you is in our records. Its text is deleted once it "
                    "is sent, and the record after 14 days.",
                    "%(count)s messages to you are in our records. Their text is deleted once "
                    "they are sent, and the records after 14 days.",
                    count,
                )
                % {"count": isolate(format_number(count))},
            ]
    if not any(h.table == "reports" for h in held):
        lines += ["", _("You have not sent a report yet.")]
    ctx.say(
        "\n".join(lines).strip(),
        title=_("My data"),
        buttons=[[Button(_("Delete my data"), "mydata:forget")], nav_buttons(MENU)],
    )


async def on_mydata(ctx: Ctx) -> Transition:
    """Go on to deleting."""
    return start("forget")


async def ask_forget(ctx: Ctx) -> None:
    """Say precisely what deleting will do, for this person, and ask to confirm."""
    reports = len(
        (
            await ctx.session.scalars(select(Report.id).where(Report.contact_id == ctx.contact.id))
        ).all()
    )
    statuses = list(
        await ctx.session.scalars(
            select(Signature.status).where(Signature.contact_id == ctx.contact.id)
        )
    )
    parts = [
        _(
            "This deletes everything we hold about you: your address and language, your "
            "bulletin subscription, this conversation and the messages to you."
        )
    ]
    if reports:
        parts.append(
            ngettext(
                "Your %(count)s report stays only as anonymous numbers for relief planning: "
                "its place, location, notes, photo and phone number are deleted, and so are "
                "the coordinators' notes about it.",
                "Your %(count)s reports stay only as anonymous numbers for relief planning: "
                "their place, location, notes, photo and phone number are deleted, and so are "
                "the coordinators' notes about them.",
                reports,
            )
            % {"count": isolate(format_number(reports))}
        )
        parts.append(
            _(
                "For one day we keep only a coded mark of your address, so that the daily "
                "limit of reports still holds; it cannot be turned back into your address."
            )
        )
    if "verified" in statuses:
        parts.append(
            _(
                "Your organization's verified signature stays, as the organization's: your "
                "name, role, phone and email are deleted from it."
            )
        )
    if "pending" in statuses:
        parts.append(
            _(
                "Your organization's signature that is waiting for verification is withdrawn, "
                "and your details are deleted from it."
            )
        )
    parts.append(_("This cannot be undone. Delete?"))
    ctx.ask(
        "\n\n".join(parts),
        [
            Button(_("Yes, delete my data"), "forget:yes"),
            Button(pgettext("data", "No, keep it"), "forget:no"),
        ],
        title=_("Delete my data"),
    )


async def on_forget(ctx: Ctx) -> Transition:
    """Delete (the engine forgets the person once this message is handled), or keep."""
    if ctx.choice != "forget:yes":
        ctx.say(_("Nothing was deleted."))
        return to_menu()
    ctx.forget = True
    ctx.say(
        _(
            "Your data has been deleted. Thank you for trusting us. If you write again, "
            "we will start afresh."
        )
    )
    return to_menu()


MYDATA = Flow("mydata", {"show": Step(ask_mydata, on_mydata)})
FORGET = Flow("forget", {"confirm": Step(ask_forget, on_forget)})
