""" "My organization": a verified signatory organization's relief capacity, its colleagues and
their invitations; and /join, by which a colleague joins with a code. The rules are
bot.organizations'."""

from __future__ import annotations

from typing import Any

from bot import organizations, referrals
from bot.flows import (
    MENU,
    Ctx,
    Flow,
    Step,
    Transition,
    goto,
    nav_buttons,
    retry,
    start,
    to_menu,
)
from bot.forms import Form, Summary, multi, yes_no
from bot.gazetteer import GOVERNORATES, districts_of, place
from bot.i18n import N_, _, current_locale, format_date, is_rtl, isolate
from bot.messages import Button
from bot.organizations import Membership, Refused
from bot.reports import NEED_BUTTONS, NEED_LABELS, needs_text, place_name
from bot.signatures import public_name

# What each refusal of bot.organizations says.
REFUSALS: dict[str, str] = {
    "invalid": N_(
        "This invitation code is not valid: it may be mistyped, already used, or older than "
        "7 days. Please ask your organization's representative for a new one."
    ),
    "too_many_tries": N_(
        "Too many codes were tried from this chat. Please wait an hour, then try again."
    ),
    "already_member": N_("You already belong to an organization in this bot."),
    "suspended": N_(
        "This organization's signature is no longer verified: it receives no requests for now."
    ),
    "too_many_invitations": N_(
        "Your organization has made enough invitation codes for today. Please try again tomorrow."
    ),
    "not_representative": N_("Only your organization's representative can do this."),
    "not_a_colleague": N_("This colleague is no longer in your organization."),
    "need": N_("Please choose the needs from the list."),
    "place": N_("Please choose the governorate from the list, or type its name."),
}


def refusal(error: Refused) -> str:
    """A refusal in the reader's language."""
    return _(REFUSALS.get(error.reason, REFUSALS["invalid"]))


def governorate_names(ctx: Ctx) -> dict[str, str]:
    """The 18 governorates, named in the reader's language."""
    return {p.pcode: p.name(current_locale()) for p in GOVERNORATES}


def district_names(ctx: Ctx) -> dict[str, str]:
    """The districts of the governorates chosen, named in the reader's language."""
    return {
        d.pcode: d.name(current_locale())
        for gov in ctx.data.get("governorates", [])
        for d in districts_of(str(gov))
    }


def places_text(value: Any) -> str:
    """P-codes as place names, or "None" when there are none."""
    return " · ".join(place_name(str(p)) for p in value or []) or _("None")


def areas_text(governorates: list[str], districts: list[str]) -> str:
    """Where an organization works: each governorate, with its districts or as a whole."""
    parts = []
    for gov in governorates:
        inside = [d for d in districts if (found := place(d)) and found.parent == gov]
        if inside:
            comma = "، " if is_rtl(current_locale()) else ", "
            parts.append(f"{place_name(gov)} ({comma.join(place_name(d) for d in inside)})")
        else:
            parts.append(_("%(governorate)s (all districts)") % {"governorate": place_name(gov)})
    return " · ".join(parts) or _("None")


def keep_districts_inside(ctx: Ctx, _done: bool) -> None:
    """A governorate unchosen takes its districts with it."""
    govs = set(ctx.data.get("governorates", []))
    ctx.data["districts"] = [
        d
        for d in ctx.data.get("districts", [])
        if (found := place(str(d))) is not None and found.parent in govs
    ]


async def mine(ctx: Ctx) -> Membership | None:
    """This person's organization, if any."""
    return await organizations.membership(ctx.session, ctx.contact, ctx.now)


async def ask_home(ctx: Ctx) -> None:
    """The organization's capacity, its state, and what this person may do with it."""
    found = await mine(ctx)
    if found is None:
        ctx.say(
            _(
                "\u201cMy organization\u201d is for organizations whose signature of the "
                "declaration is verified, and for their colleagues who joined with a code."
            ),
            buttons=[nav_buttons(MENU)],
        )
        return
    org = found.organization
    lines = [
        _("Organization: %(name)s") % {"name": public_name(found.signature)},
        "",
        _("Needs you can meet: %(needs)s") % {"needs": needs_text(org.needs) or _("None")},
        _("Where you work: %(areas)s") % {"areas": areas_text(org.governorates, org.districts)},
        _("Families may be told your name: %(answer)s")
        % {"answer": _("Yes") if org.disclose_name else _("No")},
    ]
    buttons: list[list[Button]] = []
    waiting = await referrals.open_for(ctx.session, found)
    if waiting:
        # Its own open referrals only (bot.referrals.open_for); each opens by a standing button.
        lines += [
            "",
            _("Requests open with your organization: %(count)s") % {"count": len(waiting)},
        ]
        buttons += [
            [Button(report.reference, f"{referrals.OPEN_ONE}{referral.id}")]
            for referral, report in waiting[:8]
        ]
    if not found.active:
        lines += [
            "",
            _(
                "Your organization's signature is no longer verified, so it receives no "
                "requests for now and its relief cannot be changed."
            ),
        ]
    elif found.may_edit:
        buttons += [
            [Button(_("Change what we offer"), "org:edit")],
            [Button(_("Invite a colleague"), "org:invite"), Button(_("Colleagues"), "org:team")],
        ]
    else:
        lines += ["", _("Your organization's representative can change this.")]
    if found.member.role == organizations.COLLEAGUE:
        buttons.append([Button(_("Leave the organization"), "org:leave")])
    ctx.say("\n".join(lines), title=_("My organization"), buttons=[*buttons, nav_buttons(MENU)])


async def on_home(ctx: Ctx) -> Transition:
    """Open what was chosen; the rules are checked again, the menu may be old."""
    found = await mine(ctx)
    if found is None:
        return to_menu()
    if ctx.choice == "org:leave" and found.member.role == organizations.COLLEAGUE:
        return goto("leave")
    if not found.may_edit:
        return retry()
    if ctx.choice == "org:edit":
        ctx.data.clear()
        ctx.data.update(FORM.from_model(found.organization))
        return goto("summary")
    if ctx.choice == "org:invite":
        return goto("invite")
    if ctx.choice == "org:team":
        return goto("team")
    return retry()


async def saved(ctx: Ctx, values: dict[str, Any]) -> Transition:
    """Store the capacity, if this person still may."""
    found = await mine(ctx)
    ctx.data.clear()
    if found is None or not found.may_edit:
        ctx.say(_(REFUSALS["not_representative"]))
        return to_menu()
    try:
        await organizations.set_capacity(
            ctx.session,
            found.organization,
            str(ctx.address),
            ctx.now,
            needs=values["needs"],
            governorates=values["governorates"],
            districts=values["districts"],
            disclose_name=values["disclose_name"],
        )
    except Refused as error:
        ctx.say(refusal(error))
        return goto("home")
    ctx.say(_("Saved. Thank you."))
    return goto("home")


async def ask_invite(ctx: Ctx) -> None:
    """A new one-time code, to pass on to a colleague."""
    found = await mine(ctx)
    back = [nav_buttons(MENU)]
    if found is None:
        ctx.say(_(REFUSALS["not_representative"]), buttons=back)
        return
    try:
        code, expires = await organizations.invite(ctx.session, found, str(ctx.address), ctx.now)
    except Refused as error:
        ctx.say(refusal(error), buttons=[[Button(_("My organization"), "org:home")], *back])
        return
    ctx.say(
        _(
            "Give this code to your colleague, and to nobody else. They send this bot: "
            "/join %(code)s\n\nIt can be used once, until %(date)s. Your colleague will then "
            "receive your organization's requests too."
        )
        % {
            "code": isolate(organizations.show_code(code)),
            "date": isolate(format_date(expires, ctx.settings.timezone)),
        },
        buttons=[[Button(_("My organization"), "org:home")], *back],
    )


async def on_back_home(ctx: Ctx) -> Transition:
    """Back to the organization's page."""
    return goto("home") if ctx.choice == "org:home" else retry()


async def ask_team(ctx: Ctx) -> None:
    """Who receives the organization's requests; the representative may remove colleagues."""
    found = await mine(ctx)
    if found is None:
        ctx.say(_(REFUSALS["not_representative"]), buttons=[nav_buttons(MENU)])
        return
    zone = ctx.settings.timezone
    lines, buttons = [], []
    number = 0
    for member in await organizations.members(ctx.session, found.organization):
        if member.role == organizations.REPRESENTATIVE:
            lines.append("• " + _("You, the representative"))
            continue
        number += 1
        # Colleagues are known by their order and date: their numbers stay private.
        lines.append(
            "• "
            + _("Colleague %(number)s, joined on %(date)s")
            % {"number": number, "date": isolate(format_date(member.joined_at, zone))}
        )
        buttons.append(
            Button(_("Remove colleague %(number)s") % {"number": number}, f"rm:{member.id}")
        )
    if number == 0:
        lines.append(_("No colleague has joined yet."))
    ctx.say(
        "\n".join(lines),
        title=_("Colleagues"),
        buttons=[*([b] for b in buttons), [Button(_("My organization"), "org:home")]],
    )


async def on_team(ctx: Ctx) -> Transition:
    """Remove a colleague, or go back."""
    if ctx.choice == "org:home":
        return goto("home")
    found = await mine(ctx)
    if found is None or not ctx.choice or not ctx.choice.startswith("rm:"):
        return retry()
    member_id = ctx.choice[3:]
    if not member_id.isdigit() or len(member_id) > 12:
        return retry()
    try:
        await organizations.remove(ctx.session, found, int(member_id), str(ctx.address), ctx.now)
    except Refused as error:
        return retry(refusal(error))
    ctx.say(_("The colleague was removed: they no longer receive your organization's requests."))
    return goto("team")


async def ask_leave(ctx: Ctx) -> None:
    """Ask a colleague to confirm leaving."""
    ctx.ask(
        _("Leave the organization? You will no longer receive its requests."),
        [Button(_("Yes"), "yes"), Button(_("No"), "no")],
        columns=2,
    )


async def on_leave(ctx: Ctx) -> Transition:
    """Leave, or stay."""
    if ctx.choice != "yes":
        return goto("home")
    found = await mine(ctx)
    if found is not None:
        try:
            await organizations.leave(ctx.session, found, str(ctx.address), ctx.now)
        except Refused as error:
            ctx.say(refusal(error))
            return to_menu()
    ctx.say(_("You have left the organization."))
    return to_menu()


FORM = Form(
    "organization",
    [
        multi(
            "needs",
            N_("Which needs can your organization meet? Choose all that apply, then press Done."),
            NEED_LABELS,
            prefix="oneed",
            at_least_one=N_("Please choose at least one need, then press Done."),
            buttons=NEED_BUTTONS,
            label=N_("Needs you can meet"),
            show=needs_text,
        ),
        multi(
            "governorates",
            N_("In which governorates do you work? Choose all that apply, then press Done."),
            governorate_names,
            prefix="ogov",
            at_least_one=N_("Please choose at least one governorate, then press Done."),
            then=keep_districts_inside,
            label=N_("Governorates"),
            show=places_text,
        ),
        multi(
            "districts",
            N_("In which districts? Choose them, or press Done to cover the whole governorates."),
            district_names,
            prefix="odist",
            at_least_one=None,
            label=N_("Districts"),
            describe=lambda data: (
                areas_text(data.get("governorates", []), data["districts"])
                if data.get("districts")
                else _("All districts")
            ),
        ),
        yes_no(
            "disclose",
            N_("When your organization has a family's request, may we tell the family its name?"),
            label=N_("Families may be told our name"),
            column="disclose_name",
            to_model=lambda data: {"disclose_name": bool(data.get("disclose"))},
        ),
    ],
    Summary(
        title=N_("My organization"),
        intro=N_("Please check your answers:"),
        outro=N_("Press \u201cSave\u201d if they are right, or edit any of them."),
        confirm=N_("Save"),
        payload="org:save",
        done=saved,
    ),
    recall=True,
)
_FORM_STEPS = FORM.flow().steps
FLOW = Flow(
    "organization",
    {
        "home": Step(ask_home, on_home),
        **_FORM_STEPS,
        "invite": Step(ask_invite, on_back_home),
        "team": Step(ask_team, on_team),
        "leave": Step(ask_leave, on_leave),
    },
)


async def code_given(ctx: Ctx) -> str | None:
    """With a code after /join, try it at once: welcome on success."""
    args = [str(a) for a in ctx.data.pop("args", [])]
    if args and await joined(ctx, " ".join(args)[: organizations.CODE_LIMIT]):
        return "done"
    return None


async def ask_join(ctx: Ctx) -> None:
    """Ask for the code."""
    ctx.ask(_("Please type the invitation code your organization's representative gave you."))


async def joined(ctx: Ctx, code: str) -> bool:
    """Try a code, saying why it fails; True once joined."""
    try:
        found = await organizations.join(ctx.session, ctx.contact, code, ctx.now)
    except Refused as error:
        ctx.say(refusal(error))
        return False
    ctx.data["name"] = public_name(found.signature)
    return True


async def on_join(ctx: Ctx) -> Transition:
    """A typed code."""
    if not ctx.text or len(ctx.text) > organizations.CODE_LIMIT:
        return retry(_(REFUSALS["invalid"]))
    if await joined(ctx, ctx.text):
        return goto("done")
    return retry()


async def ask_done(ctx: Ctx) -> None:
    """The welcome."""
    ctx.say(
        _(
            "Welcome. You have joined %(name)s: you will receive its requests too. You "
            "find it under \u201cMy organization\u201d in the menu."
        )
        % {"name": str(ctx.data.get("name", "-"))},
        buttons=[[Button(_("My organization"), "org:home")], nav_buttons(MENU)],
    )


async def on_done(ctx: Ctx) -> Transition:
    """The welcome's button."""
    return start("organization") if ctx.choice == "org:home" else to_menu()


JOIN = Flow(
    "join",
    {
        "code": Step(ask_join, on_join, accepts_text=True, redirect=code_given),
        "done": Step(ask_done, on_done),
    },
)
