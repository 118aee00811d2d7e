"""Coordinators' tools for reports: the list with filters, one report, status changes.

Only addresses in COORDINATORS see any of this; to anyone else these commands and buttons are
unknown input. Every view and change of a report is written to the audit log.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select

from bot import exports, gazetteer, referrals, reports
from bot.config import NEEDS, PROJECT_DIR
from bot.flows import (
    MENU,
    Action,
    Ctx,
    Flow,
    Step,
    Transition,
    goto,
    nav_buttons,
    note_step,
    retry,
    start,
    to_menu,
)
from bot.forms import governorate_buttons
from bot.i18n import N_, _, direct, format_datetime, format_number, isolate, ngettext
from bot.messages import Button, Outbound
from bot.models import AuditEntry, Report
from bot.reports import (
    NEED_BUTTONS,
    NEED_LABELS,
    STATUS_LABELS,
    need_text,
    needs_text,
    place_name,
    shelter_text,
    when_text,
)

if TYPE_CHECKING:
    from bot.db import Database

PAGE = 8


def audit(ctx: Ctx, action: str, report: Report | None = None, **detail: Any) -> None:
    """Write who did what, now, in this transaction."""
    ctx.session.add(
        AuditEntry(
            at=ctx.now,
            actor=str(ctx.address),
            action=action,
            report_id=report.id if report else None,
            detail=detail,
        )
    )


def parse_filters(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Filters typed after /reports: a governorate (code or name), a status, a need; and the
    words that are none of these."""
    filters: dict[str, str] = {}
    unknown: list[str] = []
    for arg in args:
        word = arg.strip()
        found = gazetteer.place(word) or gazetteer.find(word, gazetteer.GOVERNORATES)
        if found is not None and found.parent is None:
            filters["gov"] = found.pcode
        elif word.lower() in STATUS_LABELS:
            filters["status"] = word.lower()
        elif word.lower() in NEEDS:
            filters["need"] = word.lower()
        elif word:
            unknown.append(word[:40])
    return filters, unknown


def filtered(filters: dict[str, str]) -> Select[Report]:
    """The reports matching the filters, newest first."""
    query = select(Report)
    if "gov" in filters:
        query = query.where(Report.governorate == filters["gov"])
    if "status" in filters:
        query = query.where(Report.status == filters["status"])
    return query.order_by(Report.id.desc())


async def ask_list(ctx: Ctx) -> None:
    """A page of reports with the filters in force."""
    unknown: list[str] = []
    if "filters" not in ctx.data:
        ctx.data["filters"], unknown = parse_filters([str(a) for a in ctx.data.get("args", [])])
    filters: dict[str, str] = ctx.data["filters"]
    page = int(ctx.data.get("page", 0))
    query = filtered(filters)
    need = filters.get("need")
    # JSON containment differs between SQLite and PostgreSQL: filter needs in Python, on a
    # bounded window of the newest reports.
    rows = (await ctx.session.scalars(query.limit(2000))).all()
    if need:
        rows = [r for r in rows if need in (r.needs or [])]
    total = len(rows)
    shown = rows[page * PAGE : (page + 1) * PAGE]
    audit(ctx, "list", filters=filters, page=page)
    lines = [
        filter_line(filters),
        ngettext("%(count)s report", "%(count)s reports", total)
        % {"count": isolate(format_number(total))},
    ]
    if unknown:  # said, not silently dropped: the list below is not filtered by them
        lines.insert(
            0,
            _(
                "Not a filter, so left out: %(words)s. Filters are a governorate, a status or a "
                "need; to open one report, send /report and its reference."
            )
            % {"words": ", ".join(isolate(word) for word in unknown)},
        )
    buttons = [
        Button(
            f"{r.reference} · {place_name(r.governorate)} · {r.people} · "
            f"{_(STATUS_LABELS.get(r.status, 'Received'))}",
            f"rep:open:{r.reference}",
        )
        for r in shown
    ]
    pager = []
    if page > 0:
        pager.append(Button(_("Previous page"), "list:prev"))
    if (page + 1) * PAGE < total:
        pager.append(Button(_("Next page"), "list:next"))
    ctx.say(
        "\n".join(lines),
        title=_("Reports"),
        buttons=[
            *[[b] for b in buttons],
            pager,
            [Button(_("Governorate"), "list:fgov"), Button(_("Status"), "list:fstatus")],
            [Button(_("Need"), "list:fneed"), Button(_("Clear filters"), "list:clear")],
            nav_buttons(MENU),
        ],
    )


def filter_line(filters: dict[str, str]) -> str:
    """The filters in force, in words."""
    parts = []
    if "gov" in filters:
        parts.append(place_name(filters["gov"]))
    if "status" in filters:
        parts.append(_(STATUS_LABELS[filters["status"]]))
    if "need" in filters:
        parts.append(_(NEED_LABELS[filters["need"]]))
    if not parts:
        return _("All reports, newest first.")
    return _("Filters: %(filters)s") % {"filters": " · ".join(parts)}


async def on_list(ctx: Ctx) -> Transition:
    """Turn the page, or change the filters."""
    choice = ctx.choice or ""
    page = int(ctx.data.get("page", 0))
    if choice == "list:next":
        ctx.data["page"] = page + 1
    elif choice == "list:prev":
        ctx.data["page"] = max(0, page - 1)
    elif choice == "list:clear":
        ctx.data["filters"], ctx.data["page"] = {}, 0
    elif choice.startswith("list:f"):
        return goto(choice.removeprefix("list:f"))
    return goto("list")


async def ask_gov(ctx: Ctx) -> None:
    """Pick a governorate to filter by."""
    ctx.ask(
        _("Which governorate?"),
        governorate_buttons("f"),
        columns=2,
    )


async def ask_status(ctx: Ctx) -> None:
    """Pick a status to filter by."""
    ctx.ask(
        _("Which status?"),
        [Button(_(label), f"f:{code}") for code, label in STATUS_LABELS.items()],
    )


async def ask_need(ctx: Ctx) -> None:
    """Pick a need to filter by."""
    ctx.ask(
        _("Which need?"),
        [Button(_(label), f"f:{code}") for code, label in NEED_BUTTONS.items()],
        columns=2,
    )


def set_filter(key: str) -> Step:
    """A step that stores one filter and returns to the list."""

    async def answer(ctx: Ctx) -> Transition:
        value = (ctx.choice or "").removeprefix("f:")
        ctx.data.setdefault("filters", {})[key] = value
        ctx.data["page"] = 0
        return goto("list")

    asks = {"gov": ask_gov, "status": ask_status, "need": ask_need}
    return Step(asks[key], answer)


async def find_report(ctx: Ctx, reference: str) -> Report | None:
    """A report by its reference, typed loosely (r-7k3m9, R 7K3M9)."""
    code = reference.strip().upper().replace(" ", "-")
    if not code.startswith("R-"):
        code = "R-" + code.removeprefix("R")
    return await ctx.session.scalar(select(Report).where(Report.reference == code))


async def ask_show(ctx: Ctx) -> None:
    """One report in full, for a coordinator, with the status buttons."""
    reference = str(ctx.data.get("ref") or (ctx.data.get("args") or [""])[0])
    report = await find_report(ctx, reference) if reference else None
    if report is None:
        ctx.say(
            _("No report has the reference %(reference)s.") % {"reference": isolate(reference)},
            buttons=[[Button(_("Reports"), "show:list")], nav_buttons(MENU)],
        )
        return
    ctx.data["ref"] = report.reference
    audit(ctx, "view", report)
    earlier = (
        await ctx.session.scalar(select(Report.reference).where(Report.id == report.duplicate_of))
        if report.duplicate_of is not None
        else None
    )
    ctx.say(
        report_text(ctx, report, earlier, await report_history(ctx, report)),
        title=_("Report %(reference)s") % {"reference": isolate(report.reference)},
        buttons=[
            *[
                [Button(_(label), f"st:{code}")]
                for code, label in STATUS_LABELS.items()
                if code not in ("new", report.status)
            ],
            *(
                [[Button(_("Open %(reference)s") % {"reference": earlier}, f"rep:open:{earlier}")]]
                if earlier
                else []
            ),
            *(
                [[Button(_("Refer to an organization"), "show:refer")]]
                if report.anonymized_at is None and report.contact_id is not None
                else []
            ),
            [Button(_("Reports"), "show:list")],
            nav_buttons(MENU),
        ],
        about=report.contact_id,
    )


def report_text(
    ctx: Ctx, report: Report, earlier: str | None = None, history: list[str] | None = None
) -> str:
    """Every field of a report, personal ones included (this is the coordinators' view)."""
    lines = [
        _("Status: %(status)s") % {"status": _(STATUS_LABELS.get(report.status, "Received"))},
        _("Received: %(when)s")
        % {"when": isolate(format_datetime(report.created_at, ctx.settings.timezone))},
        f"{place_name(report.governorate)} · {place_name(report.district)}",
        _("Place: %(place)s") % {"place": report.place or "-"},
    ]
    if report.latitude is not None:
        point = report.exact_point or f"{report.latitude:.2f},{report.longitude:.2f}"
        lines.append(_("Location: %(point)s") % {"point": isolate(point)})
    lines += [
        _("Displaced from: %(place)s") % {"place": place_name(report.origin)},
        _("When: %(when)s") % {"when": when_text(report.displaced or "unknown")},
        _(
            "People: %(people)s; children under 5: %(children)s; over 60: %(elderly)s; "
            "with disabilities: %(disabled)s; pregnant or breastfeeding: %(pregnant)s"
        )
        % {
            key: isolate(format_number(getattr(report, key)))
            for key in ("people", "children", "elderly", "disabled", "pregnant")
        },
        _("Headed by a woman: %(answer)s")
        % {"answer": _("Yes") if report.female_headed else _("No")},
        _("Shelter: %(shelter)s") % {"shelter": shelter_text(report.shelter)},
        _("Needs: %(needs)s") % {"needs": needs_text(report.needs)},
        _("Most urgent: %(need)s") % {"need": need_text(report.urgent)},
        _("Anything else: %(notes)s") % {"notes": report.notes or "-"},
    ]
    if report.photo:
        lines.append(_("A photo was sent with the report."))
    if report.contact_ok and report.phone:
        lines.append(_("Phone: %(phone)s") % {"phone": isolate(report.phone)})
    else:
        lines.append(_("The family did not ask to be contacted."))
    if earlier is not None:
        lines.append(_("Probably a duplicate of %(reference)s.") % {"reference": isolate(earlier)})
    if report.anonymized_at is not None:
        lines.append(_("The personal details of this report were deleted."))
    if history:
        lines += ["", _("History:"), *history]
    return "\n".join(lines)


async def report_history(ctx: Ctx, report: Report) -> list[str]:
    """Each status change of a report (when, by whom, from what to what, and its note) and
    each step of its referrals."""
    entries = await ctx.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.report_id == report.id, AuditEntry.action.in_(("status", "referral")))
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    lines = []
    for entry in entries:
        detail = entry.detail
        if entry.action == "referral":
            when = isolate(format_datetime(entry.at, ctx.settings.timezone))
            lines.append(f"• {when}: {referrals.history_text(detail)}")
            continue
        before, after, note = reports.change_words(detail)
        line = _("%(when)s, %(who)s: %(before)s \u2192 %(after)s") % {
            "when": isolate(format_datetime(entry.at, ctx.settings.timezone)),
            "who": isolate(entry.actor),
            "before": before,
            "after": after,
        }
        lines.append(f"• {line}" + (f"\n  {note}" if note else ""))
    return lines


async def on_show(ctx: Ctx) -> Transition:
    """A status button: ask for a note first. Or back to the list."""
    if ctx.choice == "show:list":
        return start("reports", {"filters": {}})
    if ctx.choice == "show:refer" and "ref" in ctx.data:
        return start("refer", {"ref": ctx.data["ref"]})
    status = (ctx.choice or "").removeprefix("st:")
    if status not in STATUS_LABELS or "ref" not in ctx.data:
        return retry()
    ctx.data["status"] = status
    return goto("note")


async def noted(ctx: Ctx, note: str) -> Transition:
    """With a note the family could read, ask whether to send it; else change the status."""
    report = await find_report(ctx, str(ctx.data.get("ref", "")))
    status = str(ctx.data.get("status", ""))
    if report is None or status not in STATUS_LABELS:
        return start("reports", {"filters": {}})
    if note and report.contact_id is not None and report.status != status:
        ctx.data["note"] = note
        return goto("tell")
    return await change_status(ctx, report, status, note, tell_note=False)


async def ask_tell(ctx: Ctx) -> None:
    """Whether the family reads the note too, beside the notice of its new status."""
    ctx.ask(
        _(
            "The family will be told the new status in its language. Send them your note too? "
            "It goes as you wrote it."
        ),
        [
            Button(_("Yes, send the note too"), "tell:yes"),
            Button(_("No, only for the record"), "tell:no"),
        ],
    )


async def on_tell(ctx: Ctx) -> Transition:
    """Change the status, with the note sent to the family or not."""
    report = await find_report(ctx, str(ctx.data.get("ref", "")))
    status = str(ctx.data.get("status", ""))
    note = str(ctx.data.pop("note", ""))
    if report is None or status not in STATUS_LABELS:
        return start("reports", {"filters": {}})
    return await change_status(ctx, report, status, note, tell_note=ctx.choice == "tell:yes")


async def change_status(
    ctx: Ctx, report: Report, status: str, note: str, *, tell_note: bool
) -> Transition:
    """Change the status, audit it, and tell the reporter in their language."""
    ctx.extra += await reports.change_status(
        ctx.session,
        report,
        status,
        actor=str(ctx.address),
        now=ctx.now,
        note=note,
        tell_note=tell_note,
    )
    ctx.say(
        _("Done: %(reference)s is now \u201c%(status)s\u201d.")
        % {"reference": isolate(report.reference), "status": _(STATUS_LABELS[status])}
    )
    ctx.data.pop("status", None)
    return goto("show")


async def open_report(ctx: Ctx, reference: str) -> Transition:
    """The standing "Open the report" button of a notification or of the list."""
    return start("report_detail", {"ref": reference})


REPORTS = Flow(
    "reports",
    {
        "list": Step(ask_list, on_list),
        "gov": set_filter("gov"),
        "status": set_filter("status"),
        "need": set_filter("need"),
    },
    coordinators_only=True,
    permission="reports",
)
DETAIL = Flow(
    "report_detail",
    {
        "show": Step(ask_show, on_show),
        "note": note_step(
            N_("Add a short note for the record (what was done, by whom), or press Skip."),
            reports.MESSAGE_LIMIT,  # the console's limit for the same note
            noted,
        ),
        "tell": Step(ask_tell, on_tell),
    },
    coordinators_only=True,
    permission="reports",
)
ACTIONS = {"rep:open:": Action(open_report, permission="reports")}


EXPORT_DIR = PROJECT_DIR / "data" / "exports"
EXTENSIONS = {"csv": "csv", "hxl": "csv", "geojson": "geojson", "json": "json"}


async def ask_export(ctx: Ctx) -> None:
    """Which format."""
    ctx.ask(
        _(
            "Export the reports as a file. Personal details (place names, exact points, notes, "
            "phone numbers) are left out; operators can add them on the server. Which format?"
        ),
        [
            Button("CSV", "x:csv"),
            Button("HXL", "x:hxl"),
            Button("GeoJSON", "x:geojson"),
            Button("JSON", "x:json"),
        ],
        columns=2,
        title=_("Export"),
    )


async def on_export(ctx: Ctx) -> Transition:
    """Write the file and send it, once the message's transaction is over; audited."""
    fmt = (ctx.choice or "").removeprefix("x:")
    if fmt not in EXTENSIONS:
        return retry()
    stamp = ctx.now.strftime("%Y%m%d-%H%M")
    # HXL is a CSV: "….hxl.csv"; a CSV is "….csv", not "….csv.csv".
    kind = "" if fmt == EXTENSIONS[fmt] else f".{fmt}"
    path = EXPORT_DIR / f"icssi-reports-{stamp}-{secrets.token_hex(4)}{kind}.{EXTENSIONS[fmt]}"
    address = ctx.address

    async def export(db: Database) -> list[Outbound]:
        # A read of its own, after the transaction: the export no longer holds SQLite's write
        # turn while every other person's message waits for it.
        EXPORT_DIR.mkdir(parents=True, exist_ok=True)
        query = exports.Query(private=False)
        # A blocking file is fine: it is local, and the read gives others a turn between batches.
        with path.open("w", encoding="utf-8", newline="") as out:
            count = await exports.export(db, query, fmt, out, actor=str(address))
        text = ngettext("%(count)s report", "%(count)s reports", count) % {
            "count": isolate(format_number(count))
        }
        return [Outbound(address=address, text=direct(text), document=str(path))]

    ctx.after.append(export)
    # Said in the message's own transaction: were the process to stop before the file is
    # written, the coordinator knows it was asked for and can ask again.
    ctx.say(_("Preparing the file: it comes in a moment."))
    return to_menu()


EXPORT = Flow(
    "export",
    {"format": Step(ask_export, on_export)},
    coordinators_only=True,
    permission="exports",
)
