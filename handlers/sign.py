"""Signing the declaration for an organization; withdrawing; the public list of signatories.

Nothing is stored until Confirm. No answer ever says who signed for an organization or how to
reach them: the public list shows the organization's name, type and governorate only.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy import func, select

from bot import declaration, gazetteer
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
    too_long,
)
from bot.i18n import (
    N_,
    _,
    current_locale,
    direct,
    format_number,
    isolate,
    pgettext,
    use_locale,
)
from bot.messages import SHARE_PHONE, Address, Button, Outbound
from bot.models import Signature
from bot.text import organization_key
from handlers.report import (
    answer_first,
    governorate_buttons,
    pick_place,
    shared_phone,
    valid_phone,
)

NAME_LIMIT = 200
# The duplicate key's column: folding can lengthen a name (NFKC makes ﻻ two letters), and
# PostgreSQL refuses a value longer than its column.
KEY_LIMIT = 200
CITY_LIMIT = 100
PERSON_LIMIT = 120
SIMILARITY = 90  # rapidfuzz score from which two names are probably the same organization
PAGE = 10
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}", re.ASCII)
RECEIPT_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

TYPE_LABELS: dict[str, str] = {
    "association": N_("Association or NGO"),
    "union": N_("Union or syndicate"),
    "women": N_("Women's organization"),
    "youth": N_("Youth group"),
    "media": N_("Media"),
    "rights": N_("Human-rights group"),
    "professional": N_("Professional association"),
    "other": N_("Other"),
}
STATUS_LABELS: dict[str, str] = {
    "pending": N_("Pending verification"),
    "verified": N_("Verified"),
    "rejected": N_("Not accepted"),
    "withdrawn": N_("Withdrawn"),
}
ORDER = (
    "read",
    "name",
    "other_name",
    "similar",
    "type",
    "gov",
    "city",
    "person",
    "role",
    "phone",
    "email",
    "authorized",
    "summary",
)


def is_arabic_script(text: str) -> bool:
    """Whether a name is written mostly in Arabic script (Arabic or Sorani)."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and sum("\u0600" <= ch <= "\u06ff" for ch in letters) > len(letters) / 2


def applies(data: dict[str, Any], step: str) -> bool:
    """Whether a question is asked, given the answers so far."""
    if step == "similar":
        # Asked only about a verified signature: a pending one is not public, and saying that
        # an organization "has already signed" would reveal it. Coordinators see the flag.
        return data.get("similar_to") is not None and bool(data.get("similar_verified"))
    return True


def next_step(ctx: Ctx, after: str) -> Transition:
    """The next question; from the summary's Edit, the next one still unanswered."""
    for step in ORDER[ORDER.index(after) + 1 :]:
        if not applies(ctx.data, step):
            continue
        if ctx.data.get("editing") and step in ctx.data and step != "summary":
            continue
        return goto(step)
    return goto("summary")


def shown_name(data: dict[str, Any]) -> str:
    """The organization's names as given."""
    return " / ".join(isolate(str(n)) for n in (data.get("name_ar"), data.get("name_en")) if n)


async def skip_read(ctx: Ctx) -> str | None:
    """Straight to the name when this version was read to the end and nothing is signed."""
    if ctx.contact.declaration_read == declaration.VERSION and (
        await active_signature(ctx) is None
    ):
        ctx.data["read"] = True
        return "name"
    return None


async def ask_read(ctx: Ctx) -> None:
    """Offer the declaration first; or show the signature that stands, to withdraw it."""
    active = await active_signature(ctx)
    if active is not None:
        ctx.data["active"] = active.id
        ctx.say(
            _(
                "You have signed for %(organization)s. Status: %(status)s.\n"
                "Your receipt: %(receipt)s"
            )
            % {
                "organization": public_name(active),
                "status": _(STATUS_LABELS[active.status]),
                "receipt": isolate(active.receipt),
            },
            buttons=[
                [Button(_("Withdraw the signature"), "sig:withdraw")],
                [Button(_("Sign for another organization"), "sig:another")],
                nav_buttons(MENU),
            ],
        )
        return
    ctx.ask(
        _(
            "Thank you for standing with the Civil Initiative. Please read the declaration "
            "before you sign it for your organization."
        ),
        [Button(_("Read the declaration"), "sig:read"), Button(_("I have read it"), "sig:done")],
        title=_("Sign the declaration"),
    )


async def on_read(ctx: Ctx) -> Transition:
    """Go and read, go on, or withdraw."""
    if ctx.choice == "sig:read":
        return start("declaration")  # its last part offers "Sign the declaration"
    if ctx.choice == "sig:withdraw":
        return goto("withdraw")
    ctx.data.pop("active", None)
    ctx.data["read"] = True
    return next_step(ctx, "read")


async def ask_name(ctx: Ctx) -> None:
    """The organization's name."""
    if current_locale() == "ckb":
        # Kurdish organizations are asked for their name in Kurdish first, not in Arabic.
        ctx.ask(
            _("What is the name of your organization? Write it in Kurdish, Arabic or English.")
        )
    else:
        ctx.ask(_("What is the name of your organization? Write it in Arabic or in English."))


async def on_name(ctx: Ctx) -> Transition:
    """Store the name in its script; look for a probable duplicate."""
    name = " ".join(ctx.text.split())
    if len(name) > NAME_LIMIT:
        return retry(too_long(NAME_LIMIT, ctx.length(name)))
    if len(organization_key(name)) < 2:
        return retry(_("Please write the organization's name."))
    ctx.data["name_ar" if is_arabic_script(name) else "name_en"] = name
    ctx.data.pop("name_en" if is_arabic_script(name) else "name_ar", None)
    ctx.data["name"] = name
    await check_similar(ctx)
    return next_step(ctx, "name")


async def ask_other_name(ctx: Ctx) -> None:
    """The name in the other language, if it has one."""
    # The first name was in Arabic script (Arabic or Kurdish) or in Latin letters.
    if ctx.data.get("name_ar"):
        other = _("English")
    elif current_locale() == "ckb":
        other = _("Kurdish or Arabic")
    else:
        other = _("Arabic")
    ctx.ask(
        _("Does it also have a name in %(language)s? Write it, or press Skip.")
        % {"language": other},
        [Button(_("Skip"), "name:skip")],
    )


async def on_other_name(ctx: Ctx) -> Transition:
    """Store the second name, in the script it is written in."""
    if ctx.choice != "name:skip":
        name = " ".join(ctx.text.split())
        if len(name) > NAME_LIMIT:
            return retry(too_long(NAME_LIMIT, ctx.length(name)))
        if len(organization_key(name)) < 2:  # as for the first name: not only "ـــ" or "!!"
            return retry(_("Please write the organization's name."))
        key = "name_ar" if is_arabic_script(name) else "name_en"
        if ctx.data.get(key):
            return retry(_("Please write the name in the other language, or press Skip."))
        ctx.data[key] = name
        if ctx.data.get("similar_to") is None:
            await check_similar(ctx)
    ctx.data["other_name"] = True
    return next_step(ctx, "other_name")


async def check_similar(ctx: Ctx) -> None:
    """Flag a probable duplicate among the signatures that stand (not withdrawn or rejected)."""
    rows = (
        await ctx.session.execute(
            select(Signature.id, Signature.name_ar, Signature.name_en, Signature.status).where(
                Signature.status.in_(("pending", "verified"))
            )
        )
    ).all()
    verified = {row.id for row in rows if row.status == "verified"}
    # Every name of every standing signature, in either language, normalized.
    choices = [
        (row.id, organization_key(n)) for row in rows for n in (row.name_ar, row.name_en) if n
    ]
    keys = [key for _id, key in choices]
    best: tuple[int, float] | None = None
    for name in (ctx.data.get("name_ar"), ctx.data.get("name_en")):
        if not name or not keys:
            continue
        found = process.extractOne(
            organization_key(name), keys, scorer=fuzz.token_sort_ratio, score_cutoff=SIMILARITY
        )
        if found is not None and (best is None or found[1] > best[1]):
            best = (choices[found[2]][0], float(found[1]))
    ctx.data["similar_to"] = best[0] if best else None
    ctx.data["similar_verified"] = best is not None and best[0] in verified
    ctx.data.pop("similar", None)


async def ask_similar(ctx: Ctx) -> None:
    """Ask, without saying who signed, whether the earlier signature is theirs."""
    ctx.ask(
        _(
            "An organization with this name, or a very similar one, has already signed. "
            "Is it your organization?"
        ),
        [
            Button(_("Yes, it is my organization"), "same:yes"),
            Button(_("No, it is another organization"), "same:no"),
        ],
    )


async def on_similar(ctx: Ctx) -> Transition:
    """Their organization has signed already: say so and store nothing; else sign on, the
    answer kept for the coordinators."""
    if ctx.choice == "same:yes":
        earlier = await ctx.session.get(Signature, int(ctx.data.get("similar_to") or 0))
        if earlier is not None and earlier.status == "verified":
            ctx.data.clear()
            ctx.say(
                _(
                    "Then your organization has already signed, and its signature is verified: "
                    "there is no need to sign again. Thank you. If something in it should "
                    "change, a coordinator of the Initiative can help."
                )
            )
            return to_menu()
    ctx.data["similar"] = ctx.choice == "same:yes"
    return next_step(ctx, "similar")


async def ask_type(ctx: Ctx) -> None:
    """What kind of organization."""
    ctx.ask(
        _("What kind of organization is it?"),
        [Button(_(label), f"type:{code}") for code, label in TYPE_LABELS.items()],
        columns=2,
    )


async def on_type(ctx: Ctx) -> Transition:
    """Store the type."""
    ctx.data["type"] = (ctx.choice or "type:other").split(":", 1)[1]
    return next_step(ctx, "type")


async def ask_gov(ctx: Ctx) -> None:
    """Where the organization is based."""
    ctx.ask(
        _("In which governorate is the organization based?"),
        governorate_buttons("gov"),
        columns=2,
    )


async def on_gov(ctx: Ctx) -> Transition:
    """Store the governorate's P-code."""
    pcode = pick_place(ctx, "gov", gazetteer.GOVERNORATES)
    if pcode is None:
        return retry(_("Please choose the governorate from the list, or type its name."))
    ctx.data["gov"] = pcode
    return next_step(ctx, "gov")


def text_step(key: str, question: str, limit: int) -> Step:
    """A question answered by a short text."""

    async def ask(ctx: Ctx) -> None:
        ctx.ask(_(question))

    async def answer(ctx: Ctx) -> Transition:
        value = " ".join(ctx.text.split())
        if len(value) > limit:
            return retry(too_long(limit, ctx.length(value)))
        if not any(ch.isalpha() for ch in value):
            return retry(_("Please write it in words."))
        ctx.data[key] = value
        return next_step(ctx, key)

    return Step(ask, answer, accepts_text=True)


async def ask_phone(ctx: Ctx) -> None:
    """A phone number (share button or typed), or Skip to give an email instead."""
    ctx.ask(
        _(
            "We need a phone number or an email address to reach you; one is enough. A phone "
            "number? Share it, type it, or press Skip to give an email address instead."
        ),
        [Button(_("Share my phone number"), SHARE_PHONE), Button(_("Skip"), "phone:skip")],
    )


async def on_phone(ctx: Ctx) -> Transition:
    """Store a valid number, or none."""
    if ctx.choice == "phone:skip":
        ctx.data["phone"] = None
        return next_step(ctx, "phone")
    phone = valid_phone(shared_phone(ctx))
    if phone is None:
        return retry(
            _("That does not look like a phone number. Please type it like 0770 123 4567.")
        )
    ctx.data["phone"] = phone
    return next_step(ctx, "phone")


async def ask_email(ctx: Ctx) -> None:
    """An email address; Skip is offered only when a phone number was given."""
    if ctx.data.get("phone"):
        ctx.ask(_("An email address? Type it, or press Skip."), [Button(_("Skip"), "email:skip")])
    else:
        ctx.ask(_("Then please type an email address, such as name@example.org."))


async def on_email(ctx: Ctx) -> Transition:
    """Store a valid address; a phone or an email is needed."""
    if ctx.choice == "email:skip":
        if not ctx.data.get("phone"):
            return retry(_("We need a phone number or an email address. Please type an email."))
        ctx.data["email"] = None
        return next_step(ctx, "email")
    email = ctx.text.strip().lower()
    if not EMAIL.fullmatch(email) or len(email) > 200:
        return retry(_("That does not look like an email address, such as name@example.org."))
    ctx.data["email"] = email
    return next_step(ctx, "email")


async def ask_authorized(ctx: Ctx) -> None:
    """The representative's word that they may sign."""
    ctx.ask(
        _("Are you authorized to sign for this organization?"),
        [
            Button(_("I am authorized to sign for this organization"), "auth:yes"),
            Button(_("I am not"), "auth:no"),
        ],
    )


async def on_authorized(ctx: Ctx) -> Transition:
    """Only an authorized representative goes on."""
    if ctx.choice != "auth:yes":
        ctx.data.clear()
        ctx.say(
            _(
                "Thank you. Only a person authorized by the organization can sign for it. "
                "Please share the declaration with them. Nothing was stored."
            )
        )
        return to_menu()
    ctx.data["authorized"] = True
    return next_step(ctx, "authorized")


EDITABLE = (
    ("name", N_("Name of the organization")),
    ("type", N_("Kind of organization")),
    ("gov", N_("Governorate")),
    ("city", N_("City or town")),
    ("person", N_("Your full name")),
    ("role", N_("Your role")),
    ("phone", N_("Phone")),
    ("email", N_("Email")),
)


def describe(data: dict[str, Any], step: str) -> str:
    """An answer as the summary shows it."""
    value = data.get(step)
    if step == "name":
        return shown_name(data)
    if step == "type":
        return _(TYPE_LABELS.get(str(value), "Other"))
    if step == "gov":
        found = gazetteer.place(str(value))
        return found.name(current_locale()) if found else "-"
    # Typed answers keep their order inside right-to-left lines ("2 Ankawa Street").
    return isolate(str(value)) if value else "-"


async def ask_summary(ctx: Ctx) -> None:
    """Every answer, Edit for each, and Confirm."""
    ctx.data["editing"] = True
    lines = [f"• {_(label)}: {describe(ctx.data, step)}" for step, label in EDITABLE]
    buttons = [[Button(_("Confirm and sign"), "sig:confirm")]]
    edits = [
        Button(_("Edit: %(item)s") % {"item": _(label)}, f"edit:{step}")
        for step, label in EDITABLE
    ]
    buttons += [edits[i : i + 2] for i in range(0, len(edits), 2)]
    buttons.append(nav_buttons(MENU))
    ctx.say(
        _("Please check before you sign:")
        + "\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _(
            "By confirming, you sign the declaration of the Civil Initiative "
            "for this organization."
        ),
        title=_("Your signature"),
        buttons=buttons,
    )


async def on_summary(ctx: Ctx) -> Transition:
    """Edit an answer, or sign."""
    if ctx.choice and ctx.choice.startswith("edit:"):
        step = ctx.choice[5:]
        if step == "name":
            for key in (
                "name",
                "name_ar",
                "name_en",
                "other_name",
                "similar",
                "similar_to",
                "similar_verified",
            ):
                ctx.data.pop(key, None)
        return goto(step)
    if ctx.choice != "sig:confirm":
        return retry()
    unanswered = next_step(ctx, "read")
    if unanswered.target != "summary":  # Back out of an edit can leave a question unanswered
        ctx.say(answer_first())
        return unanswered
    signature = await store(ctx)
    ctx.data.clear()
    ctx.say(
        _(
            "Thank you. Your organization's signature was received.\n"
            "Receipt: %(receipt)s\n"
            "Status: pending verification. A coordinator will check it and we will tell you "
            "the outcome here."
        )
        % {"receipt": isolate(signature.receipt)}
    )
    return to_menu()


def receipt_code(version: str, key: str, moment: str, salt: int = 0) -> str:
    """A receipt derived from the declaration's version, the organization and the time."""
    digest = hashlib.sha256(f"{version}|{key}|{moment}|{salt}".encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    letters = []
    for _i in range(8):
        number, index = divmod(number, len(RECEIPT_ALPHABET))
        letters.append(RECEIPT_ALPHABET[index])
    return "S-" + "".join(letters)


async def store(ctx: Ctx) -> Signature:
    """Save the signature, pending verification, and tell the coordinators."""
    data = ctx.data
    key = organization_key(str(data.get("name_ar") or data.get("name_en")))
    moment = ctx.now.isoformat()
    salt = 0
    while True:
        receipt = receipt_code(declaration.VERSION, key, moment, salt)
        taken = await ctx.session.scalar(select(Signature.id).where(Signature.receipt == receipt))
        if taken is None:
            break
        salt += 1
    signature = Signature(
        receipt=receipt,
        contact_id=ctx.contact.id,
        locale=ctx.locale,
        version=declaration.VERSION,
        text_sha256=declaration.sha256(ctx.locale),
        name_ar=data.get("name_ar"),
        name_en=data.get("name_en"),
        name_key=key[:KEY_LIMIT],
        org_type=str(data.get("type", "other")),
        governorate=str(data["gov"]),
        city=str(data["city"]),
        representative=str(data["person"]),
        role=str(data["role"]),
        phone=data.get("phone"),
        email=data.get("email"),
        similar_to=data.get("similar_to"),
        same_organization=data.get("similar"),
        created_at=ctx.now,
    )
    ctx.session.add(signature)
    await ctx.session.flush()
    await tell_coordinators(ctx, signature, "new")
    return signature


async def tell_coordinators(ctx: Ctx, signature: Signature, event: str) -> None:
    """A new or withdrawn signature's notice for every coordinator, each in their language."""
    for address, locale in await ctx.coordinators():
        with use_locale(locale):
            if event == "new":
                text = _("New signature of the declaration: %(organization)s") % {
                    "organization": public_name(signature)
                }
                if signature.similar_to is not None:
                    text += "\n" + _("Its name is very close to an earlier signature's.")
            else:
                text = _("A signature was withdrawn: %(organization)s") % {
                    "organization": public_name(signature)
                }
            ctx.extra.append(
                Outbound(
                    address=address,
                    text=direct(text),
                    buttons=((Button(_("Open the signature"), f"sig:open:{signature.id}"),),),
                    priority="notice",
                )
            )


def public_name(signature: Signature) -> str:
    """The organization's name in the reader's script where it has one."""
    names = [signature.name_ar, signature.name_en]
    if current_locale() == "en":
        names.reverse()
    return isolate(next(n for n in names if n)) if any(names) else "-"


async def active_signature(ctx: Ctx) -> Signature | None:
    """This person's latest signature that stands (pending or verified)."""
    return await ctx.session.scalar(
        select(Signature)
        .where(
            Signature.contact_id == ctx.contact.id,
            Signature.status.in_(("pending", "verified")),
        )
        .order_by(Signature.id.desc())
        .limit(1)
    )


async def ask_withdraw(ctx: Ctx) -> None:
    """Confirm the withdrawal."""
    ctx.ask(
        _("Withdraw your organization's signature of the declaration?"),
        [
            Button(_("Yes, withdraw it"), "wd:yes"),
            Button(pgettext("signature", "No, keep it"), "wd:no"),
        ],
    )


async def on_withdraw(ctx: Ctx) -> Transition:
    """Withdraw and tell the coordinators, or keep."""
    signature = await active_signature(ctx)
    if signature is not None:  # a coordinator deciding at this moment: wait, and see it after
        await ctx.session.refresh(signature, with_for_update=True)
        if signature.status not in ("pending", "verified"):
            signature = None
    if ctx.choice != "wd:yes" or signature is None:
        ctx.say(_("Your signature stands."))
        return to_menu()
    signature.status = "withdrawn"
    signature.withdrawn_at = ctx.now
    await tell_coordinators(ctx, signature, "withdrawn")
    ctx.say(_("Your organization's signature was withdrawn."))
    return to_menu()


FLOW = Flow(
    "sign",
    {
        "read": Step(ask_read, on_read, redirect=skip_read),
        "name": Step(ask_name, on_name, accepts_text=True),
        "other_name": Step(ask_other_name, on_other_name, accepts_text=True),
        "similar": Step(ask_similar, on_similar),
        "type": Step(ask_type, on_type),
        "gov": Step(ask_gov, on_gov, accepts_text=True),
        "city": text_step("city", N_("In which city or town?"), CITY_LIMIT),
        "person": text_step("person", N_("What is your full name?"), PERSON_LIMIT),
        "role": text_step(
            "role", N_("What is your role in the organization (for example, director)?"), 100
        ),
        "phone": Step(
            ask_phone, on_phone, accepts_text=True, accepts_media=True, numbers_are_answers=True
        ),
        "email": Step(ask_email, on_email, accepts_text=True),
        "authorized": Step(ask_authorized, on_authorized),
        "summary": Step(ask_summary, on_summary),
        "withdraw": Step(ask_withdraw, on_withdraw),
    },
)


async def ask_signed(ctx: Ctx) -> None:
    """The verified signatories, paged: name, kind, governorate; never the representative."""
    page = int(ctx.data.get("page", 0))
    verified = Signature.status == "verified"
    total = int(await ctx.session.scalar(select(func.count(Signature.id)).where(verified)) or 0)
    rows = (
        await ctx.session.scalars(
            select(Signature)
            .where(verified)
            .order_by(Signature.decided_at, Signature.id)
            .offset(page * PAGE)
            .limit(PAGE)
        )
    ).all()
    lines = [
        _("%(count)s organizations have signed the declaration and been verified.")
        % {"count": isolate(format_number(total))}
    ]
    for number, signature in enumerate(rows, start=page * PAGE + 1):
        gov = gazetteer.place(signature.governorate)
        lines.append(
            f"{isolate(str(number))}. {public_name(signature)} · "
            f"{_(TYPE_LABELS.get(signature.org_type, 'Other'))} · "
            f"{gov.name(current_locale()) if gov else '-'}"
        )
    pager = []
    if page > 0:
        pager.append(Button(_("Previous page"), "signed:prev"))
    if (page + 1) * PAGE < total:
        pager.append(Button(_("Next page"), "signed:next"))
    ctx.say(
        "\n".join(lines),
        title=_("Who has signed?"),
        buttons=[pager, [Button(_("Sign the declaration"), "signed:sign")], nav_buttons(MENU)],
    )


async def on_signed(ctx: Ctx) -> Transition:
    """Turn the page, or go and sign."""
    if ctx.choice == "signed:sign":
        return start("sign")
    page = int(ctx.data.get("page", 0))
    ctx.data["page"] = page + 1 if ctx.choice == "signed:next" else max(0, page - 1)
    return goto("list")


SIGNED = Flow("signed", {"list": Step(ask_signed, on_signed)})


def outcome_notice(signature: Signature, address: Address, locale: str) -> Outbound:
    """Tell the representative, in their language, what the coordinators decided."""
    with use_locale(locale):
        if signature.status == "verified":
            text = _(
                "Your organization's signature of the declaration (%(receipt)s) was verified. "
                "Thank you for standing with the Civil Initiative."
            ) % {"receipt": isolate(signature.receipt)}
        else:
            text = _(
                "Your organization's signature (%(receipt)s) could not be accepted. "
                "The reason: %(reason)s"
            ) % {"receipt": isolate(signature.receipt), "reason": signature.reason or "-"}
        return Outbound(address=address, text=direct(text), priority="notice")
