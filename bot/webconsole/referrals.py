"""The console's referrals (#22): the Refer page of a report (coordinators and admins), the
report's referrals on its page, and /console/referrals, the figures (viewers see them too,
without any personal field). The rules are bot.referrals'; the plumbing is the Console's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bot import referrals, reports, roles
from bot.flows import too_long
from bot.i18n import _, format_datetime, use_locale
from bot.messages import Outbound
from bot.models import AuditEntry, Organization, Referral, Report, Signature, utcnow
from bot.organizations import Refused
from bot.text import clean_input
from handlers.referral import REFUSALS

if TYPE_CHECKING:
    from bot.webconsole import Console

PERMISSION = "reports"  # referring is a coordinator's work on a report
FIGURES = "referrals"  # the figures: viewers too


def routes(console: Console) -> list[BaseRoute]:
    """The pages' routes, bound to the console."""

    async def report_of(session: AsyncSession, request: Request) -> Report | None:
        reference = request.path_params["reference"].strip().upper()[:12]
        found: Report | None = await session.scalar(
            select(Report).where(Report.reference == reference)
        )
        return found

    async def refer_page(
        request: Request, *, problem: str | None = None, note: str = ""
    ) -> Response:
        """The organizations that can help with a report, best first, with their record."""
        found = await console.allowed(request, PERMISSION)
        if isinstance(found, Response):
            return found
        who, locale = found
        async with console.db.transaction() as session:
            report = await report_of(session, request)
            if report is None:
                return console.render(
                    request, "not_found.html", {}, who=who, locale=locale, status=404
                )
            suggested = await referrals.suggestions(session, report)
            session.add(
                AuditEntry(
                    actor=who.address,
                    action="console:refer",
                    report_id=report.id,
                    detail={"suggested": len(suggested)},
                )
            )
            with use_locale(locale):
                context = {
                    "report": report,
                    "urgent": reports.need_text(report.urgent),
                    "needs": reports.needs_text(report.needs),
                    "place": reports.place_name(report.district or report.governorate),
                    "suggestions": [
                        {
                            "id": s.organization.id,
                            "name": s.name,
                            "area": reports.place_name(
                                report.district if s.in_district else report.governorate
                            ),
                            "needs": reports.needs_text(s.needs),
                            "urgent": s.urgent,
                            "record": s.record,
                            "median": referrals.hours_text(s.record.median_hours),
                        }
                        for s in suggested
                    ],
                    "forgotten": report.anonymized_at is not None or report.contact_id is None,
                    "shares": report.share_phone and report.contact_ok,
                    "limit": referrals.NOTE_LIMIT,
                    "problem": problem,
                    "note": note,
                }
        return console.render(
            request,
            "refer.html",
            context,
            who=who,
            locale=locale,
            status=400 if problem else 200,
        )

    async def refer(request: Request) -> Response:
        """Refer the report to the organization chosen, with the note; the members are told."""
        post = await console.posted(request, PERMISSION)
        if isinstance(post, Response):
            return post
        who, locale, fields = post.who, post.locale, post.fields
        from bot.webconsole import FORM_LIMIT  # this module is imported by that one

        note = clean_input(fields.get("note", ""), limit=FORM_LIMIT)
        ident = referrals.parse_id(fields.get("organization", ""))
        with use_locale(locale):
            if len(note) > referrals.NOTE_LIMIT:
                return await refer_page(
                    request, problem=too_long(referrals.NOTE_LIMIT, len(note)), note=note
                )
            if ident is None:
                return await refer_page(request, problem=_(REFUSALS["not_suggested"]), note=note)
        problem: str | None = None
        sent: list[Outbound] = []
        reference = ""
        async with console.db.transaction() as session:
            report = await report_of(session, request)
            if report is None:
                return console.render(
                    request, "not_found.html", {}, who=who, locale=locale, status=404
                )
            try:
                _referral, sent = await referrals.refer(
                    session,
                    console.settings,
                    report,
                    ident,
                    actor=who.address,
                    note=note,
                    now=utcnow(),
                )
            except Refused as error:
                problem = REFUSALS.get(error.reason, REFUSALS["not_suggested"])
            else:
                await console.queue(session, sent)
                reference = report.reference
        if problem is not None:
            with use_locale(locale):
                return await refer_page(request, problem=_(problem), note=note)
        console.woken(sent)
        response = RedirectResponse(f"/console/reports/{reference}", status_code=303)
        console.protect(response)
        return response

    async def figures_page(request: Request) -> Response:
        """The referral figures; the latest referrals for those who may open reports."""
        found = await console.allowed(request, FIGURES)
        if isinstance(found, Response):
            return found
        who, locale = found
        detailed = roles.may(who.role, PERMISSION)
        async with console.db.transaction() as session:
            figures = await referrals.figures(session)
            latest = await latest_referrals(session, locale, console.settings.timezone)
            session.add(AuditEntry(actor=who.address, action="console:referrals", detail={}))
            with use_locale(locale):
                context = {
                    "columns": [(c, _(referrals.COLUMN_LABELS[c])) for c in referrals.COLUMNS],
                    "totals": figures.totals,
                    "organizations": [
                        (name, record, referrals.hours_text(record.median_hours))
                        for name, record in figures.organizations
                    ],
                    "governorates": [
                        (reports.place_name(pcode), counts)
                        for pcode, counts in figures.governorates.items()
                    ],
                    "needs": [
                        (reports.need_text(need), counts) for need, counts in figures.needs.items()
                    ],
                    "latest": latest if detailed else [],
                    "detailed": detailed,
                }
        return console.render(request, "referrals.html", context, who=who, locale=locale)

    return [
        Route("/console/reports/{reference}/refer", refer_page, methods=["GET"]),
        Route("/console/reports/{reference}/refer", refer, methods=["POST"]),
        Route("/console/referrals", figures_page, methods=["GET"]),
    ]


async def latest_referrals(
    session: AsyncSession, locale: str, timezone: str, report: Report | None = None
) -> list[dict[str, Any]]:
    """The latest referrals (of one report, or of all), for the console, in the locale."""
    query = (
        select(Referral, Report.reference, Signature)
        .join(Report, Report.id == Referral.report_id)
        .join(Organization, Organization.id == Referral.organization_id)
        .join(Signature, Signature.id == Organization.signature_id)
        .order_by(Referral.id.desc())
        .limit(50)
    )
    if report is not None:
        query = query.where(Referral.report_id == report.id)
    rows = (await session.execute(query)).all()
    with use_locale(locale):
        return [
            {
                "reference": reference,
                "organization": referrals.public_name(signature),
                "status": _(referrals.STATUS_LABELS.get(referral.status, "Accepted")),
                "sent": format_datetime(referral.created_at, timezone),
                "confirmed": _(referrals.CONFIRM_LABELS[referral.confirmed])
                if referral.confirmed in referrals.CONFIRM_LABELS
                else "",
            }
            for referral, reference, signature in rows
        ]
