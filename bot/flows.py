"""The small registry that handlers/ use to declare flows and steps, and the global escapes."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import roles
from bot.config import Settings
from bot.i18n import (
    LOCALES,
    N_,
    _,
    current_locale,
    direct,
    format_number,
    isolate,
    translate_in,
)
from bot.messages import Address, Button, Inbound, Outbound, Priority
from bot.models import Contact
from bot.text import ascii_digits, match_key, parse_int, strip_bidi

if TYPE_CHECKING:
    from bot.db import Database

# Work a step leaves for after its message's transaction (a long read, such as an export, must
# not hold SQLite's write turn while every other person waits): it gets the database and gives
# the messages for this person that the engine then queues.
Later = Callable[["Database"], Awaitable[list[Outbound]]]

# Payloads of the global escapes; they work from every step, pressed or typed.
MENU, BACK, CANCEL, HELP, LANGUAGE = "nav:menu", "nav:back", "nav:cancel", "nav:help", "nav:lang"
NAV_PAYLOADS = (MENU, BACK, CANCEL, HELP, LANGUAGE)

# Button labels of the escapes (translated at use), also accepted when typed in any language.
NAV_LABELS: dict[str, str] = {
    MENU: N_("Menu"),
    BACK: N_("Back"),
    CANCEL: N_("Cancel"),
    HELP: N_("Help"),
    LANGUAGE: N_("Language"),
}
# Further words people type for the escapes, in all three languages at once: input vocabulary,
# not text we show, so it is not in the catalogs.
NAV_WORDS: dict[str, tuple[str, ...]] = {
    MENU: (
        "menu",
        "main menu",
        "home",
        "start",
        "القائمة",
        "قائمة",
        "القائمة الرئيسية",
        "الرئيسية",
        "مێنو",
        "مینو",
        "لیست",
        "سەرەکی",
    ),
    BACK: (
        "back",
        "previous",
        "رجوع",
        "ارجع",
        "عودة",
        "رجوع للخلف",
        "السابق",
        "گەڕانەوە",
        "گەرانەوە",
        "دواوە",
        "بگەڕێوە",
    ),
    CANCEL: (
        "cancel",
        "quit",
        "exit",
        "إلغاء",
        "الغاء",
        "إلغاء الأمر",
        "خروج",
        "هەڵوەشاندنەوە",
        "هەلوەشاندنەوە",
        "پاشگەزبوونەوە",
        "لابردن",
    ),
    HELP: ("help", "?", "؟", "مساعدة", "المساعدة", "ساعدني", "یارمەتی", "يارمەتی", "هاوکاری"),
    LANGUAGE: (
        "language",
        "lang",
        "اللغة",
        "لغة",
        "تغيير اللغة",
        "زمان",
        "زمانەکە",
        "گۆڕینی زمان",
    ),
}
COMMANDS: dict[str, str] = {
    "menu": MENU,
    "cancel": CANCEL,
    "help": HELP,
    "language": LANGUAGE,
    "back": BACK,
}


def _nav_index() -> dict[str, str]:
    """Map every accepted spelling of an escape (labels in every locale, words) to its payload."""
    index: dict[str, str] = {}
    for payload, words in NAV_WORDS.items():
        for word in words:
            index[match_key(word)] = payload
    for payload, label in NAV_LABELS.items():
        for locale in LOCALES:
            index[match_key(translate_in(locale, label))] = payload
    index.pop("", None)
    return index


@dataclass
class Transition:
    """What a step's answer decides: where the conversation goes next."""

    kind: Literal["goto", "retry", "flow", "menu", "stay", "restore"]
    target: str | None = None
    hint: str | None = None
    data: dict[str, Any] | None = None


def goto(step: str) -> Transition:
    """Go on to `step` of this flow and ask its question."""
    return Transition("goto", step)


def retry(hint: str | None = None) -> Transition:
    """Stay on this step: say `hint` (or the default hint) and ask again."""
    return Transition("retry", hint=hint)


def start(flow: str, data: dict[str, Any] | None = None) -> Transition:
    """Begin another flow at its first step."""
    return Transition("flow", flow, data=data)


def to_menu() -> Transition:
    """Leave this flow for the main menu."""
    return Transition("menu")


def restore(saved: dict[str, Any]) -> Transition:
    """Return to a place saved with `snapshot` and ask its question again."""
    return Transition("restore", data=saved)


def stay() -> Transition:
    """Stay on this step without asking again: the answer has said all that is needed."""
    return Transition("stay")


@dataclass
class Ctx:
    """Everything a step sees while one inbound message is handled, and what it says back."""

    inbound: Inbound
    contact: Contact
    session: AsyncSession
    settings: Settings
    now: datetime
    flow: str
    step: str
    data: dict[str, Any]
    history: list[str]
    offered: list[tuple[str, str]] = field(default_factory=list)
    choice: str | None = None  # the payload the user chose, by button, number or label
    text: str = ""  # the cleaned typed text (cut at MAX_INPUT characters)
    cut: bool = False  # whether the typed text was longer than `text` holds
    replies: list[Outbound] = field(default_factory=list)
    extra: list[Outbound] = field(default_factory=list)  # messages to other people
    after: list[Later] = field(default_factory=list)  # run once the transaction is committed
    forget: bool = False  # set by "Delete my data": the contact goes once the message is handled
    # The person's role (bot.roles), loaded with the contact; None for everyone without one.
    role: str | None = None

    def length(self, text: str) -> int:
        """How many characters `text`, made from ctx.text, had as typed: a text past
        MAX_INPUT is cut, and "yours has 4,096" would not be true."""
        return len(self.inbound.text.strip()) if self.cut else len(text)

    @property
    def address(self) -> Address:
        """The address of the person we are talking to."""
        return self.inbound.address

    @property
    def locale(self) -> str:
        """The current locale."""
        return current_locale()

    async def coordinators(self) -> list[tuple[Address, str]]:
        """Every coordinator with the language they chose (the default if they have not)."""
        return await coordinators(self.session, self.settings)

    @property
    def is_coordinator(self) -> bool:
        """Whether the person has a role in the Initiative's work (any role)."""
        return self.role is not None

    def may(self, permission: str) -> bool:
        """Whether the person's role has a permission (bot.roles.PERMISSIONS)."""
        return roles.may(self.role, permission)

    def say(
        self,
        text: str,
        *,
        title: str | None = None,
        buttons: Sequence[Sequence[Button]] = (),
        photo: str | None = None,
        priority: Priority = "reply",
        about: int | None = None,
    ) -> None:
        """Queue a message to the user, in the current locale's direction; `about`, the contact
        whose personal data it shows (Outbound.about)."""
        rows = tuple(tuple(row) for row in buttons if row)
        self.replies.append(
            Outbound(
                address=self.address,
                text=direct(text),
                title=direct(title) if title else None,
                buttons=rows,
                photo=photo,
                priority=priority,
                locale=current_locale(),
                about=about,
            )
        )

    def ask(
        self,
        text: str,
        options: Iterable[Button] = (),
        *,
        columns: int = 1,
        nav: bool = True,
        title: str | None = None,
    ) -> None:
        """Ask a question with options (in rows of `columns`) and, with `nav`, Back and Menu."""
        items = list(options)
        rows = [items[i : i + columns] for i in range(0, len(items), columns)]
        if nav:
            rows.append(nav_buttons(BACK, MENU))
        self.say(text, title=title, buttons=rows)


async def coordinators(
    session: AsyncSession, settings: Settings, permission: str = "reports"
) -> list[tuple[Address, str]]:
    """Everyone whose role has the permission, with the language they chose (the default if
    they have not): the people in the database, and COORDINATORS' addresses that have no role
    there yet (admins: bot.roles.adopt makes them so at start)."""
    found = await roles.with_permission(session, permission, settings.default_locale)
    listed = {str(address) for address, _locale in found}
    for address in sorted(settings.coordinators, key=str):
        if str(address) in listed or await roles.role_of(session, address) is not None:
            continue
        locale = await session.scalar(
            select(Contact.locale).where(Contact.address == str(address))
        )
        found.append((address, locale or settings.default_locale))
    return found


def too_long(limit: int, given: int) -> str:
    """The answer to a text over its limit, in the current locale (`given`: Ctx.length)."""
    return _("Please keep it shorter: at most %(limit)s characters (yours has %(given)s).") % {
        "limit": isolate(format_number(limit)),
        "given": isolate(format_number(given)),
    }


def note_step(prompt: str, limit: int, then: Callable[[Ctx, str], Awaitable[Transition]]) -> Step:
    """An optional note: typed, or Skip ("" to `then`). A note over `limit` characters is
    asked for again, with its length: nothing typed is cut short. (A photo, or a text of
    nothing but spaces and marks, gets the engine's answer before this step sees it.)"""

    async def ask(ctx: Ctx) -> None:
        ctx.ask(_(prompt), [Button(_("Skip"), "note:skip")])

    async def answer(ctx: Ctx) -> Transition:
        if ctx.choice == "note:skip":
            return await then(ctx, "")
        note = ctx.text.strip()
        if ctx.length(note) > limit:
            return retry(too_long(limit, ctx.length(note)))
        return await then(ctx, note)

    return Step(ask, answer, accepts_text=True)


def nav_buttons(*payloads: str) -> list[Button]:
    """Buttons for global escapes, labelled in the current locale."""
    return [Button(_(NAV_LABELS[p]), p) for p in payloads]


AskFn = Callable[[Ctx], Awaitable[None]]
AnswerFn = Callable[[Ctx], Awaitable[Transition]]


@dataclass(frozen=True)
class Step:
    """One question of a flow: `ask` says it; `answer` handles the reply.

    With `accepts_text` False the answer is called only when the user picked one of the options;
    anything else gets the default hint and the question again. `back`, when given, handles the
    Back escape instead of the flow's history.
    """

    ask: AskFn
    answer: AnswerFn | None = None
    accepts_text: bool = False
    accepts_media: bool = False
    back: AnswerFn | None = None  # a step with pages of its own decides what "back" means
    # A typed number is the answer itself (a household size, a phone), not an option's number.
    numbers_are_answers: bool = False
    # Before asking: the name of another step to ask instead (this one needs no answer now).
    redirect: Callable[[Ctx], Awaitable[str | None]] | None = None


@dataclass(frozen=True)
class Flow:
    """A named conversation: steps by name, the first one first.

    A `coordinators_only` flow is invisible to everyone else: its command and its buttons get
    the answer that any unknown input gets. With a `permission`, only the roles that have it
    see it (an editor does not see the reports).
    """

    name: str
    steps: dict[str, Step]
    coordinators_only: bool = False
    permission: str | None = None

    @property
    def first(self) -> str:
        """The name of the first step."""
        return next(iter(self.steps))


# A button that works whenever it is pressed, not only as an answer to the current question
# (a coordinator's "Open" on a notification): its payload starts with a registered prefix.
ActionFn = Callable[[Ctx, str], Awaitable[Transition]]


@dataclass(frozen=True)
class Action:
    """What a standing button does: `run(ctx, rest_of_payload)`."""

    run: ActionFn
    coordinators_only: bool = True
    permission: str | None = None  # as Flow.permission


class Registry:
    """Every flow, with the deep links, commands and standing buttons that open them."""

    def __init__(
        self,
        flows: Iterable[Flow],
        deep_links: dict[str, str] | None = None,
        commands: dict[str, str] | None = None,
        actions: dict[str, Action] | None = None,
        keywords: dict[str, Action] | None = None,
    ) -> None:
        self.flows = {flow.name: flow for flow in flows}
        # Words that act in any state when they are the whole message ("stop").
        self.keywords = {match_key(word): action for word, action in (keywords or {}).items()}
        self.deep_links = deep_links or {}
        self.commands = commands or {}  # "/reports" -> the flow it opens, with its arguments
        self.actions = actions or {}  # payload prefix -> Action
        self._nav = _nav_index()
        for required in ("menu", "language"):
            if required not in self.flows:
                raise ValueError(f"the registry needs a {required!r} flow")

    def step(self, flow: str, step: str) -> Step | None:
        """The step named, or None when it no longer exists (after an upgrade, say)."""
        found = self.flows.get(flow)
        return found.steps.get(step) if found else None

    def keyword(self, text: str) -> Action | None:
        """The action a whole-message keyword stands for, if any."""
        return self.keywords.get(match_key(text)) if text and len(text) <= 40 else None

    def action(self, payload: str) -> tuple[Action, str] | None:
        """The standing button a payload belongs to, and the rest of the payload."""
        for prefix, action in self.actions.items():
            if payload.startswith(prefix):
                return action, payload[len(prefix) :]
        return None

    def nav_payload(self, text: str) -> str | None:
        """The escape a typed word stands for, if any."""
        return self._nav.get(match_key(text)) if text and len(text) <= 40 else None


def resolve_choice(
    text: str, offered: Sequence[tuple[str, str]], *, by_number: bool = True
) -> str | None:
    """Which offered option a typed answer picks: its number (any digit script) or its label."""
    number = parse_int(text)
    if number is not None and by_number:
        return offered[number - 1][0] if 1 <= number <= len(offered) else None
    if any(ch.isdigit() for ch in text):
        # Digits mean a number: "-1" or "1.5" must not pass for the option "1".
        exact = ascii_digits(strip_bidi(text)).strip()
        return next((p for p, label in offered if ascii_digits(label) == exact), None)
    key = match_key(text)
    if not key:
        return None
    for payload, label in offered:
        if match_key(label) == key:
            return payload
    return None


def snapshot(ctx: Ctx) -> dict[str, Any]:
    """Where the conversation is, to come back to after a detour (the language switch)."""
    return {
        "flow": ctx.flow,
        "step": ctx.step,
        "data": copy.deepcopy(ctx.data),
        "history": list(ctx.history),
    }
