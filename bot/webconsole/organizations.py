"""The console's page of signatory organizations: their relief capacity, seen and edited by
coordinators and admins. The rules are bot.organizations'; the plumbing is the Console's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot import organizations, signatures
from bot.gazetteer import GOVERNORATES, districts_of
from bot.i18n import N_, _, use_locale
from bot.models import AuditEntry, Organization, Signature, utcnow
from bot.reports import NEED_LABELS

if TYPE_CHECKING:
    from bot.webconsole import Console

PERMISSION = "organizations"
SUSPENDED = N_(
    "This organization's signature is no longer verified: it receives no requests for now."
)
FROM_THE_LISTS = N_("Choose needs and places from the lists.")


def routes(console: Console) -> list[BaseRoute]:
    """The page's routes, bound to the console."""

    async def page(request: Request, *, problem: str | None = None) -> Response:
        """Every organization whose signature was verified, with its capacity and a form."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        who, locale = found
        async with console.db.transaction() as session:
            rows = await organizations.verified(session, utcnow())
            counts = {o.id: len(await organizations.members(session, o)) for o, _s in rows}
            session.add(AuditEntry(actor=who.address, action="console:organizations", detail={}))
            with use_locale(locale):
                context = {
                    "organizations": [view(o, s, counts[o.id], locale) for o, s in rows],
                    "needs": [(code, _(label)) for code, label in NEED_LABELS.items()],
                    "governorates": [
                        (
                            g.pcode,
                            g.name(locale),
                            [(d.pcode, d.name(locale)) for d in districts_of(g.pcode)],
                        )
                        for g in GOVERNORATES
                    ],
                    "problem": problem,
                }
        return console.render(
            request,
            "organizations.html",
            context,
            who=who,
            locale=locale,
            status=400 if problem else 200,
        )

    async def change(request: Request) -> Response:
        """Save one organization's capacity, checked by the service's rules; audited."""
        post = await console.posted(request, PERMISSION)
        if isinstance(post, Response):
            return post
        who, locale, pairs, fields = post.who, post.locale, post.pairs, post.fields
        ident = fields.get("id", "")
        if not (ident.isascii() and ident.isdigit() and len(ident) <= 9):
            return console.bad_request(request, locale, who)

        def many(name: str) -> list[str]:
            return [value for key, value in pairs if key == name]

        problem: str | None = None  # an N_ message
        async with console.db.transaction() as session:
            organization = await session.get(Organization, int(ident))
            if organization is None:
                return console.bad_request(request, locale, who)
            signature = await session.get(Signature, organization.signature_id)
            if signature is None or not organizations.is_active(signature):
                problem = SUSPENDED
            else:
                try:
                    await organizations.set_capacity(
                        session,
                        organization,
                        who.address,
                        utcnow(),
                        needs=many("need"),
                        governorates=many("gov"),
                        districts=many("district"),
                        disclose_name=fields.get("disclose") == "yes",
                    )
                except organizations.Refused:
                    problem = FROM_THE_LISTS
        if problem is not None:
            with use_locale(locale):
                return await page(request, problem=_(problem))
        response = RedirectResponse("/console/organizations", status_code=303)
        console.protect(response)
        return response

    return [
        Route("/console/organizations", page, methods=["GET"]),
        Route("/console/organizations", change, methods=["POST"]),
    ]


def view(org: Organization, signature: Signature, members: int, locale: str) -> dict[str, Any]:
    """An organization as the page shows it, in the locale."""
    return {
        "id": org.id,
        "name": signatures.public_name(signature),
        "active": organizations.is_active(signature),
        "status": _(signatures.STATUS_LABELS.get(signature.status, "Withdrawn")),
        "needs": set(org.needs),
        "governorates": set(org.governorates),
        "districts": set(org.districts),
        "disclose": org.disclose_name,
        "members": members,
    }
