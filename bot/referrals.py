"""Referrals (#22): a family's report passed to a signatory organization that can help, its
answers, and the family's word on whether help came. Every rule written once (who is suggested,
who may see and answer a referral, what the organization is told, expiry, suspension,
withdrawal), for the chat flows, the web console and the CLI.

An organization sees only its own referrals: every read by a member goes through `for_member`,
which checks the organization and audits the view.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import organizations, reports
from bot.config import NEEDS, Settings
from bot.flows import coordinators
from bot.i18n import N_, _, direct, format_number, isolate, ngettext, use_locale
from bot.messages import Address, Button, Outbound
from bot.models import (
    AuditEntry,
    Contact,
    Conversation,
    Organization,
    OrganizationMember,
    Referral,
    Report,
    Signature,
)
from bot.organizations import Membership, Refused

logger = logging.getLogger(__name__)

NOTE_LIMIT = 1000  # characters of a coordinator's or an organization's note
OPEN = ("sent", "accepted")  # waiting for the organization's answer or its outcome
STATUS_LABELS: dict[str, str] = {
    "sent": N_("Waiting for an answer"),
    "accepted": N_("Accepted"),
    "declined": N_("Declined"),
    "expired": N_("No answer in time"),
    "helped": N_("Helped"),
    "not_helped": N_("Could not help"),
    "withdrawn": N_("Withdrawn: the family's data was deleted"),
    "cancelled": N_("Cancelled: the organization is suspended"),
}
DECLINE_REASONS: dict[str, str] = {
    "no_capacity": N_("No capacity now"),
    "outside_area": N_("Outside our area"),
    "other": N_("Another reason"),
}
CONFIRM_LABELS: dict[str, str] = {
    "yes": N_("Yes"),
    "partly": N_("Partly"),
    "no": N_("No"),
}
# Payload prefixes of the standing buttons (handlers/referral.py), then the referral's id.
ACCEPT, DECLINE, HELPED, FAILED, OPEN_ONE, CONFIRM = (
    "ref:acc:",
    "ref:dec:",
    "ref:done:",
    "ref:fail:",
    "ref:open:",
    "ref:fam:",
)


@dataclass
class Record:
    """How an organization has answered its referrals so far."""

    received: int = 0
    accepted: int = 0
    helped: int = 0
    confirmed: int = 0
    answer_hours: list[float] = field(default_factory=list)

    @property
    def median_hours(self) -> float | None:
        """The median time to answer (accept or decline), in hours; None before any answer."""
        return statistics.median(self.answer_hours) if self.answer_hours else None


@dataclass
class Suggestion:
    """An organization that can help with a report, and why it is suggested."""

    organization: Organization
    signature: Signature
    area: int  # bot.referrals.covers: 0 the district, 1 the whole governorate, 2 elsewhere in it
    needs: list[str]  # the report's needs it meets, the most urgent first
    urgent: bool  # it meets the most urgent need
    record: Record

    @property
    def in_district(self) -> bool:
        """Whether its area covers the report's district (named, or its whole governorate)."""
        return self.area < 2

    @property
    def name(self) -> str:
        """The organization's public name."""
        return public_name(self.signature)


def public_name(signature: Signature) -> str:
    """An organization's public name (Arabic and English as signed)."""
    from bot.signatures import public_name as name  # bot.signatures calls this module

    return name(signature)


def parse_id(text: str) -> int | None:
    """A referral's id from a payload or a form, or None for anything else."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


# What the figures and an organization's record count of a referral.
_COUNTED = (
    Referral.organization_id,
    Referral.status,
    Referral.confirmed,
    Referral.created_at,
    Referral.answered_at,
)


async def records(session: AsyncSession) -> dict[int, Record]:
    """Every organization's record on its referrals, by organization id."""
    found: dict[int, Record] = defaultdict(Record)
    # The columns counted, not whole rows: their notes (encrypted, personal) are not read.
    for referral in await session.execute(select(*_COUNTED)):
        record = found[referral.organization_id]
        record.received += 1
        if referral.status in ("accepted", "helped", "not_helped") or (
            referral.status in ("withdrawn", "cancelled") and referral.answered_at
        ):
            record.accepted += 1
        if referral.status == "helped":
            record.helped += 1
        if referral.confirmed == "yes":
            record.confirmed += 1
        if referral.answered_at is not None:
            hours = (referral.answered_at - referral.created_at).total_seconds() / 3600
            record.answer_hours.append(hours)
    return found


def covers(organization: Organization, report: Report) -> int | None:
    """How closely an organization's area covers a report: 0 names its district, 1 covers its
    whole governorate (no district of it listed), 2 works elsewhere in the governorate; None
    outside it."""
    if report.governorate not in organization.governorates:
        return None
    inside = [d for d in organization.districts if d.startswith(report.governorate)]
    if report.district is not None and report.district in inside:
        return 0
    return 1 if not inside else 2


async def suggestions(session: AsyncSession, report: Report) -> list[Suggestion]:
    """The active organizations, with someone to receive, that meet a need of the report in
    its governorate: those naming its district first, then those covering the whole
    governorate, then the rest of the governorate; within each, those meeting the most urgent
    need, then the most needs. An organization that has it open already is left out."""
    busy = set(
        await session.scalars(
            select(Referral.organization_id).where(
                Referral.report_id == report.id, Referral.status.in_(OPEN)
            )
        )
    )
    staffed = set(await session.scalars(select(OrganizationMember.organization_id)))
    rows = await session.execute(
        select(Organization, Signature)
        .join(Signature, Signature.id == Organization.signature_id)
        .where(Signature.status == "verified")
        .order_by(Signature.name_key, Organization.id)
    )
    found_records = await records(session)
    wanted = [report.urgent] + [n for n in report.needs or [] if n != report.urgent]
    found: list[Suggestion] = []
    for organization, signature in rows.all():
        if organization.id in busy or organization.id not in staffed:
            continue
        area = covers(organization, report)
        met = [n for n in wanted if n and n in organization.needs]
        if area is None or not met:
            continue
        found.append(
            Suggestion(
                organization,
                signature,
                area,
                met,
                report.urgent in organization.needs,
                found_records.get(organization.id, Record()),
            )
        )
    found.sort(key=lambda s: (s.area, not s.urgent, -len(s.needs)))
    return found


def _history(
    session: AsyncSession, report: Report, step: str, actor: str, now: datetime, **detail: Any
) -> None:
    """A step of a referral in the report's history (its audit entries)."""
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action="referral",
            report_id=report.id,
            detail={"step": step, **detail},
        )
    )


async def _set_status(
    session: AsyncSession, report: Report, status: str, actor: str, now: datetime
) -> None:
    """The report's status follows its referrals; the family hears of it from the referral's
    own messages, not from the status notice."""
    if report.status != status:
        await reports.change_status(session, report, status, actor=actor, now=now)


async def _back_to_seeking(
    session: AsyncSession, report: Report, actor: str, now: datetime
) -> None:
    """A referral ended without help: the report is back with the coordinators, unless
    another organization still has it."""
    still = await session.scalar(
        select(Referral.id).where(Referral.report_id == report.id, Referral.status.in_(OPEN))
    )
    if still is None and report.status == "referred":
        await _set_status(session, report, "verified", actor, now)


async def refer(
    session: AsyncSession,
    settings: Settings,
    report: Report,
    organization_id: int,
    *,
    actor: str,
    note: str,
    now: datetime,
) -> tuple[Referral, list[Outbound]]:
    """Pass a report to one of its suggested organizations, with an optional note; return the
    referral and the messages for the organization's members. Refused: the family deleted its
    data ("forgotten"), or the organization is not among the suggestions ("not_suggested":
    suspended, nobody to receive, no need or place in common, or it has the report already)."""
    if report.anonymized_at is not None or report.contact_id is None:
        raise Refused("forgotten")
    chosen = next(
        (s for s in await suggestions(session, report) if s.organization.id == organization_id),
        None,
    )
    if chosen is None:
        raise Refused("not_suggested")
    referral = Referral(
        report_id=report.id,
        organization_id=organization_id,
        status="sent",
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(hours=settings.referral_answer_hours),
        note=note.strip()[:NOTE_LIMIT] or None,
        helped_needs=[],
    )
    session.add(referral)
    await session.flush()
    _history(session, report, "sent", actor, now, referral=referral.id, organization=chosen.name)
    await _set_status(session, report, "referred", actor, now)
    return referral, await _to_members(
        session, chosen.organization, lambda: request_message(referral, report, settings)
    )


async def _to_members(
    session: AsyncSession,
    organization: Organization,
    render: Any,
    *,
    about: int | None = None,
) -> list[Outbound]:
    """A message for every member of the organization, each rendered in their language:
    `render()` returns (text, buttons, about)."""
    found = []
    for member in await organizations.members(session, organization):
        contact = await session.get(Contact, member.contact_id)
        if contact is None:
            continue
        with use_locale(contact.locale or "ar"):
            text, buttons, subject = render()
            found.append(
                Outbound(
                    address=Address.parse(contact.address),
                    text=direct(text),
                    buttons=buttons,
                    priority="notice",
                    about=subject if subject is not None else about,
                )
            )
    return found


def request_message(
    referral: Referral, report: Report, settings: Settings
) -> tuple[str, tuple[tuple[Button, ...], ...], int | None]:
    """A new referral as the organization reads it, in the current locale, with Accept and
    Decline; it carries the family's data (its `about`)."""
    text = request_text(referral, report)
    text += "\n\n" + ngettext(
        "Please answer within %(count)s hour.",
        "Please answer within %(count)s hours.",
        settings.referral_answer_hours,
    ) % {"count": isolate(format_number(settings.referral_answer_hours))}
    buttons = (
        (
            Button(_("Accept"), f"{ACCEPT}{referral.id}"),
            Button(_("Decline"), f"{DECLINE}{referral.id}"),
        ),
    )
    return text, buttons, report.contact_id


def request_text(referral: Referral, report: Report) -> str:
    """What an organization is told of a family's request, in the current locale: the place
    and the phone only when the family agreed that they be given to an organization."""
    counts = {
        key: isolate(format_number(getattr(report, key)))
        for key in ("people", "children", "elderly", "disabled", "pregnant")
    }
    lines = [
        _("A family's request for help, passed on by the Initiative: %(reference)s")
        % {"reference": isolate(report.reference)},
        f"{reports.place_name(report.governorate)} · {reports.place_name(report.district)}",
        _(
            "People: %(people)s; children under 5: %(children)s; over 60: %(elderly)s; "
            "with disabilities: %(disabled)s; pregnant or breastfeeding: %(pregnant)s"
        )
        % counts,
        _("Needs: %(needs)s") % {"needs": reports.needs_text(report.needs)},
        _("Most urgent: %(need)s") % {"need": reports.need_text(report.urgent)},
        _("Shelter: %(shelter)s") % {"shelter": reports.shelter_text(report.shelter)},
        _("When: %(when)s") % {"when": reports.when_text(report.displaced or "unknown")},
    ]
    if report.share_phone and report.contact_ok and report.anonymized_at is None:
        lines.append(_("Place: %(place)s") % {"place": report.place or "-"})
        if report.phone:
            lines.append(_("Phone: %(phone)s") % {"phone": isolate(report.phone)})
    else:
        lines.append(
            _(
                "The family did not agree to give its place and number to an organization: "
                "answer here, and the coordinators will pass on what is needed."
            )
        )
    if referral.note:
        lines.append(_("A note from the coordinator: %(note)s") % {"note": referral.note})
    lines.append(
        _("Status: %(status)s") % {"status": _(STATUS_LABELS.get(referral.status, "Accepted"))}
    )
    return "\n".join(lines)


def answer_buttons(referral: Referral) -> tuple[tuple[Button, ...], ...]:
    """The buttons an organization may press on a referral in its present state."""
    if referral.status == "sent":
        return (
            (
                Button(_("Accept"), f"{ACCEPT}{referral.id}"),
                Button(_("Decline"), f"{DECLINE}{referral.id}"),
            ),
        )
    if referral.status == "accepted":
        return (
            (
                Button(_("We helped"), f"{HELPED}{referral.id}"),
                Button(_("Could not help"), f"{FAILED}{referral.id}"),
            ),
        )
    return ()


async def for_member(
    session: AsyncSession,
    mine: Membership | None,
    referral_id: int | None,
    *,
    actor: str,
    now: datetime,
) -> tuple[Referral, Report]:
    """A referral and its report, for a member of the organization it was sent to; the view is
    audited. Another organization's referral, or one that does not exist, reads alike
    ("not_yours"), so that a guessed id learns nothing."""
    referral = await session.get(Referral, referral_id) if referral_id is not None else None
    if mine is None or referral is None or referral.organization_id != mine.organization.id:
        raise Refused("not_yours")
    report = await session.get(Report, referral.report_id)
    assert report is not None
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action="referral:view",
            report_id=report.id,
            detail={"referral": referral.id, "organization": mine.organization.id},
        )
    )
    return referral, report


async def open_for(session: AsyncSession, mine: Membership) -> list[tuple[Referral, Report]]:
    """The organization's open referrals, oldest first (its own only)."""
    rows = await session.execute(
        select(Referral, Report)
        .join(Report, Report.id == Referral.report_id)
        .where(Referral.organization_id == mine.organization.id, Referral.status.in_(OPEN))
        .order_by(Referral.id)
    )
    return [(r, p) for r, p in rows.all()]


async def _family(session: AsyncSession, report: Report) -> tuple[Address, str] | None:
    """Where the family is, and its language; None once it deleted its data."""
    if report.contact_id is None or report.anonymized_at is not None:
        return None
    contact = await session.get(Contact, report.contact_id)
    if contact is None:
        return None
    return Address.parse(contact.address), contact.locale or report.locale


async def _to_coordinators(
    session: AsyncSession, settings: Settings, report: Report, render: Any
) -> list[Outbound]:
    """A notice about a report for every coordinator, in their language, with its button."""
    found = []
    for address, locale in await coordinators(session, settings):
        with use_locale(locale):
            found.append(
                Outbound(
                    address=address,
                    text=direct(render()),
                    buttons=((Button(_("Open the report"), f"rep:open:{report.reference}"),),),
                    priority="notice",
                )
            )
    return found


async def _answerable(
    session: AsyncSession,
    mine: Membership | None,
    referral_id: int | None,
    actor: str,
    now: datetime,
) -> tuple[Referral, Report, Membership]:
    """A referral the member may answer now: their own, locked while it changes."""
    referral, report = await for_member(session, mine, referral_id, actor=actor, now=now)
    assert mine is not None
    await session.refresh(referral, with_for_update=True)
    return referral, report, mine


async def accept(
    session: AsyncSession,
    settings: Settings,
    mine: Membership | None,
    referral_id: int | None,
    *,
    actor: str,
    now: datetime,
) -> tuple[Referral, list[Outbound]]:
    """The organization accepts: the family is told (the organization named if it agreed)."""
    referral, report, mine = await _answerable(session, mine, referral_id, actor, now)
    if referral.status != "sent":
        raise Refused("answered")
    if not mine.active:
        raise Refused("suspended")
    referral.status, referral.answered_at = "accepted", now
    name = public_name(mine.signature)
    _history(session, report, "accepted", actor, now, referral=referral.id, organization=name)
    family = await _family(session, report)
    if family is None:
        return referral, []
    address, locale = family
    with use_locale(locale):
        if mine.organization.disclose_name:
            text = _(
                "Good news about your report %(reference)s: the relief organization "
                "%(organization)s has your request and will look at how it can help your family."
            ) % {"reference": isolate(report.reference), "organization": name}
        else:
            text = _(
                "Good news about your report %(reference)s: a relief organization has your "
                "request and will look at how it can help your family."
            ) % {"reference": isolate(report.reference)}
        return referral, [Outbound(address=address, text=direct(text), priority="notice")]


async def decline(
    session: AsyncSession,
    settings: Settings,
    mine: Membership | None,
    referral_id: int | None,
    reason: str,
    *,
    actor: str,
    now: datetime,
) -> tuple[Referral, list[Outbound]]:
    """The organization declines, with a reason: the coordinators are told, to refer again."""
    if reason not in DECLINE_REASONS:
        raise Refused("reason")
    referral, report, mine = await _answerable(session, mine, referral_id, actor, now)
    if referral.status != "sent":
        raise Refused("answered")
    referral.status, referral.answered_at, referral.closed_at = "declined", now, now
    referral.decline_reason = reason
    name = public_name(mine.signature)
    detail = {"referral": referral.id, "organization": name, "reason": reason}
    _history(session, report, "declined", actor, now, **detail)
    await _back_to_seeking(session, report, actor, now)
    return referral, await _to_coordinators(
        session,
        settings,
        report,
        lambda: (
            _(
                "%(organization)s declined report %(reference)s (%(reason)s): it can be referred "
                "again."
            )
            % {
                "organization": name,
                "reference": isolate(report.reference),
                "reason": _(DECLINE_REASONS[reason]),
            }
        ),
    )


async def helped(
    session: AsyncSession,
    settings: Settings,
    mine: Membership | None,
    referral_id: int | None,
    needs: list[str],
    note: str,
    *,
    actor: str,
    now: datetime,
) -> tuple[Referral, list[Outbound]]:
    """The organization says it helped (with which needs, and a note): the family is asked
    whether the help came."""
    referral, report, mine = await _answerable(session, mine, referral_id, actor, now)
    if referral.status != "accepted":
        raise Refused("answered")
    chosen = [n for n in NEEDS if n in set(needs)]
    if not chosen or not set(chosen) <= set(report.needs or []) | {report.urgent}:
        raise Refused("need")
    referral.status, referral.outcome_at, referral.closed_at = "helped", now, now
    referral.helped_needs = chosen
    referral.outcome_note = note.strip()[:NOTE_LIMIT] or None
    _history(
        session,
        report,
        "helped",
        actor,
        now,
        referral=referral.id,
        organization=public_name(mine.signature),
        needs=chosen,
        note=referral.outcome_note or "",
    )
    family = await _family(session, report)
    if family is None:
        return referral, []
    address, locale = family
    with use_locale(locale):
        text = _(
            "About your report %(reference)s: the relief organization says it helped your "
            "family with: %(needs)s. Did you receive this help?"
        ) % {"reference": isolate(report.reference), "needs": reports.needs_text(chosen)}
        buttons = tuple(
            Button(_(label), f"{CONFIRM}{referral.id}:{code}")
            for code, label in CONFIRM_LABELS.items()
        )
        await _await_answer(session, report.contact_id, referral.id, buttons)
        return referral, [
            Outbound(address=address, text=direct(text), buttons=(buttons,), priority="notice")
        ]


async def _await_answer(
    session: AsyncSession, contact_id: int | None, referral_id: int, buttons: tuple[Button, ...]
) -> None:
    """Let the family answer the question by typing too (WhatsApp's numbered list): its
    conversation waits on the question, if it is at the menu (a report half-way stays)."""
    if contact_id is None:
        return
    conversation = await session.get(Conversation, contact_id, with_for_update=True)
    options = [[b.payload, b.label] for b in buttons]
    if conversation is None:
        session.add(
            Conversation(
                contact_id=contact_id,
                flow="referral_confirm",
                step="answer",
                data={"id": referral_id},
                history=[],
                offered=options,
            )
        )
    elif conversation.flow == "menu":
        conversation.flow, conversation.step = "referral_confirm", "answer"
        conversation.data, conversation.history = {"id": referral_id}, []
        conversation.offered = options


async def not_helped(
    session: AsyncSession,
    settings: Settings,
    mine: Membership | None,
    referral_id: int | None,
    *,
    actor: str,
    now: datetime,
) -> tuple[Referral, list[Outbound]]:
    """The organization could not help after all: the coordinators are told."""
    referral, report, mine = await _answerable(session, mine, referral_id, actor, now)
    if referral.status != "accepted":
        raise Refused("answered")
    referral.status, referral.outcome_at, referral.closed_at = "not_helped", now, now
    name = public_name(mine.signature)
    _history(session, report, "not_helped", actor, now, referral=referral.id, organization=name)
    await _back_to_seeking(session, report, actor, now)
    return referral, await _to_coordinators(
        session,
        settings,
        report,
        lambda: (
            _("%(organization)s could not help with report %(reference)s.")
            % {"organization": name, "reference": isolate(report.reference)}
        ),
    )


async def confirm(
    session: AsyncSession,
    settings: Settings,
    contact: Contact,
    referral_id: int | None,
    answer: str,
    *,
    now: datetime,
) -> tuple[Referral, list[Outbound]]:
    """The family says whether the help came: "yes" resolves the report; "partly" or "no"
    goes back to the coordinators with an alert. Only the family of the report may answer,
    once."""
    referral = await session.get(Referral, referral_id) if referral_id is not None else None
    report = await session.get(Report, referral.report_id) if referral is not None else None
    if (
        referral is None
        or report is None
        or report.contact_id != contact.id
        or answer not in CONFIRM_LABELS
    ):
        raise Refused("not_yours")
    await session.refresh(referral, with_for_update=True)
    if referral.status != "helped" or referral.confirmed is not None:
        raise Refused("answered")
    referral.confirmed, referral.confirmed_at = answer, now
    step = {"referral": referral.id, "answer": answer}
    _history(session, report, "confirmed", contact.address, now, **step)
    if answer == "yes":
        await _set_status(session, report, "resolved", contact.address, now)
        return referral, []
    if report.status == "referred":
        await _set_status(session, report, "verified", contact.address, now)
    return referral, await _to_coordinators(
        session,
        settings,
        report,
        lambda: (
            _(
                "Alert: the family of report %(reference)s says it received the help only in part "
                "or not at all (%(answer)s)."
            )
            % {"reference": isolate(report.reference), "answer": _(CONFIRM_LABELS[answer])}
        ),
    )


# What coordinators and organizations are told when a referral ends without the organization's
# answer (N_ messages with %(organization)s and %(reference)s); none: nobody is told.
ENDINGS: dict[str, tuple[str | None, str]] = {
    "expired": (
        N_(
            "%(organization)s did not answer report %(reference)s in time: it can be "
            "referred again."
        ),
        N_(
            "The request %(reference)s expired without an answer: it was given back to the "
            "coordinators."
        ),
    ),
    "cancelled": (
        N_(
            "%(organization)s is suspended: its request %(reference)s was taken back and can "
            "be referred again."
        ),
        N_(
            "The request %(reference)s was taken back: your organization's signature is no "
            "longer verified."
        ),
    ),
    "withdrawn": (
        None,
        N_(
            "The request %(reference)s was withdrawn: there is nothing more to do for it. "
            "Thank you."
        ),
    ),
}


async def _end(
    session: AsyncSession,
    settings: Settings | None,
    referral: Referral,
    report: Report,
    status: str,
    *,
    actor: str,
    now: datetime,
) -> list[Outbound]:
    """End a referral without the organization's answer (ENDINGS): in the report's history,
    the report back with the coordinators (with `settings`: they are told), and the
    organization's members told only that the request is no longer theirs."""
    organization = await session.get(Organization, referral.organization_id)
    signature = await session.get(Signature, organization.signature_id) if organization else None
    name = public_name(signature) if signature else "-"
    referral.status, referral.closed_at = status, now
    _history(session, report, status, actor, now, referral=referral.id, organization=name)
    to_coordinators, to_members = ENDINGS[status]
    words = {"organization": name, "reference": isolate(report.reference)}
    found: list[Outbound] = []
    if settings is not None:
        await _back_to_seeking(session, report, actor, now)
        if to_coordinators is not None:
            text = to_coordinators
            found += await _to_coordinators(session, settings, report, lambda: _(text) % words)
    if organization is not None:
        found += await _to_members(
            session, organization, lambda: (_(to_members) % words, (), None)
        )
    return found


async def expire(session: AsyncSession, settings: Settings, now: datetime) -> list[Outbound]:
    """Referrals not answered in REFERRAL_ANSWER_HOURS expire: the coordinators are told, the
    report goes back to them, and the organization hears that it may no longer answer."""
    due = await session.execute(
        select(Referral, Report)
        .join(Report, Report.id == Referral.report_id)
        .where(Referral.status == "sent", Referral.expires_at <= now)
        .order_by(Referral.id)
        .limit(500)
    )
    found: list[Outbound] = []
    for referral, report in due.all():
        found += await _end(session, settings, referral, report, "expired", actor="bot", now=now)
    if found:
        logger.info("referrals: %d message(s) about expired referrals", len(found))
    return found


async def withdraw_for_family(
    session: AsyncSession, contact: Contact, now: datetime
) -> list[Outbound]:
    """The family asked to be forgotten: its open referrals are withdrawn, and each
    organization hears only that the request was withdrawn (nothing about the family)."""
    return await withdraw(session, Report.contact_id == contact.id, now, actor="forgotten")


async def withdraw(
    session: AsyncSession, where: Any, now: datetime, *, actor: str = "bot"
) -> list[Outbound]:
    """Withdraw the open referrals of the reports matched by `where` (their family's data is
    going: deleted, or past its retention); each organization is told only that."""
    rows = await session.execute(
        select(Referral, Report)
        .join(Report, Report.id == Referral.report_id)
        .where(where, Referral.status.in_(OPEN))
    )
    found: list[Outbound] = []
    for referral, report in rows.all():
        found += await _end(session, None, referral, report, "withdrawn", actor=actor, now=now)
    return found


async def suspend(
    session: AsyncSession, settings: Settings, signature: Signature, now: datetime
) -> list[Outbound]:
    """An organization's signature no longer stands: the referrals it has not answered are
    cancelled and go back to the coordinators; those it accepted stay with it, to be finished
    (it can still say Helped or Could not help)."""
    rows = await session.execute(
        select(Referral, Report)
        .join(Report, Report.id == Referral.report_id)
        .join(Organization, Organization.id == Referral.organization_id)
        .where(Organization.signature_id == signature.id, Referral.status == "sent")
    )
    found: list[Outbound] = []
    for referral, report in rows.all():
        found += await _end(session, settings, referral, report, "cancelled", actor="bot", now=now)
    return found


HISTORY: dict[str, str] = {
    "sent": N_("Referred to %(organization)s"),
    "accepted": N_("%(organization)s accepted"),
    "declined": N_("%(organization)s declined (%(reason)s)"),
    "expired": N_("%(organization)s did not answer in time"),
    "helped": N_("%(organization)s helped with: %(needs)s"),
    "not_helped": N_("%(organization)s could not help"),
    "confirmed": N_("The family says the help came: %(answer)s"),
    # By "Delete my data", or by retention (REPORT_RETENTION_DAYS): the history says which by
    # its actor ("forgotten", "bot").
    "withdrawn": N_("The family's data was deleted: the referral was withdrawn"),
    "cancelled": N_("%(organization)s was suspended: the referral was taken back"),
}


def history_text(detail: dict[str, Any]) -> str:
    """One referral step of a report's history, in the current locale."""
    step = str(detail.get("step", ""))
    text = _(HISTORY.get(step, HISTORY["sent"])) % {
        "organization": str(detail.get("organization", "-")),
        "reason": _(DECLINE_REASONS.get(str(detail.get("reason")), "Another reason")),
        "needs": reports.needs_text(detail.get("needs") or []),
        "answer": _(CONFIRM_LABELS.get(str(detail.get("answer")), "No")),
    }
    if detail.get("note"):
        text += " · " + _("Note: %(note)s") % {"note": str(detail["note"])}
    return text


@dataclass
class Figures:
    """What became of the referrals: totals, by organization, by governorate, by need."""

    totals: Counter[str] = field(default_factory=Counter)
    organizations: list[tuple[str, Record]] = field(default_factory=list)
    governorates: dict[str, Counter[str]] = field(default_factory=dict)
    needs: dict[str, Counter[str]] = field(default_factory=dict)


def _outcome(referral: Any) -> list[str]:
    """The figures' columns a referral counts in."""
    found = ["received"]
    if referral.status in OPEN:
        found.append("open")
    if referral.status in ("accepted", "helped", "not_helped"):
        found.append("accepted")
    if referral.status in ("declined", "expired", "helped"):
        found.append(referral.status)
    if referral.confirmed == "yes":
        found.append("confirmed")
    return found


async def figures(session: AsyncSession) -> Figures:
    """The referral figures, over every referral (a few thousand at most a year)."""
    result = Figures()
    by_org: dict[int, Record] = await records(session)
    governorates: dict[str, Counter[str]] = defaultdict(Counter)
    needs: dict[str, Counter[str]] = defaultdict(Counter)
    rows = await session.execute(
        select(*_COUNTED, Report.governorate, Report.urgent).join(
            Report, Report.id == Referral.report_id
        )
    )
    for referral in rows.all():
        governorate, urgent = referral.governorate, referral.urgent
        for column in _outcome(referral):
            result.totals[column] += 1
            governorates[governorate][column] += 1
            needs[urgent][column] += 1
    names = await session.execute(
        select(Organization.id, Signature)
        .join(Signature, Signature.id == Organization.signature_id)
        .where(Organization.id.in_(list(by_org)))
    )
    result.organizations = sorted(
        ((public_name(signature), by_org[ident]) for ident, signature in names.all()),
        key=lambda pair: (-pair[1].received, pair[0]),
    )
    result.governorates = dict(sorted(governorates.items()))
    result.needs = {n: needs[n] for n in NEEDS if n in needs}
    return result


COLUMNS = ("open", "accepted", "declined", "expired", "helped", "confirmed")
COLUMN_LABELS: dict[str, str] = {
    "received": N_("Received"),
    "open": N_("Open"),
    "accepted": N_("Accepted"),
    "declined": N_("Declined"),
    "expired": N_("No answer in time"),
    "helped": N_("Helped"),
    "confirmed": N_("Confirmed by the family"),
}


def hours_text(hours: float | None) -> str:
    """A median time to answer, in hours, or a dash before any answer."""
    if hours is None:
        return "-"
    return ngettext("%(count)s hour", "%(count)s hours", round(hours)) % {
        "count": isolate(format_number(round(hours)))
    }
