"""Signatures of the declaration: the rules written once (receipts, probable duplicates,
storing, withdrawing, coordinators' decisions, notices), for the chat flows, the web console and
the CLI. No notice ever says who signed for an organization or how to reach them."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from rapidfuzz import fuzz, process
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot import declaration
from bot.config import Settings
from bot.flows import coordinators
from bot.i18n import N_, _, current_locale, direct, isolate, use_locale
from bot.messages import Address, Button, Outbound
from bot.models import AuditEntry, Contact, Signature
from bot.text import organization_key

logger = logging.getLogger(__name__)

# The duplicate key's column: folding can lengthen a name (NFKC makes ﻻ two letters), and
# PostgreSQL refuses a value longer than its column.
KEY_LIMIT = 200
SIMILARITY = 90  # rapidfuzz score from which two names are probably the same organization
RECEIPT_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
STANDING = ("pending", "verified")  # a signature that stands: not withdrawn, not rejected

TYPE_LABELS: dict[str, str] = {
    "association": N_("Association or NGO"),
    "union": N_("Union or syndicate"),
    "women": N_("Women's organization"),
    "youth": N_("Youth group"),
    "media": N_("Media"),
    "rights": N_("Human-rights group"),
    "professional": N_("Professional association"),
    "other": N_("Other"),
}
STATUS_LABELS: dict[str, str] = {
    "pending": N_("Pending verification"),
    "verified": N_("Verified"),
    "rejected": N_("Not accepted"),
    "withdrawn": N_("Withdrawn"),
}


def is_arabic_script(text: str) -> bool:
    """Whether a name is written mostly in Arabic script (Arabic or Sorani)."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and sum("\u0600" <= ch <= "\u06ff" for ch in letters) > len(letters) / 2


def type_text(value: Any) -> str:
    """A kind of organization named in the current locale."""
    return _(TYPE_LABELS.get(str(value), "Other"))


def public_name(signature: Named) -> str:
    """The organization's name in the reader's script where it has one."""
    names = [signature.name_ar, signature.name_en]
    if current_locale() == "en":
        names.reverse()
    return isolate(next(n for n in names if n)) if any(names) else "-"


VERIFIED = Signature.status == "verified"


class Named(Protocol):
    """What has an organization's names: a signature, or a row of its public fields."""

    name_ar: str | None
    name_en: str | None


async def signatories(
    reader: AsyncSession | AsyncConnection, offset: int, limit: int
) -> tuple[int, Sequence[Any]]:
    """How many organizations are verified, and a page of their public fields (names, kind,
    governorate, city: never a representative), in the order they were verified."""
    total = await reader.scalar(select(func.count()).select_from(Signature).where(VERIFIED))
    rows = await reader.execute(
        select(
            Signature.name_ar,
            Signature.name_en,
            Signature.org_type,
            Signature.governorate,
            Signature.city,
        )
        .where(VERIFIED)
        .order_by(Signature.decided_at, Signature.id)
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), rows.all()


async def active_signature(session: AsyncSession, contact_id: int) -> Signature | None:
    """This person's latest signature that stands (pending or verified)."""
    return await session.scalar(
        select(Signature)
        .where(Signature.contact_id == contact_id, Signature.status.in_(STANDING))
        .order_by(Signature.id.desc())
        .limit(1)
    )


async def similar(session: AsyncSession, names: list[str]) -> tuple[int | None, bool]:
    """The standing signature whose name is closest to one of `names` (from SIMILARITY), and
    whether it is verified; (None, False) when none is close."""
    rows = (
        await session.execute(
            select(Signature.id, Signature.name_ar, Signature.name_en, Signature.status).where(
                Signature.status.in_(STANDING)
            )
        )
    ).all()
    verified = {row.id for row in rows if row.status == "verified"}
    # Every name of every standing signature, in either language, normalized.
    choices = [
        (row.id, organization_key(n)) for row in rows for n in (row.name_ar, row.name_en) if n
    ]
    keys = [key for _id, key in choices]
    best: tuple[int, float] | None = None
    for name in names:
        if not name or not keys:
            continue
        found = process.extractOne(
            organization_key(name), keys, scorer=fuzz.token_sort_ratio, score_cutoff=SIMILARITY
        )
        if found is not None and (best is None or found[1] > best[1]):
            best = (choices[found[2]][0], float(found[1]))
    return (best[0], best[0] in verified) if best else (None, False)


def receipt_code(version: str, key: str, moment: str, salt: int = 0) -> str:
    """A receipt derived from the declaration's version, the organization and the time."""
    digest = hashlib.sha256(f"{version}|{key}|{moment}|{salt}".encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    letters = []
    for _i in range(8):
        number, index = divmod(number, len(RECEIPT_ALPHABET))
        letters.append(RECEIPT_ALPHABET[index])
    return "S-" + "".join(letters)


async def store(
    session: AsyncSession,
    settings: Settings,
    contact: Contact,
    values: Mapping[str, Any],
    *,
    locale: str,
    now: datetime,
) -> tuple[Signature, list[Outbound]]:
    """Save a signature from its column values, pending verification, with a receipt no other
    has; return it with the coordinators' notices to queue."""
    key = organization_key(str(values.get("name_ar") or values.get("name_en")))
    moment = now.isoformat()
    salt = 0
    while True:
        receipt = receipt_code(declaration.VERSION, key, moment, salt)
        taken = await session.scalar(select(Signature.id).where(Signature.receipt == receipt))
        if taken is None:
            break
        salt += 1
    signature = Signature(
        receipt=receipt,
        contact_id=contact.id,
        locale=locale,
        version=declaration.VERSION,
        text_sha256=declaration.sha256(locale),
        name_key=key[:KEY_LIMIT],
        created_at=now,
        **values,
    )
    session.add(signature)
    await session.flush()
    return signature, await notices(session, settings, signature, "new")


async def withdraw(
    session: AsyncSession, settings: Settings, contact_id: int, now: datetime
) -> tuple[Signature | None, list[Outbound]]:
    """Withdraw this person's standing signature; None when none stands (any more)."""
    signature = await active_signature(session, contact_id)
    if signature is None:
        return None, []
    # A coordinator deciding at this moment: wait, and see it after.
    await session.refresh(signature, with_for_update=True)
    if signature.status not in STANDING:
        return None, []
    signature.status = "withdrawn"
    signature.withdrawn_at = now
    return signature, await notices(session, settings, signature, "withdrawn") + await _suspend(
        session, settings, signature, now
    )


async def _suspend(
    session: AsyncSession, settings: Settings, signature: Signature, now: datetime
) -> list[Outbound]:
    """A signature that no longer stands suspends its organization's referrals."""
    from bot import referrals  # bot.referrals names organizations through this module

    return await referrals.suspend(session, settings, signature, now)


async def decide(
    session: AsyncSession,
    signature_id: int,
    status: str,
    reason: str | None,
    *,
    actor: str,
    now: datetime,
) -> tuple[Signature | None, list[Outbound]]:
    """Verify or reject a pending signature, audit it, and return the representative's notice;
    None when it is not pending (any more)."""
    if status not in ("verified", "rejected"):
        raise ValueError(f"not a decision: {status!r}")
    # Locked: another coordinator deciding at this moment waits, then finds it decided.
    signature = await session.get(Signature, signature_id, with_for_update=True)
    if signature is None or signature.status != "pending":
        return None, []
    signature.status = status
    signature.reason = reason
    signature.decided_at = now
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action=f"signature:{status}",
            detail={"signature": signature.id, "receipt": signature.receipt, "reason": reason},
        )
    )
    contact = await session.get(Contact, signature.contact_id) if signature.contact_id else None
    if contact is None:
        return signature, []
    locale = contact.locale or signature.locale
    return signature, [outcome_notice(signature, Address.parse(contact.address), locale)]


async def notices(
    session: AsyncSession, settings: Settings, signature: Signature, event: str
) -> list[Outbound]:
    """A new ("new") or withdrawn signature's notice for every coordinator, in their language."""
    found = []
    for address, locale in await coordinators(session, settings, "signatures"):
        with use_locale(locale):
            if event == "new":
                text = _("New signature of the declaration: %(organization)s") % {
                    "organization": public_name(signature)
                }
                if signature.similar_to is not None:
                    text += "\n" + _("Its name is very close to an earlier signature's.")
            else:
                text = _("A signature was withdrawn: %(organization)s") % {
                    "organization": public_name(signature)
                }
            found.append(
                Outbound(
                    address=address,
                    text=direct(text),
                    buttons=((Button(_("Open the signature"), f"sig:open:{signature.id}"),),),
                    priority="notice",
                )
            )
    return found


def outcome_notice(signature: Signature, address: Address, locale: str) -> Outbound:
    """Tell the representative, in their language, what the coordinators decided."""
    with use_locale(locale):
        if signature.status == "verified":
            text = _(
                "Your organization's signature of the declaration (%(receipt)s) was verified. "
                "Thank you for standing with the Civil Initiative."
            ) % {"receipt": isolate(signature.receipt)}
        else:
            text = _(
                "Your organization's signature (%(receipt)s) could not be accepted. "
                "The reason: %(reason)s"
            ) % {"receipt": isolate(signature.receipt), "reason": signature.reason or "-"}
        return Outbound(address=address, text=direct(text), priority="notice")


# Reasons a coordinator may pick when a signature cannot be accepted; each is sent to the
# representative in their language (a written reason goes as it was written).
REJECT_REASONS: dict[str, str] = {
    "unconfirmed": N_("We could not confirm that the organization exists."),
    "unreachable": N_("We could not reach the representative to confirm the signature."),
    "duplicate": N_("The organization has already signed the declaration."),
    "not_authorized": N_("The representative is not authorized to sign for the organization."),
}


async def undo(
    session: AsyncSession,
    signature_id: int,
    *,
    actor: str,
    now: datetime,
    settings: Settings | None = None,
) -> tuple[Signature | None, list[Outbound]]:
    """Take back a verification or a rejection: the signature is pending again, audited, and
    its representative told; None when it was not decided (any more). A verification taken
    back suspends the organization's referrals (with `settings`, the coordinators are told)."""
    signature = await session.get(Signature, signature_id, with_for_update=True)
    if signature is None or signature.status not in ("verified", "rejected"):
        return None, []
    before = signature.status
    signature.status = "pending"
    signature.reason = None
    signature.decided_at = None
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action="signature:undo",
            detail={"signature": signature.id, "receipt": signature.receipt, "before": before},
        )
    )
    suspended = (
        await _suspend(session, settings, signature, now)
        if before == "verified" and settings is not None
        else []
    )
    contact = await session.get(Contact, signature.contact_id) if signature.contact_id else None
    if contact is None:
        return signature, suspended
    with use_locale(contact.locale or signature.locale):
        text = _(
            "The decision on your organization's signature (%(receipt)s) was taken back. The "
            "coordinators will look at it again and write to you."
        ) % {"receipt": isolate(signature.receipt)}
        return signature, [
            Outbound(address=Address.parse(contact.address), text=direct(text), priority="notice"),
            *suspended,
        ]
