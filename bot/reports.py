"""Reports of displaced families: the rules written once (limits, references, duplicates, storing,
status changes, notices), for the chat flows, the web console and the CLI."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import crypto, gazetteer
from bot.config import Settings
from bot.flows import coordinators
from bot.i18n import (
    N_,
    _,
    current_locale,
    direct,
    format_number,
    is_rtl,
    isolate,
    ngettext,
    use_locale,
)
from bot.messages import Address, Button, Outbound
from bot.models import AuditEntry, Contact, Report, ReportMark, ReportMessage

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW = timedelta(days=7)
URGENT_LIMIT = 1000  # characters of a message to the coordinators
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


def place_name(pcode: str | None) -> str:
    """A P-code's name in the current locale."""
    found = gazetteer.place(pcode) if pcode else None
    return found.name(current_locale()) if found else _("I do not know")


def places_text(places: Any) -> str:
    """Governorates' names (P-codes separated by spaces, or a list) in the current locale, in
    the reader's list style; all of Iraq for none."""
    codes = places.split() if isinstance(places, str) else list(places or [])
    if not codes:
        return _("All of Iraq")
    comma = "، " if is_rtl() else ", "
    return comma.join(place_name(code) for code in codes)


def needs_text(needs: Any) -> str:
    """The needs named in the current locale, in the reader's list style."""
    # The comma of the reader's script: an Arabic comma would show in English text.
    comma = "، " if is_rtl() else ", "
    return comma.join(_(NEED_LABELS[n]) for n in needs or [] if n in NEED_LABELS)


def need_text(need: Any) -> str:
    """One need named in the current locale ("" for none)."""
    return _(NEED_LABELS[str(need)]) if need in NEED_LABELS else ""


def when_text(value: Any) -> str:
    """When the family was displaced: a period's name, or the month as typed."""
    if isinstance(value, str) and value in WHEN_LABELS:
        return _(WHEN_LABELS[value])
    return isolate(str(value))


def shelter_text(value: Any) -> str:
    """A shelter category named in the current locale."""
    return _(SHELTER_LABELS.get(str(value), "Other"))


def mark_key(address: Address) -> str:
    """The coded mark a report leaves of its sender's address (it outlives "Delete my data")."""
    return crypto.keyed_hash(str(address))


async def reports_today(session: AsyncSession, address: Address, now: datetime) -> int:
    """How many reports this address sent in the last 24 hours, by the marks their reports left
    (bot.models.ReportMark): they outlive "Delete my data", so that deleting does not reset it."""
    since = now - timedelta(days=1)
    return int(
        await session.scalar(
            select(func.count(ReportMark.id)).where(
                ReportMark.key == mark_key(address), ReportMark.at >= since
            )
        )
        or 0
    )


async def limit_reached(
    session: AsyncSession, settings: Settings, address: Address, now: datetime
) -> bool:
    """Whether this address has used up today's reports."""
    return await reports_today(session, address, now) >= settings.reports_per_day


def limit_text(settings: Settings) -> str:
    """The answer when today's reports are used up."""
    return ngettext(
        "You have already sent %(count)s report today, the most we can take from one person "
        "in a day. Please try again tomorrow.",
        "You have already sent %(count)s reports today, the most we can take from one person "
        "in a day. Please try again tomorrow.",
        settings.reports_per_day,
    ) % {"count": isolate(format_number(settings.reports_per_day))}


async def pass_urgent(
    session: AsyncSession,
    settings: Settings,
    contact: Contact,
    address: Address,
    text: str,
    now: datetime,
) -> list[Outbound] | None:
    """One urgent message a day to the coordinators from someone over the limit: the notices
    to queue, or None when this address has written one today already."""
    key = crypto.keyed_hash(f"urgent {address}")
    since = now - timedelta(days=1)
    sent = await session.scalar(
        select(func.count(ReportMark.id)).where(ReportMark.key == key, ReportMark.at >= since)
    )
    if sent:
        return None
    session.add(ReportMark(key=key, at=now))
    notices = []
    for coordinator, locale in await coordinators(session, settings):
        with use_locale(locale):
            notices.append(
                Outbound(
                    address=coordinator,
                    text=direct(
                        _(
                            "Urgent message from %(address)s, who has sent today's reports "
                            "already:\n%(text)s"
                        )
                        % {"address": isolate(str(address)), "text": text}
                    ),
                    priority="notice",
                    about=contact.id,
                )
            )
    return notices


async def new_reference(session: AsyncSession) -> str:
    """A reference like R-7K3M9 that no report has yet."""
    while True:
        code = "R-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(5))
        taken = await session.scalar(select(Report.id).where(Report.reference == code))
        if taken is None:
            return code


async def store(
    session: AsyncSession,
    settings: Settings,
    contact: Contact,
    address: Address,
    values: Mapping[str, Any],
    *,
    locale: str,
    now: datetime,
) -> tuple[Report, list[Outbound]]:
    """Save a report from its column values, flag a probable duplicate, leave the daily mark;
    return it with the coordinators' alerts to queue (for an alerting need or a duplicate)."""
    report = Report(
        reference=await new_reference(session),
        contact_id=contact.id,
        locale=locale,
        created_at=now,
        updated_at=now,
        **values,
    )
    report.duplicate_of = await probable_duplicate(session, contact.id, report, now)
    session.add(report)
    session.add(ReportMark(key=mark_key(address), at=now))
    await session.flush()
    alerts: list[Outbound] = []
    if set(report.needs) & settings.report_alert_needs or report.duplicate_of is not None:
        for coordinator, coordinator_locale in await coordinators(session, settings):
            with use_locale(coordinator_locale):
                alerts.append(coordinator_alert(coordinator, report))
    return report, alerts


async def probable_duplicate(
    session: AsyncSession, contact_id: int, report: Report, now: datetime
) -> int | None:
    """An earlier report from the same contact or phone, same district and size, within 7 days."""
    candidates = await session.scalars(
        select(Report)
        .where(
            Report.created_at >= now - DUPLICATE_WINDOW,
            Report.governorate == report.governorate,
            Report.district.is_(None)
            if report.district is None
            else Report.district == report.district,
            Report.people == report.people,
            or_(Report.contact_id == contact_id, Report.phone.is_not(None)),
        )
        .order_by(Report.id)
    )
    for earlier in candidates:
        if earlier.contact_id == contact_id or (report.phone and earlier.phone == report.phone):
            return earlier.id
    return None


def coordinator_alert(address: Address, report: Report) -> Outbound:
    """A new report's notice for one coordinator, in the current locale."""
    lines = [
        _("New report %(reference)s") % {"reference": isolate(report.reference)},
        f"{place_name(report.governorate)} · {place_name(report.district)}",
        ngettext("%(count)s person", "%(count)s people", report.people)
        % {"count": isolate(format_number(report.people))},
        _("Needs: %(needs)s") % {"needs": needs_text(report.needs)},
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


def change_words(detail: dict[str, Any]) -> tuple[str, str, str]:
    """A recorded status change (its audit detail) in the current locale: the status before,
    the status after, and its note with whether the family was told ("" without a note); for
    the report's history in the chat and in the console."""
    before, after = (
        _(STATUS_LABELS.get(str(detail.get(k)), "Received")) for k in ("before", "after")
    )
    if not detail.get("note"):
        return before, after, ""
    told = _("sent to the family") if detail.get("told") else _("for the record")
    return before, after, _("Note (%(told)s): %(note)s") % {"told": told, "note": detail["note"]}


def status_notice(
    report: Report, address: Address, locale: str, note: str | None = None
) -> Outbound:
    """Tell a reporter, in their language, that their report's status changed; with the
    coordinator's note when the coordinator chose to send it."""
    with use_locale(locale):
        text = notice_text(report.reference, report.status, note)
        return Outbound(address=address, text=direct(text), priority="notice")


def notice_text(reference: str, status: str, note: str | None = None) -> str:
    """What a family is told of its report's new status, in the current locale."""
    notice = STATUS_NOTICES.get(status, STATUS_NOTICES["new"])
    text = _(notice) % {"reference": isolate(reference)}
    if note:
        text += "\n\n" + _("A note from the coordinator: %(note)s") % {"note": note}
    return text


async def change_status(
    session: AsyncSession,
    report: Report,
    status: str,
    *,
    actor: str,
    now: datetime,
    note: str = "",
    tell_note: bool = False,
) -> list[Outbound]:
    """Change a report's status and audit it; return the reporter's notice to queue (none when
    the status stays or nobody is left to tell)."""
    if status not in STATUS_LABELS:
        raise ValueError(f"unknown status {status!r}")
    # Locked: two coordinators changing it at once are recorded one after the other.
    await session.refresh(report, with_for_update=True)
    before = report.status
    report.status = status
    report.updated_at = now
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action="status",
            report_id=report.id,
            detail={"before": before, "after": status, "note": note, "told": tell_note},
        )
    )
    contact = await session.get(Contact, report.contact_id) if report.contact_id else None
    if contact is None or before == status:
        return []
    locale = contact.locale or report.locale
    return [
        status_notice(report, Address.parse(contact.address), locale, note if tell_note else None)
    ]


MESSAGE_LIMIT = 1000  # characters of a message between coordinators and a family
REPLY = "msg:reply:"  # the payload prefix of the family's Reply button, then the reference


async def own_report(session: AsyncSession, reference: str, contact_id: int) -> Report | None:
    """A report by its reference, if it is this contact's own and still open for messages."""
    return await session.scalar(
        select(Report).where(
            Report.reference == reference,
            Report.contact_id == contact_id,
            Report.anonymized_at.is_(None),
        )
    )


def add_note(
    session: AsyncSession, report: Report, note: str, *, actor: str, now: datetime
) -> None:
    """A coordinators' internal note on a report: in its history, never sent to the family."""
    session.add(
        AuditEntry(at=now, actor=actor, action="note", report_id=report.id, detail={"note": note})
    )


async def thread(session: AsyncSession, report: Report) -> list[ReportMessage]:
    """The messages between coordinators and the family about a report, oldest first."""
    found = await session.scalars(
        select(ReportMessage)
        .where(ReportMessage.report_id == report.id)
        .order_by(ReportMessage.at, ReportMessage.id)
    )
    return list(found)


async def message_family(
    session: AsyncSession, report: Report, body: str, *, actor: str, now: datetime
) -> list[Outbound]:
    """A coordinator's message to the family, kept in the report's thread and audited; the
    message to queue (in the family's language, with a Reply button), or none when nobody is
    left to write to (the family deleted its data)."""
    contact = await session.get(Contact, report.contact_id) if report.contact_id else None
    if contact is None or report.anonymized_at is not None:
        return []
    session.add(
        ReportMessage(report_id=report.id, at=now, direction="out", author=actor, body=body)
    )
    session.add(
        AuditEntry(
            at=now, actor=actor, action="message", report_id=report.id, detail={"to": "family"}
        )
    )
    with use_locale(contact.locale or report.locale):
        text = (
            _("A message from the Initiative's coordinators about your report %(reference)s:")
            % {"reference": isolate(report.reference)}
            + "\n\n"
            + body
        )
        return [
            Outbound(
                address=Address.parse(contact.address),
                text=direct(text),
                buttons=((Button(_("Reply"), REPLY + report.reference),),),
                priority="notice",
                locale=current_locale(),
            )
        ]


async def family_answer(
    session: AsyncSession, settings: Settings, report: Report, body: str, *, now: datetime
) -> list[Outbound]:
    """The family's answer, kept in the thread; a notice for each coordinator, in their
    language (the words stay in the thread, not in the notice)."""
    session.add(ReportMessage(report_id=report.id, at=now, direction="in", body=body))
    found = []
    for address, locale in await coordinators(session, settings):
        with use_locale(locale):
            found.append(
                Outbound(
                    address=address,
                    text=direct(
                        _("The family of report %(reference)s answered your message.")
                        % {"reference": isolate(report.reference)}
                    ),
                    buttons=((Button(_("Open the report"), f"rep:open:{report.reference}"),),),
                    priority="notice",
                    about=report.contact_id,
                )
            )
    return found
