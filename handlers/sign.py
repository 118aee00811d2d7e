"""Signing the declaration for an organization; withdrawing; the public list of signatories.

Nothing is stored until Confirm. No answer ever says who signed for an organization or how to
reach them: the public list shows the organization's name, type and governorate only.
"""

from __future__ import annotations

import re
from typing import Any

from bot import declaration, gazetteer, signatures
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
from bot.forms import Form, Question, Summary, choice, governorate, phone, typed
from bot.i18n import N_, _, current_locale, format_number, isolate, pgettext
from bot.messages import Button
from bot.models import Signature
from bot.signatures import STATUS_LABELS, TYPE_LABELS, is_arabic_script, public_name
from bot.text import organization_key

NAME_LIMIT = 200
CITY_LIMIT = 100
PERSON_LIMIT = 120
PAGE = 10
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}", re.ASCII)


def shown_name(data: dict[str, Any]) -> str:
    """The organization's names as given."""
    return " / ".join(isolate(str(n)) for n in (data.get("name_ar"), data.get("name_en")) if n)


def place_name(pcode: Any) -> str:
    """A governorate's name in the current locale ("-" for none)."""
    found = gazetteer.place(str(pcode))
    return found.name(current_locale()) if found else "-"


async def skip_read(ctx: Ctx) -> str | None:
    """Straight to the name when this version was read to the end and nothing is signed."""
    if ctx.contact.declaration_read == declaration.VERSION and (
        await signatures.active_signature(ctx.session, ctx.contact.id) is None
    ):
        ctx.data["read"] = True
        return "name"
    return None


async def ask_read(ctx: Ctx) -> None:
    """Offer the declaration first; or show the signature that stands, to withdraw it."""
    active = await signatures.active_signature(ctx.session, ctx.contact.id)
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


async def on_read(ctx: Ctx) -> Transition | None:
    """Go and read, go on, or withdraw."""
    if ctx.choice == "sig:read":
        return start("declaration")  # its last part offers "Sign the declaration"
    if ctx.choice == "sig:withdraw":
        return goto("withdraw")
    ctx.data.pop("active", None)
    ctx.data["read"] = True
    return None


async def ask_name(ctx: Ctx) -> None:
    """The organization's name."""
    if current_locale() == "ckb":
        # Kurdish organizations are asked for their name in Kurdish first, not in Arabic.
        ctx.ask(
            _("What is the name of your organization? Write it in Kurdish, Arabic or English.")
        )
    else:
        ctx.ask(_("What is the name of your organization? Write it in Arabic or in English."))


def name_problem(ctx: Ctx, name: str) -> Transition | None:
    """A name too long, or with no letters or digits to it ("ـــ", "!!")."""
    if len(name) > NAME_LIMIT:
        return retry(too_long(NAME_LIMIT, ctx.length(name)))
    if len(organization_key(name)) < 2:
        return retry(_("Please write the organization's name."))
    return None


async def on_name(ctx: Ctx) -> Transition | None:
    """Store the name in its script; look for a probable duplicate."""
    name = " ".join(ctx.text.split())
    if problem := name_problem(ctx, name):
        return problem
    ctx.data["name_ar" if is_arabic_script(name) else "name_en"] = name
    ctx.data.pop("name_en" if is_arabic_script(name) else "name_ar", None)
    ctx.data["name"] = name
    await check_similar(ctx)
    return None


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


async def on_other_name(ctx: Ctx) -> Transition | None:
    """Store the second name, in the script it is written in."""
    if ctx.choice != "name:skip":
        name = " ".join(ctx.text.split())
        if problem := name_problem(ctx, name):
            return problem
        key = "name_ar" if is_arabic_script(name) else "name_en"
        if ctx.data.get(key):
            return retry(_("Please write the name in the other language, or press Skip."))
        ctx.data[key] = name
        if ctx.data.get("similar_to") is None:
            await check_similar(ctx)
    ctx.data["other_name"] = True
    return None


async def check_similar(ctx: Ctx) -> None:
    """Flag a probable duplicate among the signatures that stand (not withdrawn or rejected)."""
    names = [str(n) for n in (ctx.data.get("name_ar"), ctx.data.get("name_en")) if n]
    ctx.data["similar_to"], ctx.data["similar_verified"] = await signatures.similar(
        ctx.session, names
    )
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


async def on_similar(ctx: Ctx) -> Transition | None:
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
    return None


async def ask_email(ctx: Ctx) -> None:
    """An email address; Skip is offered only when a phone number was given."""
    if ctx.data.get("phone"):
        ctx.ask(_("An email address? Type it, or press Skip."), [Button(_("Skip"), "email:skip")])
    else:
        ctx.ask(_("Then please type an email address, such as name@example.org."))


async def on_email(ctx: Ctx) -> Transition | None:
    """Store a valid address; a phone or an email is needed."""
    if ctx.choice == "email:skip":
        if not ctx.data.get("phone"):
            return retry(_("We need a phone number or an email address. Please type an email."))
        ctx.data["email"] = None
        return None
    email = ctx.text.strip().lower()
    if not EMAIL.fullmatch(email) or len(email) > 200:
        return retry(_("That does not look like an email address, such as name@example.org."))
    ctx.data["email"] = email
    return None


async def on_authorized(ctx: Ctx) -> Transition | None:
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
    return None


async def signed(ctx: Ctx, values: dict[str, Any]) -> Transition:
    """Confirm: store the signature, pending verification, and give the receipt."""
    signature, notices = await signatures.store(
        ctx.session,
        ctx.settings,
        ctx.contact,
        values,
        locale=ctx.locale,
        now=ctx.now,
    )
    ctx.extra += notices
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
    if ctx.choice == "wd:yes":
        withdrawn, notices = await signatures.withdraw(
            ctx.session, ctx.settings, ctx.contact.id, ctx.now
        )
        if withdrawn is not None:
            ctx.extra += notices
            ctx.say(_("Your organization's signature was withdrawn."))
            return to_menu()
    ctx.say(_("Your signature stands."))
    return to_menu()


FORM = Form(
    "sign",
    [
        Question("read", on_read, ask=ask_read, redirect=skip_read),
        Question(
            "name",
            on_name,
            ask=ask_name,
            label=N_("Name of the organization"),
            describe=shown_name,
            accepts_text=True,
            # The names, and what was found from them, are asked again from the start.
            clears=(
                "name",
                "name_ar",
                "name_en",
                "other_name",
                "similar",
                "similar_to",
                "similar_verified",
            ),
            to_model=lambda data: {k: data.get(k) for k in ("name_ar", "name_en")},
            from_model=lambda row: {
                "name_ar": row.name_ar,
                "name_en": row.name_en,
                "name": row.name_ar or row.name_en,
            },
        ),
        Question("other_name", on_other_name, ask=ask_other_name, accepts_text=True),
        Question(
            "similar",
            on_similar,
            ask=ask_similar,
            # Asked only about a verified signature: a pending one is not public, and saying
            # that an organization "has already signed" would reveal it. Coordinators see it.
            applies=lambda data: (
                data.get("similar_to") is not None and bool(data.get("similar_verified"))
            ),
            to_model=lambda data: {
                "similar_to": data.get("similar_to"),
                "same_organization": data.get("similar"),
            },
            from_model=lambda row: {
                "similar_to": row.similar_to,
                "similar": row.same_organization,
            },
        ),
        choice(
            "type",
            N_("What kind of organization is it?"),
            TYPE_LABELS,
            prefix="type",
            columns=2,
            label=N_("Kind of organization"),
            column="org_type",
            to_model=lambda data: {"org_type": str(data.get("type", "other"))},
        ),
        governorate(
            "gov",
            N_("In which governorate is the organization based?"),
            prefix="gov",
            show=place_name,
            label=N_("Governorate"),
            column="governorate",
        ),
        typed(
            "city",
            N_("In which city or town?"),
            CITY_LIMIT,
            label=N_("City or town"),
            column="city",
        ),
        typed(
            "person",
            N_("What is your full name?"),
            PERSON_LIMIT,
            label=N_("Your full name"),
            column="representative",
        ),
        typed(
            "role",
            N_("What is your role in the organization (for example, director)?"),
            100,
            label=N_("Your role"),
            column="role",
        ),
        phone(
            "phone",
            N_(
                "We need a phone number or an email address to reach you; one is enough. A "
                "phone number? Share it, type it, or press Skip to give an email address "
                "instead."
            ),
            skip="phone:skip",
            label=N_("Phone"),
            column="phone",
        ),
        Question(
            "email", on_email, ask=ask_email, label=N_("Email"), column="email", accepts_text=True
        ),
        Question(
            "authorized",
            on_authorized,
            prompt=N_("Are you authorized to sign for this organization?"),
            options=lambda ctx: [
                Button(_("I am authorized to sign for this organization"), "auth:yes"),
                Button(_("I am not"), "auth:no"),
            ],
        ),
    ],
    Summary(
        title=N_("Your signature"),
        intro=N_("Please check before you sign:"),
        outro=N_(
            "By confirming, you sign the declaration of the Civil Initiative "
            "for this organization."
        ),
        confirm=N_("Confirm and sign"),
        payload="sig:confirm",
        done=signed,
    ),
    steps={"withdraw": Step(ask_withdraw, on_withdraw)},
)
FLOW = FORM.flow()


async def ask_signed(ctx: Ctx) -> None:
    """The verified signatories, paged: name, kind, governorate; never the representative."""
    page = int(ctx.data.get("page", 0))
    total, rows = await signatures.signatories(ctx.session, page * PAGE, PAGE)
    lines = [
        _("%(count)s organizations have signed the declaration and been verified.")
        % {"count": isolate(format_number(total))}
    ]
    for number, row in enumerate(rows, start=page * PAGE + 1):
        lines.append(
            f"{isolate(str(number))}. {public_name(row)} · "
            f"{signatures.type_text(row.org_type)} · {place_name(row.governorate)}"
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
