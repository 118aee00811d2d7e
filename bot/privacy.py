"""A person's own data: what we hold about them ("My data") and forgetting them.

Both follow bot.personal's declaration: "My data" shows every column declared shown, and
forgetting blanks every column declared personal, so a new field is covered by both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins
from bot.messages import Outbound
from bot.models import (
    AuditEntry,
    Base,
    Contact,
    Conversation,
    Organization,
    OrganizationMember,
    OutboxMessage,
    Referral,
    Report,
    ReportMessage,
    Signature,
)
from bot.personal import blanks, shown_columns

# What an audit entry about a forgotten person keeps: who acted, what, when, and these keys of
# its detail (a status before and after, which signature); not a note, not a reason.
AUDIT_KEEPS = frozenset(
    {"before", "after", "signature", "receipt", "step", "referral", "organization", "answer"}
)
FORGOTTEN_ACTOR = "forgotten"
# The address a forgotten person's bulletin deliveries keep for the figures: no one's.
FORGOTTEN = "forgotten"


@dataclass
class Holding:
    """One row held about a person: its table, a heading, and each shown column's value."""

    table: str
    heading: str
    # (column, label, kind, value)
    values: list[tuple[str, str, str, Any]] = field(default_factory=list)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _values(model: type[Base], row: Any) -> list[tuple[str, str, str, Any]]:
    """Each shown column of a row, as (column, label, kind, value), in the declaration's order."""
    return [
        (column.key, column.info["label"], column.info["kind"], getattr(row, column.key))
        for column in shown_columns(_table(model))
    ]


async def holdings(session: AsyncSession, contact: Contact) -> list[Holding]:
    """Everything held about a person, row by row: contact, conversation, reports, signatures,
    and the messages to them still in the outbox."""
    found = [Holding("contacts", "", _values(Contact, contact))]
    conversation = await session.get(Conversation, contact.id)
    if conversation is not None and conversation.data:
        found.append(Holding("conversations", "", _values(Conversation, conversation)))
    for report in await session.scalars(
        select(Report).where(Report.contact_id == contact.id).order_by(Report.id)
    ):
        found.append(Holding("reports", report.reference, _values(Report, report)))
        # What was written about the family when its report was referred (bot.referrals).
        for referral in await session.scalars(
            select(Referral)
            .where(
                Referral.report_id == report.id,
                or_(Referral.note.is_not(None), Referral.outcome_note.is_not(None)),
            )
            .order_by(Referral.id)
        ):
            found.append(Holding("referrals", report.reference, _values(Referral, referral)))
        for message in await session.scalars(
            select(ReportMessage)
            .where(ReportMessage.report_id == report.id)
            .order_by(ReportMessage.at, ReportMessage.id)
        ):
            found.append(
                Holding("report_messages", report.reference, _values(ReportMessage, message))
            )
    for signature in await session.scalars(
        select(Signature).where(Signature.contact_id == contact.id).order_by(Signature.id)
    ):
        found.append(Holding("signatures", signature.receipt, _values(Signature, signature)))
    for member, signature in (
        await session.execute(
            select(OrganizationMember, Signature)
            .join(Organization, Organization.id == OrganizationMember.organization_id)
            .join(Signature, Signature.id == Organization.signature_id)
            .where(OrganizationMember.contact_id == contact.id)
        )
    ).all():
        name = signature.name_ar or signature.name_en or ""
        found.append(Holding("organization_members", name, _values(OrganizationMember, member)))
    messages = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.address == contact.address)
        .group_by(OutboxMessage.status)
    )
    counts: dict[str, int] = {status: n for status, n in messages.all()}
    if counts:
        found.append(
            Holding("outbox", "", [(status, status, "count", n) for status, n in counts.items()])
        )
    return found


async def anonymize_reports(session: AsyncSession, where: Any, now: datetime) -> list[int]:
    """Blank the personal fields of the reports matched by `where`; return their ids. The
    anonymous counts stay, for relief planning."""
    result = await session.execute(
        update(Report)
        .where(where, Report.anonymized_at.is_(None))
        .values(**blanks(_table(Report)), anonymized_at=now)
        .returning(Report.id)
    )
    return list(result.scalars().all())


async def forget(session: AsyncSession, contact: Contact, now: datetime) -> list[Outbound]:
    """Forget a person, in this transaction: the contact, its conversation and messages go;
    the personal fields of its reports and signatures are blanked; audit entries about them
    keep who acted and what, not the content.

    A verified signature stays as the organization's, its representative's fields blank; a
    pending one is withdrawn: nobody would be left to answer the coordinators about it.

    Open referrals of its reports are withdrawn (bot.referrals): the notices to return tell
    each organization only that the request was withdrawn.
    """
    from bot import referrals  # bot.referrals reads reports, which read the flows

    withdrawn = await referrals.withdraw_for_family(session, contact, now)
    await anonymize_reports(session, Report.contact_id == contact.id, now)
    report_ids = list(
        await session.scalars(select(Report.id).where(Report.contact_id == contact.id))
    )
    # What the coordinators and the organizations wrote about the family in its referrals.
    await session.execute(
        update(Referral)
        .where(Referral.report_id.in_(report_ids))
        .values(**blanks(_table(Referral)))
    )
    signature_ids = list(
        await session.scalars(select(Signature.id).where(Signature.contact_id == contact.id))
    )
    await session.execute(
        update(Signature)
        .where(Signature.contact_id == contact.id, Signature.status == "pending")
        .values(status="withdrawn", withdrawn_at=now)
    )
    await session.execute(
        update(Signature)
        .where(Signature.contact_id == contact.id)
        .values(**blanks(_table(Signature)), forgotten_at=now)
    )
    # They no longer receive an organization's referrals (the database would cascade too).
    await session.execute(
        delete(OrganizationMember).where(OrganizationMember.contact_id == contact.id)
    )
    # What the family and the coordinators wrote to each other about its reports.
    await session.execute(delete(ReportMessage).where(ReportMessage.report_id.in_(report_ids)))
    await _forget_in_audit(session, contact.address, report_ids, signature_ids)
    # A bulletin that went to them stays counted, without them: its delivery row keeps only
    # its outcome (an address that is no one's, no platform id, the reason without a number),
    # and retention counts it into the bulletin's tally with the others' (bot.bulletins).
    kept = OutboxMessage.bulletin_id.is_not(None) & (OutboxMessage.status != "pending")
    outcomes = await session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.error).where(
            OutboxMessage.address == contact.address, kept
        )
    )
    for ident, status, error in outcomes.all():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == ident)
            .values(
                address=FORGOTTEN,
                contact_id=None,
                platform_message_id=None,
                error=None if error is None else bulletins.reason(status, error),
            )
        )
    # Messages to them, and copies of their data on their way to others.
    await session.execute(
        delete(OutboxMessage).where(
            or_(OutboxMessage.address == contact.address, OutboxMessage.subject_id == contact.id)
        )
    )
    await session.delete(contact)  # the conversation goes with it (ON DELETE CASCADE)
    await session.flush()
    return withdrawn


async def _forget_in_audit(
    session: AsyncSession, address: str, report_ids: list[int], signature_ids: list[int]
) -> None:
    """Strip the content from audit entries about these reports and signatures, and the
    person's address from entries they made."""
    # The detail is encrypted, so a signature's entries are found by their action, then read.
    entries = await session.scalars(
        select(AuditEntry).where(
            or_(
                AuditEntry.report_id.in_(report_ids),
                AuditEntry.action.like("signature:%"),
                AuditEntry.actor == address,
            )
        )
    )
    for entry in entries:
        about_them = entry.report_id in report_ids or entry.detail.get("signature") in set(
            signature_ids
        )
        if about_them:
            entry.detail = {
                **{k: v for k, v in entry.detail.items() if k in AUDIT_KEEPS},
                "forgotten": True,
            }
        if entry.actor == address:
            entry.actor = FORGOTTEN_ACTOR
