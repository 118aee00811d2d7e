"""Reading the declaration of the Civil Initiative, in parts that fit one message."""

from __future__ import annotations

from functools import cache

from bot import declaration
from bot.flows import MENU, Ctx, Flow, Step, Transition, goto, nav_buttons, start, to_menu
from bot.i18n import _, isolate, long_text
from bot.messages import Button

# Small enough for one Telegram message (4,096) and one WhatsApp message (1,600), with a header.
PAGE_LIMIT = 1400


@cache
def pages(locale: str) -> tuple[str, ...]:
    """The declaration in `locale`, cut at paragraph ends into parts of even length."""
    paragraphs: list[str] = []
    for paragraph in long_text("declaration", locale).split("\n\n"):
        paragraph = paragraph.strip()
        while len(paragraph) > PAGE_LIMIT:  # too long alone: cut at a space
            cut = paragraph.rfind(" ", 0, PAGE_LIMIT)
            cut = cut if cut > 0 else PAGE_LIMIT
            paragraphs.append(paragraph[:cut].rstrip())
            paragraph = paragraph[cut:].lstrip()
        if paragraph:
            paragraphs.append(paragraph)
    total = sum(len(p) + 2 for p in paragraphs)
    # Aim at parts of equal size, so that the last part is not a single line.
    target = total / -(-total // PAGE_LIMIT)
    result: list[str] = []
    current = ""
    for paragraph in paragraphs:
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if current and (len(candidate) > PAGE_LIMIT or len(current) >= target):
            result.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        result.append(current)
    return tuple(result)


async def ask_read(ctx: Ctx) -> None:
    """Show the current part with Next / Previous, and Sign on the last part."""
    parts = pages(ctx.locale)
    page = min(max(int(ctx.data.get("page", 0)), 0), len(parts) - 1)
    options: list[Button] = []
    if page < len(parts) - 1:
        options.append(Button(_("Next part"), "decl:next"))
    if page > 0:
        options.append(Button(_("Previous part"), "decl:prev"))
    if page == len(parts) - 1:
        options.append(Button(_("Sign the declaration"), "decl:sign"))
        ctx.contact.declaration_read = declaration.VERSION  # read to the end
    counter = _("Part %(number)s of %(total)s") % {
        "number": isolate(str(page + 1)),
        "total": isolate(str(len(parts))),
    }
    ctx.say(
        f"{parts[page]}\n\n({counter})",
        title=_("The declaration of the Civil Initiative") if page == 0 else None,
        buttons=[[b] for b in options] + [nav_buttons(MENU)],
    )


async def on_read(ctx: Ctx) -> Transition:
    """Turn the page, or go on to signing."""
    page = int(ctx.data.get("page", 0))
    if ctx.choice == "decl:sign":
        return start("sign")
    ctx.data["page"] = page + 1 if ctx.choice == "decl:next" else max(0, page - 1)
    return goto("read")


async def back_read(ctx: Ctx) -> Transition:
    """Back turns to the previous part; from the first part it leaves for the menu."""
    page = int(ctx.data.get("page", 0))
    if page <= 0:
        return to_menu()
    ctx.data["page"] = page - 1
    return goto("read")


FLOW = Flow("declaration", {"read": Step(ask_read, on_read, back=back_read)})
