"""The main menu, and "About the Initiative"."""

from __future__ import annotations

from bot import organizations
from bot.flows import HELP, LANGUAGE, Ctx, Flow, Step, Transition, nav_buttons, start, to_menu
from bot.i18n import N_, _
from bot.messages import Button

# The coordinators' own tools, after everyone's (a citizen's numbers stay the same).
COORDINATOR_ITEMS = (
    (N_("Reports to triage"), "menu:reports", "reports"),
    (N_("Signatures to verify"), "menu:signatures", "signatures"),
    (N_("Bulletin desk"), "menu:bulletin_admin", "bulletins"),
    (N_("Export the reports"), "menu:export", "exports"),
    (N_("Coordinators' console"), "menu:console", None),
)


async def ask_main(ctx: Ctx) -> None:
    """Show the main menu; a coordinator's has their tools too."""
    items = [
        Button(_("About the Initiative"), "menu:about"),
        Button(_("The declaration"), "menu:declaration"),
        Button(_("Bulletin"), "menu:bulletin"),
        Button(_("Report a displaced family"), "menu:report"),
        Button(_("Sign the declaration"), "menu:sign"),
        Button(_("Who has signed?"), "menu:signed"),
        Button(_("My reports"), "menu:myreports"),
        Button(_("My data"), "menu:mydata"),
    ]
    if await organizations.shows_menu(ctx.session, ctx.contact):
        items.append(Button(_("My organization"), "menu:organization"))
    text = _("How can I help you? Choose one of the options.")
    if ctx.is_coordinator:
        items += [
            Button(_(label), payload)
            for label, payload, permission in COORDINATOR_ITEMS
            if permission is None or ctx.may(permission)
        ]
        text += "\n" + _("Your tools for the Initiative's work come after My data.")
    ctx.ask(text, [*items, *nav_buttons(LANGUAGE, HELP)], title=_("Main menu"), nav=False)


async def on_main(ctx: Ctx) -> Transition:
    """Open what was chosen."""
    if ctx.choice == "menu:about":
        ctx.say(about_text(), title=_("About the Initiative"))
        return to_menu()
    target = (ctx.choice or "").removeprefix("menu:")
    return start(target)


def about_text() -> str:
    """A few lines on the Initiative, from its declaration."""
    return _(
        "The Iraqi Civil Society Solidarity Initiative brings Iraqi and international civil "
        "societies together through concrete actions, to build another Iraq, with peace and "
        "human rights for all.\n\n"
        "On 11 July 2014, ninety Iraqi civil society organizations launched the Civil Initiative "
        "under the slogan: \u201cAchieving Civil and Societal Peace to Defeat Terrorism and to "
        "Ensure the Construction of a Civil Democratic State\u201d.\n\n"
        "This bot serves three of its means: an information bulletin that tells the public what "
        "is happening, without falsification; relief for the families displaced by the "
        "conflict; and the declaration, which organizations can read and sign."
    )


FLOW = Flow("menu", {"main": Step(ask_main, on_main)})
