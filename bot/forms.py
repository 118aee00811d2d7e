"""Forms: a question is one declaration; a form builds its steps, Back, skip-when-editing, the
summary with Edit for each answer, and the mapping of the answers to the model's columns.

A question's answer is stored in the conversation under its key. Its `answer` validates and
stores the reply and returns None to go on (the form finds the next question) or a Transition
of its own (retry with a hint, leave the flow). See README, "How to add a question".
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from bot import gazetteer
from bot.flows import (
    MENU,
    Ctx,
    Flow,
    Step,
    Transition,
    goto,
    nav_buttons,
    resolve_choice,
    retry,
    too_long,
)
from bot.i18n import _, current_locale, format_number, isolate
from bot.messages import SHARE_PHONE, Button
from bot.text import ascii_digits, match_key, parse_int

Data = dict[str, Any]
AskFn = Callable[[Ctx], Awaitable[None]]
AnswerFn = Callable[[Ctx], Awaitable[Transition | None]]


def always(_data: Data) -> bool:
    """A question asked whatever was answered before."""
    return True


@dataclass(frozen=True)
class Question:
    """One question: how it is asked, how its answer is taken, where it applies, what an edit
    of it clears, how the summary and "My data" show it, and which column it fills.

    `ask` says the question; with `prompt` and `options` instead, the form asks it (with the
    answer already given, where the form recalls answers). `column` names the model column the
    answer fills (stored as it is unless `to_model` maps the answers to columns itself, and
    read back as it is unless `from_model` maps a stored row back to answers).
    """

    key: str
    answer: AnswerFn
    prompt: str | None = None  # an N_ message: the question, when the form asks it
    options: Callable[[Ctx], list[Button]] = lambda _ctx: []
    columns: int = 1
    ask: AskFn | None = None
    label: str | None = None  # an N_ message: the answer's name in the summary and "My data"
    edit: bool = True  # an Edit button in the summary (questions with a label only)
    applies: Callable[[Data], bool] = always
    answered: Callable[[Data], bool] | None = None  # default: an answer is stored under key
    in_summary: Callable[[Data], bool] | None = None  # default: where the question applies
    describe: Callable[[Data], str] | None = None  # default: show(the answer)
    show: Callable[[Any], str] | None = None  # one stored value in words (summary, My data)
    recall: bool = True  # say the answer already given when the question is asked again
    clears: tuple[str, ...] = ()  # answers an Edit of this question removes first
    column: str | None = None
    to_model: Callable[[Data], dict[str, Any]] | None = None
    from_model: Callable[[Any], Data] | None = None
    accepts_text: bool = False
    accepts_media: bool = False
    numbers_are_answers: bool = False
    redirect: Callable[[Ctx], Awaitable[str | None]] | None = None

    def has_answer(self, data: Data) -> bool:
        """Whether this question has an answer that still holds."""
        return self.answered(data) if self.answered else self.key in data

    def words(self, data: Data) -> str:
        """The answer as the summary shows it, in the current locale."""
        if self.describe is not None:
            return self.describe(data)
        value = data.get(self.key)
        if self.show is not None:
            return self.show(value)
        # Typed answers keep their order inside right-to-left lines ("2 Ankawa Street").
        return isolate(str(value)) if value else "-"


@dataclass(frozen=True)
class Summary:
    """The form's last step: every answer, Edit for each, and the button that stores it all.

    `done(ctx, values)` runs on that button once every question that applies is answered, with
    the model's column values from the answers, and decides where the conversation goes (it
    stores, thanks, clears the answers).
    """

    title: str  # N_ messages, all of them
    intro: str
    outro: str
    confirm: str
    payload: str
    done: Callable[[Ctx, dict[str, Any]], Awaitable[Transition]]


@dataclass
class Form:
    """Questions in order, then the summary; `steps` adds steps outside the order (a limit, a
    withdrawal) that the questions' answers may go to."""

    name: str
    questions: Sequence[Question]
    summary: Summary
    recall: bool = False  # questions say the answer already given when asked again
    steps: Mapping[str, Step] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Index the questions by key."""
        self.by_key = {q.key: q for q in self.questions}

    def __getitem__(self, key: str) -> Question:
        """The question with this key."""
        return self.by_key[key]

    def next(self, data: Data, after: str | None) -> str:
        """The question after `after` (from the start with None) that applies; when editing
        from the summary, the next one still unanswered; else the summary."""
        keys = [q.key for q in self.questions]
        start = keys.index(after) + 1 if after is not None else 0
        for question in self.questions[start:]:
            if not question.applies(data):
                continue
            if data.get("editing") and question.has_answer(data):
                continue
            return question.key
        return "summary"

    def current(self, data: Data, question: Question) -> str:
        """A line saying the answer already given to this question, if any."""
        if not (self.recall and question.recall and question.has_answer(data)):
            return ""
        return "\n\n" + _("Your answer now: %(answer)s") % {"answer": question.words(data)}

    def lines(self, data: Data) -> list[tuple[str, str]]:
        """The summary's (label, answer) pairs, in order."""
        return [
            (_(q.label), q.words(data))
            for q in self.questions
            if q.label and (q.in_summary or q.applies)(data)
        ]

    def listing(self, data: Data) -> list[tuple[str, str]]:
        """The answers given so far, named as the summary names them ("My data")."""
        return [
            (_(q.label), q.words(data))
            for q in self.questions
            if q.label and q.edit and q.key in data
        ]

    def to_model(self, data: Data) -> dict[str, Any]:
        """The model's column values from the answers."""
        values: dict[str, Any] = {}
        for question in self.questions:
            if question.to_model is not None:
                values.update(question.to_model(data))
            elif question.column is not None:
                values[question.column] = data.get(question.key)
        return values

    def from_model(self, row: Any) -> Data:
        """The answers a stored row holds, as the questions keep them (for reading a stored
        report or signature back through the same declarations)."""
        data: Data = {}
        for question in self.questions:
            if question.from_model is not None:
                data.update(question.from_model(row))
            elif question.column is not None:
                data[question.key] = getattr(row, question.column)
        return data

    def shows(self) -> dict[str, Callable[[Any], str]]:
        """How a stored column's value reads, for the columns filled by a question that says."""
        return {q.column: q.show for q in self.questions if q.column and q.show}

    def flow(self) -> Flow:
        """The flow: one step per question, the summary, then the extra steps."""
        steps = {q.key: self._step(q) for q in self.questions}
        steps["summary"] = Step(self._ask_summary, self._on_summary)
        return Flow(self.name, {**steps, **self.steps})

    def _step(self, question: Question) -> Step:
        """The step that asks a question and, once it is answered, goes on to the next."""

        async def ask(ctx: Ctx) -> None:
            if question.ask is not None:
                await question.ask(ctx)
                return
            assert question.prompt is not None, question.key
            ctx.ask(
                _(question.prompt) + self.current(ctx.data, question),
                question.options(ctx),
                columns=question.columns,
            )

        async def answer(ctx: Ctx) -> Transition:
            decided = await question.answer(ctx)
            return decided or goto(self.next(ctx.data, question.key))

        return Step(
            ask,
            answer,
            accepts_text=question.accepts_text,
            accepts_media=question.accepts_media,
            numbers_are_answers=question.numbers_are_answers,
            redirect=question.redirect,
        )

    async def _ask_summary(self, ctx: Ctx) -> None:
        """Every answer, an Edit button for each that can change, and the confirming button."""
        ctx.data["editing"] = True
        summary = self.summary
        edits = [
            Button(_("Edit: %(item)s") % {"item": _(q.label)}, f"edit:{q.key}")
            for q in self.questions
            if q.label and q.edit and q.applies(ctx.data)
        ]
        lines = "\n".join(f"• {label}: {words}" for label, words in self.lines(ctx.data))
        ctx.say(
            _(summary.intro) + "\n\n" + lines + "\n\n" + _(summary.outro),
            title=_(summary.title),
            buttons=[
                [Button(_(summary.confirm), summary.payload)],
                *rows(edits, 2),
                nav_buttons(MENU),
            ],
        )

    async def _on_summary(self, ctx: Ctx) -> Transition:
        """Edit an answer (clearing what it says first), or confirm once all is answered."""
        if ctx.choice and ctx.choice.startswith("edit:"):
            key = ctx.choice[5:]
            for cleared in self.by_key[key].clears if key in self.by_key else ():
                ctx.data.pop(cleared, None)
            return goto(key)
        if ctx.choice != self.summary.payload:
            return retry()
        unanswered = self.next(ctx.data, self.questions[0].key)
        if unanswered != "summary":  # Back out of an edit can leave a question unanswered
            ctx.say(answer_first())
            return goto(unanswered)
        return await self.summary.done(ctx, self.to_model(ctx.data))


def answer_first() -> str:
    """What Send or Confirm says when a question has no answer."""
    return _("Please answer this question first.")


def rows(items: list[Button], columns: int) -> list[list[Button]]:
    """Buttons in rows of `columns`."""
    return [items[i : i + columns] for i in range(0, len(items), columns)]


# Kinds of question ------------------------------------------------------------------------------


def coded_buttons(labels: Mapping[str, str], prefix: str) -> Callable[[Ctx], list[Button]]:
    """The options of a question whose answers are codes: one button per code, "prefix:code"."""
    return lambda _ctx: [Button(_(label), f"{prefix}:{code}") for code, label in labels.items()]


def choice(
    key: str,
    prompt: str,
    labels: Mapping[str, str],
    *,
    prefix: str,
    fallback: str = "other",
    columns: int = 1,
    **more: Any,
) -> Question:
    """Pick one of `labels` (code -> N_ label) by button, number or label."""

    async def answer(ctx: Ctx) -> None:
        ctx.data[key] = (ctx.choice or f"{prefix}:{fallback}").split(":", 1)[1]

    return Question(
        key,
        answer,
        prompt=prompt,
        options=lambda ctx: [
            Button(_(label), f"{prefix}:{code}") for code, label in labels.items()
        ],
        columns=columns,
        show=lambda value: _(labels.get(str(value), labels[fallback])),
        **more,
    )


def yes_no(
    key: str, prompt: str, *, then: Callable[[Ctx, bool], None] | None = None, **more: Any
) -> Question:
    """Yes or No, stored as True or False; `then(ctx, answer)` runs after it is stored."""

    async def answer(ctx: Ctx) -> None:
        ctx.data[key] = ctx.choice == "yes"
        if then is not None:
            then(ctx, ctx.data[key])

    return Question(
        key,
        answer,
        prompt=prompt,
        options=lambda ctx: [Button(_("Yes"), "yes"), Button(_("No"), "no")],
        columns=2,
        show=lambda value: _("Yes") if value else _("No"),
        **more,
    )


def typed(key: str, prompt: str, limit: int, **more: Any) -> Question:
    """A short text in words (a city, a name, a role), at most `limit` characters."""

    async def answer(ctx: Ctx) -> Transition | None:
        value = " ".join(ctx.text.split())
        if len(value) > limit:
            return retry(too_long(limit, ctx.length(value)))
        if not any(ch.isalpha() for ch in value):
            return retry(_("Please write it in words."))
        ctx.data[key] = value
        return None

    return Question(key, answer, prompt=prompt, accepts_text=True, **more)


def governorate_buttons(prefix: str) -> list[Button]:
    """The 18 governorates, named in the current locale."""
    return [
        Button(p.name(current_locale()), f"{prefix}:{p.pcode}") for p in gazetteer.GOVERNORATES
    ]


def pick_place(ctx: Ctx, prefix: str, among: Any) -> str | None:
    """A P-code from a pressed button or a typed name."""
    if ctx.choice and ctx.choice.startswith(f"{prefix}:"):
        return ctx.choice.split(":", 1)[1]
    found = gazetteer.find(ctx.text, among) if ctx.text else None
    return found.pcode if found else None


def governorate(
    key: str,
    prompt: str,
    *,
    prefix: str,
    show: Callable[[Any], str],
    then: Callable[[Ctx, str], None] | None = None,
    **more: Any,
) -> Question:
    """A governorate by button or typed name, stored as its P-code; `then(ctx, pcode)` runs
    before it is stored (to clear what a new one makes wrong)."""

    async def answer(ctx: Ctx) -> Transition | None:
        pcode = pick_place(ctx, prefix, gazetteer.GOVERNORATES)
        if pcode is None:
            return retry(_("Please choose the governorate from the list, or type its name."))
        if then is not None:
            then(ctx, pcode)
        ctx.data[key] = pcode
        return None

    return Question(
        key,
        answer,
        prompt=prompt,
        options=lambda ctx: governorate_buttons(prefix),
        columns=2,
        show=show,
        accepts_text=True,
        **more,
    )


def valid_phone(text: str) -> str | None:
    """A phone number in E.164 form, Iraqi numbers also without the country code."""
    cleaned = ascii_digits(text).strip().replace(" ", "").replace("-", "")
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if re.fullmatch(r"964\d{9,10}", cleaned):
        cleaned = "+" + cleaned  # shared contacts come without the +
    try:
        number = phonenumbers.parse(cleaned, "IQ")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def shared_phone(ctx: Ctx) -> str:
    """The number shared (Telegram's button), the chat's own (WhatsApp), or the typed one."""
    if ctx.inbound.phone:
        return ctx.inbound.phone
    if ctx.choice == SHARE_PHONE and ctx.address.phone:
        return ctx.address.phone  # on WhatsApp the chat is the phone number
    return ctx.text


def phone(key: str, prompt: str, *, skip: str | None = None, **more: Any) -> Question:
    """A phone number, shared with the platform's button or typed; with `skip` (a payload), a
    Skip button that stores none."""

    async def answer(ctx: Ctx) -> Transition | None:
        if skip is not None and ctx.choice == skip:
            ctx.data[key] = None
            return None
        number = valid_phone(shared_phone(ctx))
        if number is None:
            return retry(
                _("That does not look like a phone number. Please type it like 0770 123 4567.")
            )
        ctx.data[key] = number
        return None

    def options(ctx: Ctx) -> list[Button]:
        share = [Button(_("Share my phone number"), SHARE_PHONE)]
        return share + ([Button(_("Skip"), skip)] if skip else [])

    return Question(
        key,
        answer,
        prompt=prompt,
        options=options,
        accepts_text=True,
        accepts_media=True,
        numbers_are_answers=True,
        **more,
    )


def number_buttons(numbers: Iterable[int]) -> list[Button]:
    """Buttons for numbers, in the current locale's digits."""
    return [Button(format_number(n), f"n:{n}") for n in numbers]


def chosen_number(ctx: Ctx) -> int | None:
    """A number from a button or typed in any digit script."""
    if ctx.choice and ctx.choice.startswith("n:"):
        return int(ctx.choice[2:])
    return parse_int(ctx.text)


def multi(
    key: str,
    prompt: str,
    labels: Mapping[str, str] | Callable[[Ctx], Mapping[str, str]],
    *,
    prefix: str,
    at_least_one: str | None,
    buttons: Mapping[str, str] | None = None,
    then: Callable[[Ctx, bool], None] | None = None,
    **more: Any,
) -> Question:
    """Several of `labels` (code -> N_ label, in this order): each button chooses or unchooses
    one, Done ends (the hint `at_least_one` while none is chosen; with None, none is an
    answer); several typed at once ("1, 4", "food, health") are added. `buttons`: shorter labels
    for the buttons; `then(ctx, done)` runs after each change and at Done (to clear what no
    longer holds). `labels` may instead be a function of the conversation giving names already
    in the reader's language (places, which gettext does not hold)."""

    def named(ctx: Ctx) -> tuple[Mapping[str, str], Mapping[str, str]]:
        """(code -> words on the button, code -> label), in the reader's language."""
        if callable(labels):
            words = labels(ctx)
            return words, words
        return (
            {code: _(label) for code, label in (buttons or labels).items()},
            {code: _(label) for code, label in labels.items()},
        )

    async def ask(ctx: Ctx) -> None:
        chosen = ctx.data.get(key, [])
        short, _long = named(ctx)
        options = [
            Button(("✅ " if code in chosen else "") + words, f"{prefix}:{code}")
            for code, words in short.items()
        ]
        ctx.ask(_(prompt), [*options, Button(_("Done"), f"{prefix}:done")], columns=2)

    async def answer(ctx: Ctx) -> Transition | None:
        chosen: list[str] = list(ctx.data.get(key, []))
        short, long = named(ctx)
        if ctx.choice == f"{prefix}:done":
            if not chosen and at_least_one is not None:
                return retry(_(at_least_one))
            ctx.data[key] = chosen
            if then is not None:
                then(ctx, True)
            return None
        if ctx.choice is not None:
            code = ctx.choice.removeprefix(f"{prefix}:")
            if code not in long:
                return goto(key)
            if code in chosen:
                chosen.remove(code)
            else:
                chosen.append(code)
        else:
            # Typed choices are added, not toggled: "1, 4" says what is chosen.
            typed = typed_choices(ctx.text, ctx.offered, (short, long), prefix)
            if typed is None:
                return retry()
            chosen += [code for code in typed if code not in chosen]
        ctx.data[key] = [code for code in long if code in chosen]  # a stable order
        if then is not None:
            then(ctx, False)
        return goto(key)

    return Question(
        key,
        answer,
        ask=ask,
        answered=(
            (lambda data: bool(data.get(key)))
            if at_least_one is not None
            else (lambda data: key in data)
        ),
        column=key,
        to_model=lambda data: {key: list(data.get(key, []))},
        accepts_text=True,  # several choices typed at once
        **more,
    )


# Several typed choices are separated by commas (Latin, Arabic) or semicolons.
SEPARATORS = re.compile(r"\s*[,،;؛]\s*")


def typed_choices(
    text: str,
    offered: Sequence[tuple[str, str]],
    vocabularies: Sequence[Mapping[str, str]],
    prefix: str,
) -> list[str] | None:
    """The codes that a typed list of choices picks ("1, 4", "١، ٤", "food, health"): each part
    by the number offered or the label shown, by a code, or by a label (of any of
    `vocabularies`, code -> N_ label) in full or by one of its words that no other label has.
    None when any part picks nothing."""
    parts = [p for p in SEPARATORS.split(text.strip()) if p]
    if len(parts) == 1 and all(ch.isdigit() or ch.isspace() for ch in parts[0]):
        parts = parts[0].split()  # "1 4"
    codes: list[str] = []
    for part in parts:
        payload = resolve_choice(part, offered)
        code = payload.removeprefix(f"{prefix}:") if payload else None
        if code is None or not any(code in labels for labels in vocabularies):
            code = _word_choice(part, vocabularies)
        if code is None:
            return None
        if code not in codes:
            codes.append(code)
    return codes or None


def _stem(word: str) -> str:
    """A word without the Arabic "and" and "the" before it ("والأدوية" -> "أدوية"), nor the
    Sorani ezafe after it ("ئاوی" -> "ئاو")."""
    for prefix in ("و", "ال"):
        if word.startswith(prefix) and len(word) > len(prefix) + 2:
            word = word[len(prefix) :]
    return word[:-1] if word.endswith(("ی", "ي")) and len(word) > 3 else word


def _word_choice(part: str, vocabularies: Sequence[Mapping[str, str]]) -> str | None:
    """The one code whose label, in full or by one of its words, is `part` (or the code)."""
    key = match_key(part)
    if not key:
        return None
    if any(key in labels for labels in vocabularies):
        return key
    pairs = [
        (code, match_key(_(label))) for labels in vocabularies for code, label in labels.items()
    ]
    full = {code for code, label in pairs if label == key}
    if len(full) == 1:
        return full.pop()
    stem = _stem(key)
    by_word = {code for code, label in pairs if stem in {_stem(w) for w in label.split()}}
    return by_word.pop() if len(by_word) == 1 else None
