"""Parts of the menu that are still being built: a polite "coming soon" with the way back."""

from __future__ import annotations

from bot.flows import MENU, Ctx, Flow, Step, nav_buttons
from bot.i18n import _


async def ask_soon(ctx: Ctx) -> None:
    """Say that this part is not ready yet."""
    ctx.say(
        _("This part of the bot is coming soon. Thank you for your patience."),
        buttons=[nav_buttons(MENU)],
    )


def placeholder(name: str) -> Flow:
    """A flow that only says "coming soon", until the real one replaces it."""
    return Flow(name, {"soon": Step(ask_soon)})
