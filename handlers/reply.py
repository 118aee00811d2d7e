"""A family's answer to the coordinators' message about its report (the Reply button)."""

from __future__ import annotations

from bot import reports
from bot.flows import Action, Ctx, Flow, Step, Transition, retry, start, to_menu, too_long
from bot.i18n import _, isolate


async def open_reply(ctx: Ctx, reference: str) -> Transition:
    """The Reply button under a coordinator's message."""
    return start("reply", {"ref": reference})


async def ask_write(ctx: Ctx) -> None:
    """Ask for the answer."""
    ctx.ask(
        _("Write your answer to the coordinators about your report %(reference)s, in one message.")
        % {"reference": isolate(str(ctx.data.get("ref", "")))}
    )


async def on_write(ctx: Ctx) -> Transition:
    """Keep the answer in the report's thread and tell the coordinators."""
    report = await reports.own_report(ctx.session, str(ctx.data.get("ref", "")), ctx.contact.id)
    if report is None:
        ctx.say(_("This report is no longer open for messages."))
        return to_menu()
    text = ctx.text
    if not text:
        return retry(_("Please write your answer as text."))
    if ctx.length(text) > reports.MESSAGE_LIMIT:
        return retry(too_long(reports.MESSAGE_LIMIT, ctx.length(text)))
    ctx.extra += await reports.family_answer(ctx.session, ctx.settings, report, text, now=ctx.now)
    ctx.say(_("Thank you. Your answer was passed to the coordinators."))
    return to_menu()


FLOW = Flow(
    "reply",
    {"write": Step(ask_write, on_write, accepts_text=True, numbers_are_answers=True)},
)
ACTIONS = {reports.REPLY: Action(open_reply, coordinators_only=False)}
