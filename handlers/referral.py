"""Referrals in the chat (#22): a coordinator refers a report to an organization (the Refer
button of /report R-…) and reads the figures (/referrals); the organization's members accept,
decline and say how it went; the family says whether the help came. The rules are
bot.referrals'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot import organizations, referrals
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
    stay,
    to_menu,
)
from bot.i18n import N_, _, isolate
from bot.messages import Button, Outbound
from bot.models import Organization, Referral, Report, Signature
from bot.organizations import Refused
from bot.reports import NEED_LABELS, need_text, place_name
from bot.signatures import public_name
from handlers.coordinator import find_report

# One of bot.referrals' answers: accept, decline, helped, not_helped.
Answer = Callable[..., Awaitable[tuple[Referral, list[Outbound]]]]
# What each refusal of bot.referrals says.
REFUSALS: dict[str, str] = {
    "not_yours": N_("This request is not one of your organization's."),
    "answered": N_("This request has been answered already, or is closed."),
    "suspended": N_(
        "This organization's signature is no longer verified: it receives no requests for now."
    ),
    "forgotten": N_("The family deleted its data: this report can no longer be referred."),
    "not_suggested": N_(
        "This organization cannot take this report now: choose one from the list."
    ),
    "need": N_("Please choose the needs from the list."),
    "reason": N_("Please choose a reason from the list."),
}


def refusal(error: Refused) -> str:
    """A refusal in the reader's language."""
    return _(REFUSALS.get(error.reason, REFUSALS["not_yours"]))


async def membership(ctx: Ctx) -> organizations.Membership | None:
    """The person's organization, if any."""
    return await organizations.membership(ctx.session, ctx.contact, ctx.now)


# -- the organization -------------------------------------------------------------------------


async def open_one(ctx: Ctx, rest: str) -> Transition:
    """Show one of the organization's referrals (audited), with what may be pressed now."""
    try:
        referral, report = await referrals.for_member(
            ctx.session,
            await membership(ctx),
            referrals.parse_id(rest),
            actor=str(ctx.address),
            now=ctx.now,
        )
    except Refused as error:
        ctx.say(refusal(error))
        return stay()
    ctx.say(
        referrals.request_text(referral, report),
        buttons=referrals.answer_buttons(referral),
        about=report.contact_id,
    )
    return stay()


async def answered(ctx: Ctx, answer: Answer, ident: int | None, *args: Any) -> Referral | None:
    """Give one of bot.referrals' answers for this member's organization: queue the messages
    it makes for others, or say why it was refused (None)."""
    try:
        referral, told = await answer(
            ctx.session,
            ctx.settings,
            await membership(ctx),
            ident,
            *args,
            actor=str(ctx.address),
            now=ctx.now,
        )
    except Refused as error:
        ctx.say(refusal(error))
        return None
    ctx.extra += told
    return referral


async def accept(ctx: Ctx, rest: str) -> Transition:
    """Accept a referral: the family is told."""
    referral = await answered(ctx, referrals.accept, referrals.parse_id(rest))
    if referral is not None:
        ctx.say(
            _(
                "Thank you: you accepted this request. The family was told that an "
                "organization has it. When you have helped, press \u201cWe helped\u201d."
            ),
            buttons=referrals.answer_buttons(referral),
        )
    return stay()


async def waiting(ctx: Ctx, rest: str, status: str) -> tuple[Referral, Report] | None:
    """The member's own referral, if it is in `status` (the answer needs it); else None, said."""
    try:
        referral, report = await referrals.for_member(
            ctx.session,
            await membership(ctx),
            referrals.parse_id(rest),
            actor=str(ctx.address),
            now=ctx.now,
        )
    except Refused as error:
        ctx.say(refusal(error))
        return None
    if referral.status != status:
        ctx.say(_(REFUSALS["answered"]))
        return None
    return referral, report


async def decline(ctx: Ctx, rest: str) -> Transition:
    """Decline a referral: ask why first."""
    found = await waiting(ctx, rest, "sent")
    return stay() if found is None else start("referral_decline", {"id": found[0].id})


async def ask_reason(ctx: Ctx) -> None:
    """Why the organization declines."""
    ctx.ask(
        _("Why can your organization not take this request?"),
        [Button(_(label), f"why:{code}") for code, label in referrals.DECLINE_REASONS.items()],
    )


async def on_reason(ctx: Ctx) -> Transition:
    """Decline with the reason chosen; the coordinators are told."""
    reason = (ctx.choice or "").removeprefix("why:")
    if reason not in referrals.DECLINE_REASONS:
        return retry(_(REFUSALS["reason"]))
    ident = referrals.parse_id(str(ctx.data.get("id", "")))
    if await answered(ctx, referrals.decline, ident, reason) is not None:
        ctx.say(_("Thank you. The coordinators will look for another organization."))
    return to_menu()


async def helped(ctx: Ctx, rest: str) -> Transition:
    """ "We helped": ask with which needs."""
    found = await waiting(ctx, rest, "accepted")
    if found is None:
        return stay()
    referral, report = found
    return start("referral_helped", {"id": referral.id, "ref": report.reference, "needs": []})


async def its_report(ctx: Ctx) -> Report | None:
    """The report of the referral being answered (by its reference, kept in the flow)."""
    return await find_report(ctx, str(ctx.data.get("ref", "")))


async def ask_needs(ctx: Ctx) -> None:
    """Which of the family's needs were met: each one ticks, then Done."""
    report = await its_report(ctx)
    wanted = list(dict.fromkeys([*report.needs, report.urgent])) if report else []
    chosen = set(ctx.data.get("needs", []))
    ctx.ask(
        _("With which of the family's needs did you help? Choose them, then press Done."),
        [
            *(
                Button(("\u2713 " if n in chosen else "") + _(NEED_LABELS[n]), f"hn:{n}")
                for n in wanted
                if n in NEED_LABELS
            ),
            Button(_("Done"), "hn:done"),
        ],
    )


async def on_needs(ctx: Ctx) -> Transition:
    """Tick or untick a need; Done goes on to the note."""
    choice = (ctx.choice or "").removeprefix("hn:")
    chosen: list[str] = list(ctx.data.get("needs", []))
    if choice == "done":
        if not chosen:
            return retry(_("Please choose at least one need, then press Done."))
        return goto("note")
    if choice in NEED_LABELS:
        chosen = [n for n in chosen if n != choice] if choice in chosen else [*chosen, choice]
        ctx.data["needs"] = chosen
    return goto("needs")


async def outcome_noted(ctx: Ctx, note: str) -> Transition:
    """Record the help; the family is asked whether it came."""
    ident = referrals.parse_id(str(ctx.data.get("id", "")))
    needs = [str(n) for n in ctx.data.get("needs", [])]
    if await answered(ctx, referrals.helped, ident, needs, note) is not None:
        ctx.say(_("Thank you. The family will be asked whether the help came."))
    return to_menu()


async def failed(ctx: Ctx, rest: str) -> Transition:
    """ "Could not help": the coordinators are told."""
    if await answered(ctx, referrals.not_helped, referrals.parse_id(rest)) is not None:
        ctx.say(_("Thank you for saying so. The coordinators will look for other help."))
    return stay()


# -- the family -------------------------------------------------------------------------------


async def confirmed(ctx: Ctx, rest: str) -> Transition:
    """The family's Yes / Partly / No under "Did you receive this help?"."""
    ident, _sep, answer = rest.partition(":")
    return await confirm(ctx, ident, answer)


async def confirm(ctx: Ctx, ident: str, answer: str) -> Transition:
    """Record the family's answer and thank them."""
    try:
        _referral, told = await referrals.confirm(
            ctx.session, ctx.settings, ctx.contact, referrals.parse_id(ident), answer, now=ctx.now
        )
    except Refused as error:
        if error.reason == "answered":
            ctx.say(_("Thank you: your answer was received already."))
        return to_menu()
    ctx.extra += told
    if answer == "yes":
        ctx.say(_("Thank you for telling us. We are glad the help reached your family."))
    else:
        ctx.say(
            _(
                "Thank you for telling us. The coordinators have been told and will look "
                "for other help for your family."
            )
        )
    return to_menu()


async def ask_confirm(ctx: Ctx) -> None:
    """The question again, when the family typed something else."""
    ident = str(ctx.data.get("id", ""))
    ctx.ask(
        _("Did you receive this help?"),
        [
            Button(_(label), f"{referrals.CONFIRM}{ident}:{code}")
            for code, label in referrals.CONFIRM_LABELS.items()
        ],
        columns=3,
    )


async def on_confirm(ctx: Ctx) -> Transition:
    """The answer, as a button of this step (WhatsApp: typed as its number or label)."""
    rest = (ctx.choice or "").removeprefix(referrals.CONFIRM)
    return await confirmed(ctx, rest)


# -- the coordinators -------------------------------------------------------------------------


async def ask_pick(ctx: Ctx) -> None:
    """The organizations that can help with the report, best first, with their record."""
    report = await find_report(ctx, str(ctx.data.get("ref", "")))
    if report is None:
        ctx.say(_("No report has the reference %(reference)s.") % {"reference": "-"})
        return
    found = await referrals.suggestions(ctx.session, report)
    lines = [
        _("Organizations that can help with %(reference)s (%(need)s most urgent):")
        % {"reference": isolate(report.reference), "need": need_text(report.urgent)}
    ]
    buttons = []
    for number, suggestion in enumerate(found[:10], 1):
        record = suggestion.record
        lines.append(
            f"{number}. {suggestion.name} · "
            + (
                place_name(report.district)
                if suggestion.in_district
                else place_name(report.governorate)
            )
            + " · "
            + _("received %(received)s, accepted %(accepted)s, helped %(helped)s")
            % {
                "received": isolate(str(record.received)),
                "accepted": isolate(str(record.accepted)),
                "helped": isolate(str(record.helped)),
            }
        )
        label = f"{number}. {suggestion.name}"[:60]
        buttons.append([Button(label, f"pick:{suggestion.organization.id}")])
    if not found:
        lines.append(
            _("No verified organization has said it can meet these needs in this place yet.")
        )
    ctx.say(
        "\n".join(lines),
        title=_("Refer to an organization"),
        buttons=[*buttons, [Button(_("Back to the report"), "pick:back")], nav_buttons(MENU)],
    )


async def on_pick(ctx: Ctx) -> Transition:
    """An organization chosen: a note next."""
    choice = ctx.choice or ""
    if choice == "pick:back":
        return start("report_detail", {"ref": ctx.data.get("ref")})
    ident = referrals.parse_id(choice.removeprefix("pick:"))
    if ident is None:
        return retry()
    ctx.data["org"] = ident
    return goto("note")


async def refer_noted(ctx: Ctx, note: str) -> Transition:
    """Refer the report; the organization's members get it in their language."""
    report = await find_report(ctx, str(ctx.data.get("ref", "")))
    if report is None:
        return start("reports", {"filters": {}})
    try:
        referral, sent = await referrals.refer(
            ctx.session,
            ctx.settings,
            report,
            int(ctx.data.get("org", 0)),
            actor=str(ctx.address),
            note=note,
            now=ctx.now,
        )
    except Refused as error:
        ctx.say(refusal(error))
        return goto("pick")
    ctx.extra += sent
    organization = await ctx.session.get(Organization, referral.organization_id)
    signature = (
        await ctx.session.get(Signature, organization.signature_id) if organization else None
    )
    ctx.say(
        _("Done: %(reference)s was referred to %(organization)s.")
        % {
            "reference": isolate(report.reference),
            "organization": public_name(signature) if signature else "-",
        }
    )
    return start("report_detail", {"ref": report.reference})


async def ask_figures(ctx: Ctx) -> None:
    """The referral figures, for coordinators."""
    found = await referrals.figures(ctx.session)
    lines = [
        " · ".join(
            f"{_(referrals.COLUMN_LABELS[c])}: {found.totals[c]}" for c in referrals.COLUMNS
        ),
        "",
        _("By organization (received, accepted, median time to answer, helped, confirmed):"),
    ]
    for name, record in found.organizations[:20]:
        lines.append(
            f"• {name}: {record.received}, {record.accepted}, "
            f"{referrals.hours_text(record.median_hours)}, {record.helped}, {record.confirmed}"
        )
    lines += ["", _("By governorate (received, helped, confirmed):")]
    for pcode, counts in found.governorates.items():
        lines.append(
            f"• {place_name(pcode)}: {counts['received']}, {counts['helped']}, "
            f"{counts['confirmed']}"
        )
    lines += ["", _("By most urgent need (received, helped, confirmed):")]
    for need, counts in found.needs.items():
        lines.append(
            f"• {need_text(need)}: {counts['received']}, {counts['helped']}, {counts['confirmed']}"
        )
    ctx.say("\n".join(lines), title=_("Referrals"), buttons=[nav_buttons(MENU)])


async def on_figures(ctx: Ctx) -> Transition:
    """Only the menu from here."""
    return to_menu()


DECLINE = Flow("referral_decline", {"reason": Step(ask_reason, on_reason)})
HELPED = Flow(
    "referral_helped",
    {
        "needs": Step(ask_needs, on_needs),
        "note": note_step(
            N_("Add a short note for the coordinators on what you did, or press Skip."),
            referrals.NOTE_LIMIT,
            outcome_noted,
        ),
    },
)
CONFIRM = Flow("referral_confirm", {"answer": Step(ask_confirm, on_confirm)})
REFER = Flow(
    "refer",
    {
        "pick": Step(ask_pick, on_pick),
        "note": note_step(
            N_("Add a note for the organization (it reads it with the request), or press Skip."),
            referrals.NOTE_LIMIT,
            refer_noted,
        ),
    },
    coordinators_only=True,
    permission="reports",
)
FIGURES = Flow(
    "referrals",
    {"figures": Step(ask_figures, on_figures)},
    coordinators_only=True,
    permission="reports",
)
ACTIONS = {
    referrals.OPEN_ONE: Action(open_one, coordinators_only=False),
    referrals.ACCEPT: Action(accept, coordinators_only=False),
    referrals.DECLINE: Action(decline, coordinators_only=False),
    referrals.HELPED: Action(helped, coordinators_only=False),
    referrals.FAILED: Action(failed, coordinators_only=False),
    referrals.CONFIRM: Action(confirmed, coordinators_only=False),
}
