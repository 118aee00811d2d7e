"""Choosing the language: on first contact, and from every step by the Language escape."""

from __future__ import annotations

from bot.flows import (
    BACK,
    Ctx,
    Flow,
    Step,
    Transition,
    nav_buttons,
    restore,
    retry,
    start,
    to_menu,
)
from bot.i18n import LANGUAGE_NAMES, LOCALES, N_, _, order_by_hint, switch_locale, translate_in
from bot.messages import Button
from bot.text import match_key

CHOOSE = N_("Please choose your language.")

# Names people type for each language, in the three scripts; input vocabulary, not shown text.
ALIASES: dict[str, tuple[str, ...]] = {
    "ar": ("arabic", "arab", "ar", "عربي", "عربية", "العربية", "اللغة العربية", "عەرەبی"),
    "ckb": (
        "kurdish",
        "kurdi",
        "sorani",
        "ckb",
        "kurd",
        "كردي",
        "الكردية",
        "کوردی",
        "کوردی سۆرانی",
        "سۆرانی",
        "كوردي",
    ),
    "en": ("english", "en", "انكليزي", "الإنجليزية", "الانكليزية", "ئینگلیزی", "إنجليزي"),
}
_ALIAS_INDEX = {match_key(word): code for code, words in ALIASES.items() for word in words}


async def ask_pick(ctx: Ctx) -> None:
    """Ask in all three languages at once, the platform's hint first."""
    hint = ctx.data.setdefault("hint", ctx.inbound.language_hint)
    order = order_by_hint(hint if isinstance(hint, str) else None)
    text = "\n".join(translate_in(code, CHOOSE) for code in order)
    buttons = [[Button(LANGUAGE_NAMES[code], f"lang:{code}")] for code in order]
    if "resume" in ctx.data:
        buttons.append(nav_buttons(BACK))
    ctx.say(text, buttons=buttons)


async def on_pick(ctx: Ctx) -> Transition:
    """Store the language, confirm it in that language, and go where the person was going."""
    code = ctx.choice[5:] if ctx.choice and ctx.choice.startswith("lang:") else None
    if code is None:
        code = _ALIAS_INDEX.get(match_key(ctx.text))
    if code not in LOCALES:
        return retry(_("Please choose one of the languages below."))
    ctx.contact.locale = code
    switch_locale(code)
    ctx.say(_("Thank you. I will write to you in English."))
    saved = ctx.data.get("resume")
    if isinstance(saved, dict):
        return restore(saved)
    then = ctx.data.get("then")
    if isinstance(then, str):
        return start(then)
    ctx.say(
        _(
            "Welcome to the chat bot of the Iraqi Civil Society Solidarity Initiative. "
            "Here you can read the Initiative's bulletin, report the situation of a displaced "
            "family, and read and sign the declaration of the Civil Initiative."
        )
    )
    return to_menu()


FLOW = Flow("language", {"pick": Step(ask_pick, on_pick, accepts_text=True)})
