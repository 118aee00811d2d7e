"""Whether a pasted text is a published bulletin: genuine, almost (and what differs), or not.

A genuine text is found by bot.bulletins.find_genuine, as the chat's "Is this genuine?" does.
Otherwise the closest published text is looked for among the latest bulletins, and the words
that differ are listed: a bounded comparison (so many bulletins, so many changes, so many words
each), since anyone may paste anything.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins
from bot.models import Bulletin

NEAR = 80.0  # similarity (0-100) from which a text "almost matches" a published one
COMPARED = 1000  # the latest published bulletins compared with a text that is not genuine
CHANGES = 12  # changes listed at most
WORDS = 30  # words of one change shown at most


@dataclass(frozen=True)
class Change:
    """Words the published text has and the pasted one lacks (`published`), or the reverse."""

    published: str
    pasted: str


@dataclass
class Verdict:
    """What a pasted text is: `genuine`, `near`, `unknown_id` or `unknown`."""

    kind: str
    bulletin: Bulletin | None = None
    locale: str | None = None  # the language the text was compared in
    similarity: int = 0
    changes: list[Change] = field(default_factory=list)
    more: bool = False  # more changes than are listed
    public_id: str | None = None  # the id given, when no published bulletin has it


def _words(text: str) -> list[str]:
    """A text's words, as shown."""
    return text.split()


def differences(published: str, pasted: str) -> tuple[list[Change], bool]:
    """The changes between two texts, word by word, compared as bulletins.normalized reads
    them (letter forms and marks do not count); at most CHANGES, and whether there were more."""
    ours, theirs = _words(published), _words(pasted)
    matcher = difflib.SequenceMatcher(
        None,
        [bulletins.normalized(w) for w in ours],
        [bulletins.normalized(w) for w in theirs],
        autojunk=False,
    )
    found: list[Change] = []
    more = False
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if len(found) == CHANGES:
            more = True
            break
        found.append(Change(_cut(ours[i1:i2]), _cut(theirs[j1:j2])))
    return found, more


def _cut(words: list[str]) -> str:
    """At most WORDS words, with an ellipsis when there were more."""
    return " ".join(words[:WORDS]) + (" …" if len(words) > WORDS else "")


async def verify(session: AsyncSession, text: str) -> Verdict:
    """What `text` (a pasted bulletin, or a bulletin's id alone) is."""
    found = await bulletins.find_genuine(session, text)
    public_id, rest = bulletins.pasted_parts(text)
    if found is not None:
        return Verdict("genuine", found, _language(found, rest))
    wanted = bulletins.normalized(rest)
    named = None
    if public_id is not None:
        named = await session.scalar(
            select(Bulletin).where(
                Bulletin.public_id == public_id, Bulletin.status.in_(bulletins.PUBLISHED)
            )
        )
        if named is None:
            return Verdict("unknown_id", public_id=public_id)
    candidates = (
        [named]
        if named is not None
        else (
            await session.scalars(
                select(Bulletin)
                .where(Bulletin.public_id.is_not(None), Bulletin.status.in_(bulletins.PUBLISHED))
                .order_by(Bulletin.id.desc())
                .limit(COMPARED)
            )
        ).all()
    )
    best: tuple[float, Bulletin, str, str] | None = None
    for bulletin in candidates:
        for locale, item in bulletin.texts.items():
            for shown in (bulletins.plain(item), item["text"].strip()):
                score = fuzz.ratio(bulletins.normalized(shown), wanted)
                if best is None or score > best[0]:
                    best = (score, bulletin, str(locale), shown)
    if best is None or (named is None and best[0] < NEAR):
        return Verdict("unknown")
    score, bulletin, locale, shown = best
    changes, more = differences(shown, rest)
    return Verdict("near", bulletin, locale, int(score), changes, more)


def _language(bulletin: Bulletin, rest: str) -> str | None:
    """The language of the bulletin's text that was pasted (None for an id alone)."""
    wanted = bulletins.normalized(rest)
    if not wanted:
        return None
    for locale, item in bulletin.texts.items():
        if wanted in {
            bulletins.normalized(c)
            for c in (bulletins.plain(item), item["text"], f"{item['title']}\n{item['text']}")
        }:
            return str(locale)
    return None
