"""The coordinators' console: a one-time sign-in link, sent in the chat to people with a role."""

from __future__ import annotations

from bot import signin
from bot.flows import MENU, Ctx, Flow, Step, Transition, nav_buttons, to_menu
from bot.i18n import _, format_number, isolate


async def ask_link(ctx: Ctx) -> None:
    """A fresh link to the console, or why there is none."""
    address = str(ctx.address)
    try:
        link = await signin.new_link(ctx.session, ctx.settings, address)
    except signin.NoRole:
        text = _(
            "The console is for people with a role in the Initiative. If you should have "
            "one, ask an administrator."
        )
    except signin.TooManyLinks:
        text = _(
            "You asked for %(count)s links within the hour. Please use the last one, or ask "
            "again later."
        ) % {"count": isolate(format_number(signin.LINKS_PER_HOUR))}
    else:
        text = (
            _(
                "Open this link within %(minutes)s minutes to sign in to the coordinators' "
                "console. It works once, and only for you: do not pass it on."
            )
            % {"minutes": isolate(format_number(signin.LINK_MINUTES))}
            + "\n\n"
            + isolate(link)
        )
    ctx.say(text, title=_("Coordinators' console"), buttons=[nav_buttons(MENU)])


async def on_link(ctx: Ctx) -> Transition:
    """Anything after the link: the menu."""
    return to_menu()


FLOW = Flow("console", {"link": Step(ask_link, on_link)}, coordinators_only=True)
