"""Who may do what: the people with a role, kept in the database, and what each role may do.

Every change is audited. `COORDINATORS` from the environment still works: at start, its
addresses become admins if they have no role yet (`adopt`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.messages import Address
from bot.models import AuditEntry, Contact, Person, utcnow

ROLES = ("admin", "coordinator", "editor", "viewer")
ROLE_LABELS = {
    "admin": N_("Administrator"),
    "coordinator": N_("Coordinator"),
    "editor": N_("Bulletin editor"),
    "viewer": N_("Viewer"),
}
ROLE_HELP = {
    "admin": N_("people, and everything else"),
    "coordinator": N_("reports, signatures, exports and personal fields"),
    "editor": N_("bulletins"),
    "viewer": N_("figures and the map, no personal field"),
}
# What each role may do. "personal": see a family's or representative's personal fields.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "people",
            "audit",
            "reports",
            "personal",
            "signatures",
            "organizations",
            "referrals",
            "exports",
            "bulletins",
            "map",
        }
    ),
    "coordinator": frozenset(
        {"reports", "personal", "signatures", "organizations", "referrals", "exports", "map"}
    ),
    "editor": frozenset({"bulletins", "map"}),
    # "referrals": the referral figures, which hold no personal field
    "viewer": frozenset({"map", "referrals"}),
}
NAME_LIMIT = 100


class RoleError(ValueError):
    """A role change that cannot be made: the message says why, for the CLI and the console."""


def may(role: str | None, permission: str) -> bool:
    """Whether a role (None: no role) has a permission."""
    return role is not None and permission in PERMISSIONS.get(role, frozenset())


def parse_address(text: str) -> str:
    """An address as stored (`telegram:123`), or RoleError naming the expected form."""
    try:
        return str(Address.parse(text))
    except ValueError:
        raise RoleError(
            f"not an address: {text.strip()!r} (expected telegram:ID, whatsapp:+PHONE or "
            "console:NAME)"
        ) from None


async def role_of(session: AsyncSession, address: str | Address) -> str | None:
    """The person's role, or None."""
    return await session.scalar(select(Person.role).where(Person.address == str(address)))


async def effective(
    session: AsyncSession, address: str | Address, coordinators: frozenset[Address]
) -> str | None:
    """The role the person acts with: theirs in the database; else admin for an address in
    COORDINATORS (bot.runtime adopts them at start; tests and tools may not have)."""
    role = await role_of(session, address)
    if role is None and Address.parse(str(address)) in coordinators:
        return "admin"
    return role


async def everyone(session: AsyncSession) -> list[Person]:
    """Every person with a role, admins first, then by address."""
    rows = (await session.scalars(select(Person))).all()
    return sorted(rows, key=lambda p: (ROLES.index(p.role) if p.role in ROLES else 9, p.address))


async def with_permission(
    session: AsyncSession, permission: str, default_locale: str
) -> list[tuple[Address, str]]:
    """Everyone whose role has the permission, with the language they chose in the chat."""
    roles = [role for role, allowed in PERMISSIONS.items() if permission in allowed]
    rows = await session.execute(
        select(Person.address, Contact.locale)
        .outerjoin(Contact, Contact.address == Person.address)
        .where(Person.role.in_(roles))
        .order_by(Person.address)
    )
    return [(Address.parse(address), locale or default_locale) for address, locale in rows]


async def set_role(
    session: AsyncSession,
    address: str,
    role: str,
    actor: str,
    *,
    name: str | None = None,
    now: datetime | None = None,
) -> str | None:
    """Give a person a role (adding them if new); the role they had before, or None."""
    if role not in ROLES:
        raise RoleError(f"not a role: {role!r} (one of {', '.join(ROLES)})")
    address = parse_address(address)
    if name is not None:
        name = " ".join(name.split())[:NAME_LIMIT] or None
    person = await session.get(Person, address)
    before = person.role if person else None
    if person is None:
        person = Person(address=address, role=role, name=name, added_by=actor)
        person.added_at = now or utcnow()
        session.add(person)
    else:
        if before == "admin" and role != "admin":
            await _keep_an_admin(session, address)
        person.role = role
        if name is not None:
            person.name = name
    if before != role:
        session.add(
            AuditEntry(
                at=now or utcnow(),
                actor=actor,
                action="role:set",
                detail={"address": address, "before": before, "after": role},
            )
        )
    return before


async def remove(
    session: AsyncSession, address: str, actor: str, *, now: datetime | None = None
) -> str:
    """Take a person's role away (their sessions and links go with it); the role they had."""
    address = parse_address(address)
    person = await session.get(Person, address)
    if person is None:
        raise RoleError(f"{address} has no role")
    if person.role == "admin":
        await _keep_an_admin(session, address)
    before = person.role
    # Deleted by statement, so that the database's ON DELETE CASCADE ends their sessions.
    await session.execute(delete(Person).where(Person.address == address))
    session.expunge(person)
    session.add(
        AuditEntry(
            at=now or utcnow(),
            actor=actor,
            action="role:remove",
            detail={"address": address, "before": before, "after": None},
        )
    )
    return before


async def _keep_an_admin(session: AsyncSession, leaving: str) -> None:
    """Refuse to leave the Initiative without an admin: nobody could then manage people."""
    others = await session.scalar(
        select(Person.address).where(Person.role == "admin", Person.address != leaving).limit(1)
    )
    if others is None:
        raise RoleError("the last admin cannot be removed or demoted: add another admin first")


async def adopt(session: AsyncSession, addresses: Iterable[Address]) -> list[str]:
    """Make admins of the COORDINATORS addresses that have no role yet; those adopted."""
    adopted = []
    for address in sorted(addresses, key=str):
        if await role_of(session, address) is None:
            await set_role(session, str(address), "admin", "settings:COORDINATORS")
            adopted.append(str(address))
    return adopted
