"""Signatory organizations' relief capacity: the rules written once (who belongs and who may
edit, invitation codes, suspension, what a capacity may hold), for the chat, the web console and
the CLI.

An organization exists once its signature is verified; it is active while the signature stays
verified. A withdrawn or rejected signature suspends it: it keeps its capacity and members, but
receives no referrals and cannot invite.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import NEEDS
from bot.gazetteer import place
from bot.models import (
    AuditEntry,
    Contact,
    Organization,
    OrganizationInvitation,
    OrganizationMember,
    Signature,
)

logger = logging.getLogger(__name__)

INVITATION_DAYS = 7
INVITATIONS_PER_DAY = 5  # an organization's codes a day: enough for a team, few to leak
JOIN_TRIES_PER_HOUR = 5  # wrong codes one person may type an hour: guessing stays hopeless
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L to misread
CODE_LENGTH = 10  # 31^10 ≈ 8e14 codes
CODE_LIMIT = 40  # characters read of a typed code, before any work
REPRESENTATIVE = "representative"
COLLEAGUE = "colleague"


class Refused(Exception):
    """A rule says no; `reason` names which (the chat and the console word it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Membership:
    """A person's place in an organization, with the organization and its signature."""

    organization: Organization
    member: OrganizationMember
    signature: Signature

    @property
    def active(self) -> bool:
        """Whether the organization may receive referrals: its signature is verified."""
        return is_active(self.signature)

    @property
    def may_edit(self) -> bool:
        """Whether this person may change the capacity and manage colleagues."""
        return self.member.role == REPRESENTATIVE and self.active


def is_active(signature: Signature) -> bool:
    """An organization is active while its signature is verified (withdrawn, rejected: not)."""
    return signature.status == "verified"


def digest(code: str) -> str:
    """The stored form of an invitation code."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def normalize_code(text: str) -> str | None:
    """A typed code in its canonical form (case, spaces, dashes and any script's digits
    ignored), or None if it cannot be one."""
    text = text[:CODE_LIMIT]
    chars = []
    for ch in text:
        if ch in " -_\u200f\u200e\u061c":
            continue
        if ch.isdigit():
            ch = str(unicodedata.digit(ch, 0))
        chars.append(ch.upper())
    code = "".join(chars)
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        return None
    return code


def show_code(code: str) -> str:
    """A code in two halves, easier to read aloud."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


async def ensure(session: AsyncSession, signature: Signature, now: datetime) -> Organization:
    """The organization of a verified signature, created (with its representative as member)
    the first time it is needed."""
    organization = await session.scalar(
        select(Organization).where(Organization.signature_id == signature.id)
    )
    if organization is None:
        organization = Organization(
            signature_id=signature.id,
            needs=[],
            governorates=[],
            districts=[],
            disclose_name=False,
            created_at=now,
            updated_at=now,
        )
        session.add(organization)
        await session.flush()
    if signature.contact_id is not None:
        taken = await session.scalar(
            select(OrganizationMember).where(OrganizationMember.contact_id == signature.contact_id)
        )
        if taken is None:
            session.add(
                OrganizationMember(
                    organization_id=organization.id,
                    contact_id=signature.contact_id,
                    role=REPRESENTATIVE,
                    joined_at=now,
                )
            )
            await session.flush()
    return organization


async def membership(session: AsyncSession, contact: Contact, now: datetime) -> Membership | None:
    """The person's organization, if they belong to one; a representative whose signature is
    verified belongs from then on (the organization is made on first use)."""
    member = await session.scalar(
        select(OrganizationMember).where(OrganizationMember.contact_id == contact.id)
    )
    if member is None:
        signature = await session.scalar(
            select(Signature)
            .where(Signature.contact_id == contact.id, Signature.status == "verified")
            .order_by(Signature.id.desc())
            .limit(1)
        )
        if signature is None:
            return None
        await ensure(session, signature, now)
        member = await session.scalar(
            select(OrganizationMember).where(OrganizationMember.contact_id == contact.id)
        )
        if member is None:
            return None
    organization = await session.get(Organization, member.organization_id)
    assert organization is not None
    signature = await session.get(Signature, organization.signature_id)
    assert signature is not None
    return Membership(organization, member, signature)


async def shows_menu(session: AsyncSession, contact: Contact) -> bool:
    """Whether "My organization" belongs in this person's menu (a cheap read, no writes)."""
    if await session.scalar(
        select(OrganizationMember.id).where(OrganizationMember.contact_id == contact.id)
    ):
        return True
    verified = await session.scalar(
        select(Signature.id)
        .where(Signature.contact_id == contact.id, Signature.status == "verified")
        .limit(1)
    )
    return verified is not None


def clean_needs(needs: Iterable[str]) -> list[str]:
    """The needs among the report's sectors, in their order; anything else refused."""
    chosen = set(needs)
    if not chosen <= set(NEEDS):
        raise Refused("need")
    return [n for n in NEEDS if n in chosen]


def clean_areas(
    governorates: Iterable[str], districts: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Governorates and districts as P-codes that exist; a district's governorate is added
    with it, so that a search by governorate finds the organization too."""
    govs: list[str] = []
    for pcode in governorates:
        found = place(pcode)
        if found is None or found.parent is not None:
            raise Refused("place")
        if found.pcode not in govs:
            govs.append(found.pcode)
    dists: list[str] = []
    for pcode in districts:
        found = place(pcode)
        if found is None or found.parent is None:
            raise Refused("place")
        if found.pcode not in dists:
            dists.append(found.pcode)
        if found.parent not in govs:
            govs.append(found.parent)
    return sorted(govs), sorted(dists)


def _audit(actor: str, action: str, organization: Organization, now: datetime) -> AuditEntry:
    return AuditEntry(
        at=now,
        actor=actor,
        action=f"organization:{action}",
        detail={"organization": organization.id, "signature": organization.signature_id},
    )


async def set_capacity(
    session: AsyncSession,
    organization: Organization,
    actor: str,
    now: datetime,
    *,
    needs: Iterable[str] | None = None,
    governorates: Iterable[str] | None = None,
    districts: Iterable[str] | None = None,
    disclose_name: bool | None = None,
) -> None:
    """Change what the organization can do and where (the parts given); audited. The caller
    has checked that `actor` may edit (Membership.may_edit, or a console permission)."""
    # Everything checked before anything changes: a refusal leaves the row as it was.
    cleaned_needs = clean_needs(needs) if needs is not None else organization.needs
    govs, dists = organization.governorates, organization.districts
    if governorates is not None or districts is not None:
        govs, dists = clean_areas(
            govs if governorates is None else governorates,
            dists if districts is None else districts,
        )
    organization.needs, organization.governorates, organization.districts = (
        cleaned_needs,
        govs,
        dists,
    )
    if disclose_name is not None:
        organization.disclose_name = disclose_name
    organization.updated_at = now
    session.add(_audit(actor, "capacity", organization, now))
    await session.flush()


async def invite(
    session: AsyncSession, mine: Membership, actor: str, now: datetime
) -> tuple[str, datetime]:
    """A new one-time code for a colleague, and when it expires. Only the representative of an
    active organization may invite, a few times a day."""
    if mine.member.role != REPRESENTATIVE:
        raise Refused("not_representative")
    if not mine.active:
        raise Refused("suspended")
    today = await session.scalar(
        select(func.count())
        .select_from(OrganizationInvitation)
        .where(
            OrganizationInvitation.organization_id == mine.organization.id,
            OrganizationInvitation.created_at > now - timedelta(days=1),
        )
    )
    if (today or 0) >= INVITATIONS_PER_DAY:
        raise Refused("too_many_invitations")
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires = now + timedelta(days=INVITATION_DAYS)
    session.add(
        OrganizationInvitation(
            code_hash=digest(code),
            organization_id=mine.organization.id,
            created_at=now,
            expires_at=expires,
        )
    )
    session.add(_audit(actor, "invite", mine.organization, now))
    await session.flush()
    return code, expires


async def join(session: AsyncSession, contact: Contact, text: str, now: datetime) -> Membership:
    """Join an organization with a code typed by a colleague. Wrong codes are counted per
    person (JOIN_TRIES_PER_HOUR); a used, expired or unknown code reads alike ("invalid"), so
    that a guess learns nothing."""
    tries = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.actor == contact.address,
            AuditEntry.action == "organization:join-failed",
            AuditEntry.at > now - timedelta(hours=1),
        )
    )
    if (tries or 0) >= JOIN_TRIES_PER_HOUR:
        raise Refused("too_many_tries")
    if await session.scalar(
        select(OrganizationMember.id).where(OrganizationMember.contact_id == contact.id)
    ):
        raise Refused("already_member")
    code = normalize_code(text)
    invitation = (
        await session.get(OrganizationInvitation, digest(code)) if code is not None else None
    )
    if invitation is None or invitation.used_at is not None or invitation.expires_at <= now:
        session.add(
            AuditEntry(at=now, actor=contact.address, action="organization:join-failed", detail={})
        )
        await session.flush()
        raise Refused("invalid")
    organization = await session.get(Organization, invitation.organization_id)
    assert organization is not None
    signature = await session.get(Signature, organization.signature_id)
    assert signature is not None
    if not is_active(signature):
        raise Refused("suspended")
    invitation.used_at = now
    member = OrganizationMember(
        organization_id=organization.id, contact_id=contact.id, role=COLLEAGUE, joined_at=now
    )
    session.add(member)
    session.add(_audit(contact.address, "join", organization, now))
    await session.flush()
    return Membership(organization, member, signature)


async def members(session: AsyncSession, organization: Organization) -> list[OrganizationMember]:
    """Who receives the organization's referrals: the representative first, then colleagues
    in the order they joined."""
    rows = await session.scalars(
        select(OrganizationMember)
        .where(OrganizationMember.organization_id == organization.id)
        .order_by(OrganizationMember.joined_at, OrganizationMember.id)
    )
    return sorted(rows, key=lambda m: m.role != REPRESENTATIVE)


async def remove(
    session: AsyncSession, mine: Membership, member_id: int, actor: str, now: datetime
) -> None:
    """The representative removes a colleague of their own organization."""
    if mine.member.role != REPRESENTATIVE:
        raise Refused("not_representative")
    member = await session.get(OrganizationMember, member_id)
    if (
        member is None
        or member.organization_id != mine.organization.id
        or member.role != COLLEAGUE
    ):
        raise Refused("not_a_colleague")
    await session.delete(member)
    session.add(_audit(actor, "remove", mine.organization, now))
    await session.flush()


async def leave(session: AsyncSession, mine: Membership, actor: str, now: datetime) -> None:
    """A colleague leaves the organization (a representative leaves by withdrawing)."""
    if mine.member.role != COLLEAGUE:
        raise Refused("not_a_colleague")
    await session.delete(mine.member)
    session.add(_audit(actor, "leave", mine.organization, now))
    await session.flush()


async def verified(session: AsyncSession, now: datetime) -> list[tuple[Organization, Signature]]:
    """Every organization whose signature was ever verified, for the console: those verified
    are made on first use, as in the chat; the suspended stay listed, marked by their status."""
    for signature in await session.scalars(
        select(Signature).where(Signature.status == "verified")
    ):
        await ensure(session, signature, now)
    rows = await session.execute(
        select(Organization, Signature)
        .join(Signature, Signature.id == Organization.signature_id)
        .order_by(Signature.name_key, Organization.id)
    )
    return [(o, s) for o, s in rows.all()]
