"""Coordinators' tools for signatures: the pending ones, one in full, verify or reject.

Only addresses in COORDINATORS see any of this. Every decision is written to the audit log and
the representative is told the outcome in their own language.
"""

from __future__ import annotations

from sqlalchemy import select

from bot import gazetteer
from bot.flows import MENU, Action, Ctx, Flow, Step, Transition, goto, nav_buttons, retry, start
from bot.i18n import _, current_locale, format_datetime, isolate
from bot.messages import Button
from bot.models import Signature
from bot.signatures import STATUS_LABELS, TYPE_LABELS, public_name
from bot.signatures import decide as decide_signature
from bot.text import parse_int

PAGE = 8


async def ask_pending(ctx: Ctx) -> None:
    """The signatures waiting for verification, oldest first."""
    page = int(ctx.data.get("page", 0))
    rows = (
        await ctx.session.scalars(
            select(Signature)
            .where(Signature.status == "pending")
            .order_by(Signature.id)
            .offset(page * PAGE)
            .limit(PAGE + 1)
        )
    ).all()
    shown = rows[:PAGE]
    buttons = [
        [Button(f"{public_name(s)}{' ⚠' if s.similar_to else ''}", f"sig:open:{s.id}")]
        for s in shown
    ]
    pager = []
    if page > 0:
        pager.append(Button(_("Previous page"), "pend:prev"))
    if len(rows) > PAGE:
        pager.append(Button(_("Next page"), "pend:next"))
    text = (
        _("Signatures waiting for verification. ⚠ marks a name close to an earlier one.")
        if shown
        else _("No signature is waiting for verification.")
    )
    ctx.say(text, title=_("Signatures"), buttons=[*buttons, pager, nav_buttons(MENU)])


async def on_pending(ctx: Ctx) -> Transition:
    """Turn the page."""
    page = int(ctx.data.get("page", 0))
    ctx.data["page"] = page + 1 if ctx.choice == "pend:next" else max(0, page - 1)
    return goto("list")


async def ask_show(ctx: Ctx) -> None:
    """One signature in full, with Verify and Reject while it is pending."""
    signature = await ctx.session.get(Signature, int(ctx.data.get("id", 0)))
    if signature is None:
        ctx.say(_("This signature no longer exists."), buttons=[nav_buttons(MENU)])
        return
    gov = gazetteer.place(signature.governorate)
    lines = [
        _("Status: %(status)s") % {"status": _(STATUS_LABELS[signature.status])},
        _("Organization: %(names)s")
        % {"names": " / ".join(n for n in (signature.name_ar, signature.name_en) if n)},
        _("Kind: %(kind)s") % {"kind": _(TYPE_LABELS.get(signature.org_type, "Other"))},
        _("Place: %(city)s, %(governorate)s")
        % {"city": signature.city, "governorate": gov.name(current_locale()) if gov else "-"},
        _("Representative: %(name)s, %(role)s")
        % {"name": signature.representative or "-", "role": signature.role or "-"},
        _("Phone: %(phone)s") % {"phone": isolate(signature.phone or "-")},
        _("Email: %(email)s") % {"email": isolate(signature.email or "-")},
        _("Signed: %(when)s")
        % {"when": isolate(format_datetime(signature.created_at, ctx.settings.timezone))},
        _("Receipt: %(receipt)s") % {"receipt": isolate(signature.receipt)},
    ]
    if signature.similar_to is not None:
        earlier = await ctx.session.get(Signature, signature.similar_to)
        lines.append(
            _(
                "⚠ Close to the signature %(receipt)s of %(organization)s; "
                "the representative said: %(answer)s"
            )
            % {
                "receipt": isolate(earlier.receipt if earlier else "-"),
                "organization": public_name(earlier) if earlier else "-",
                "answer": _("not asked, as the earlier one is not verified")
                if signature.same_organization is None
                else _("the same organization")
                if signature.same_organization
                else _("another organization"),
            }
        )
    if signature.reason:
        lines.append(_("Reason: %(reason)s") % {"reason": signature.reason})
    if signature.forgotten_at is not None:
        lines.append(_("The representative asked to be forgotten: their details were deleted."))
    buttons = []
    if signature.status == "pending":
        buttons.append([Button(_("Verify"), "dec:verify"), Button(_("Reject"), "dec:reject")])
    buttons += [[Button(_("Signatures"), "dec:list")], nav_buttons(MENU)]
    ctx.say("\n".join(lines), title=_("Signature"), buttons=buttons, about=signature.contact_id)


async def on_show(ctx: Ctx) -> Transition:
    """Verify at once; Reject asks for the reason first."""
    if ctx.choice == "dec:list":
        return start("signatures")
    if ctx.choice == "dec:reject":
        return goto("reason")
    if ctx.choice == "dec:verify":
        return await decide(ctx, "verified", None)
    return retry()


async def ask_reason(ctx: Ctx) -> None:
    """Why it is rejected (the representative will read it)."""
    ctx.ask(_("Why is it not accepted? The representative will read your answer."))


async def on_reason(ctx: Ctx) -> Transition:
    """Reject with the reason."""
    reason = " ".join(ctx.text.split())[:500]
    if not reason:
        return retry()
    return await decide(ctx, "rejected", reason)


async def decide(ctx: Ctx, status: str, reason: str | None) -> Transition:
    """Record the decision, audit it, and tell the representative in their language."""
    signature, notices = await decide_signature(
        ctx.session,
        int(ctx.data.get("id", 0)),
        status,
        reason,
        actor=str(ctx.address),
        now=ctx.now,
    )
    if signature is None:
        ctx.say(_("This signature was already decided."))
        return goto("show")
    ctx.extra += notices
    ctx.say(
        _("Done: %(organization)s is now \u201c%(status)s\u201d.")
        % {"organization": public_name(signature), "status": _(STATUS_LABELS[status])}
    )
    return goto("show")


async def open_signature(ctx: Ctx, rest: str) -> Transition:
    """The standing "Open the signature" button."""
    # A forged payload may carry "²" (a digit to isdigit, not to int) or a number too large
    # for the database: only a plain id counts.
    return start("signature", {"id": parse_int(rest) or 0})


PENDING = Flow(
    "signatures",
    {"list": Step(ask_pending, on_pending)},
    coordinators_only=True,
    permission="signatures",
)
DETAIL = Flow(
    "signature",
    {"show": Step(ask_show, on_show), "reason": Step(ask_reason, on_reason, accepts_text=True)},
    coordinators_only=True,
    permission="signatures",
)
ACTIONS = {"sig:open:": Action(open_signature, permission="signatures")}
