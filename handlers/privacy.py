"""A person's own data: "My data" shows all of it; "Delete my data" removes it."""

from __future__ import annotations

from sqlalchemy import select

from bot.flows import MENU, Ctx, Flow, Step, Transition, nav_buttons, start, to_menu
from bot.i18n import LANGUAGE_NAMES, _, format_datetime, isolate, pgettext
from bot.messages import Button
from bot.models import Report
from bot.retention import anonymize_reports
from handlers.report import EDITABLE, STATUS_LABELS, describe


def report_data(report: Report) -> dict[str, object]:
    """A stored report as the answers `describe` knows."""
    return {
        "gov": report.governorate,
        "district": report.district,
        "place": report.place,
        "lat": report.latitude,
        "precision": "exact" if report.exact_point else "area",
        "origin": report.origin,
        "when": report.displaced or "unknown",
        "people": report.people,
        "children": report.children,
        "elderly": report.elderly,
        "disabled": report.disabled,
        "pregnant": report.pregnant,
        "female": report.female_headed,
        "shelter": report.shelter,
        "needs": report.needs,
        "urgent": report.urgent,
        "notes": report.notes,
        "photo": report.photo,
        "contact": report.contact_ok,
        "phone": report.phone or "-",
    }


async def ask_mydata(ctx: Ctx) -> None:
    """Everything stored about this person, in their language."""
    contact = ctx.contact
    zone = ctx.settings.timezone
    lines = [
        _("Your address: %(address)s") % {"address": isolate(str(ctx.address))},
        _("Language: %(language)s") % {"language": LANGUAGE_NAMES.get(contact.locale or "", "-")},
        _("First message: %(when)s")
        % {"when": isolate(format_datetime(contact.first_seen, zone))},
        _("Last message: %(when)s") % {"when": isolate(format_datetime(contact.last_seen, zone))},
    ]
    reports = (
        await ctx.session.scalars(
            select(Report).where(Report.contact_id == contact.id).order_by(Report.id)
        )
    ).all()
    for report in reports:
        data = report_data(report)
        lines.append("")
        lines.append(
            _("Report %(reference)s (%(status)s)")
            % {
                "reference": isolate(report.reference),
                "status": _(STATUS_LABELS.get(report.status, "Received")),
            }
        )
        lines += [f"• {_(label)}: {describe(data, step)}" for step, label in EDITABLE]
    if not reports:
        lines += ["", _("You have not sent a report yet.")]
    ctx.say(
        "\n".join(lines),
        title=_("My data"),
        buttons=[[Button(_("Delete my data"), "mydata:forget")], nav_buttons(MENU)],
    )


async def on_mydata(ctx: Ctx) -> Transition:
    """Go on to deleting."""
    return start("forget")


async def ask_forget(ctx: Ctx) -> None:
    """Ask for confirmation before deleting."""
    ctx.ask(
        _(
            "This deletes everything we hold about you: your language, this conversation, and "
            "the personal details of your reports (place name, location, notes, photo, phone "
            "number). The reports stay only as anonymous numbers for relief planning. This "
            "cannot be undone. Delete?"
        ),
        [
            Button(_("Yes, delete my data"), "forget:yes"),
            Button(pgettext("data", "No, keep it"), "forget:no"),
        ],
        title=_("Delete my data"),
    )


async def on_forget(ctx: Ctx) -> Transition:
    """Delete (the engine removes the contact once this message is handled), or keep."""
    if ctx.choice != "forget:yes":
        ctx.say(_("Nothing was deleted."))
        return to_menu()
    await anonymize_reports(ctx.session, Report.contact_id == ctx.contact.id, ctx.now)
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
