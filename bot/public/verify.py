"""Whether a pasted text is a published bulletin: genuine, almost (and what differs), or not.

A genuine text is found by the rule of bot.bulletins.find_genuine, the chat's "Is this
genuine?": its own check when an id is given, the same comparison over remembered texts when
not. Otherwise the closest published text is looked for among the latest COMPARED bulletins,
and the words that differ are listed: a bounded comparison (so many bulletins, so many changes,
so many words each), since anyone may paste anything.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins
from bot.models import Bulletin

NEAR = 80.0  # similarity (0-100) from which a text "almost matches" a published one
COMPARED = 1000  # the latest published bulletins compared with a text that is not genuine
GENUINE_LENGTH = 10  # a shorter text is no bulletin (as bulletins.find_genuine has it)
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


class Checker:
    """Checks pasted texts against one database's published bulletins.

    Each published bulletin is compared as (language, text as shown, normalized), remembered
    by its row id: a published bulletin's texts never change (only scheduled ones may be
    edited), so they are read and normalized once, not at every check.
    """

    def __init__(self) -> None:
        self.texts: OrderedDict[int, tuple[tuple[str, str, str], ...]] = OrderedDict()

    async def verify(self, session: AsyncSession, text: str) -> Verdict:
        """What `text` (a pasted bulletin, or a bulletin's id alone) is."""
        return await _verify(self, session, text)

    async def remember(
        self, session: AsyncSession, ids: list[int], known: dict[int, Bulletin]
    ) -> None:
        """Read and normalize the texts of the bulletins `ids` not yet remembered."""
        for bulletin in known.values():
            self.texts[bulletin.id] = _comparable_texts(bulletin.texts)
        missing = [i for i in ids if i not in self.texts]
        for first in range(0, len(missing), 200):
            rows = await session.execute(
                select(Bulletin.id, Bulletin.texts).where(
                    Bulletin.id.in_(missing[first : first + 200])
                )
            )
            for row_id, texts in rows.all():
                self.texts[row_id] = _comparable_texts(texts or {})
        while len(self.texts) > 2 * COMPARED:
            self.texts.popitem(last=False)


async def _verify(checker: Checker, session: AsyncSession, text: str) -> Verdict:
    """What `text` is, by `checker`'s remembered texts."""
    public_id, rest = bulletins.pasted_parts(text)
    wanted = bulletins.normalized(rest)
    named = None
    if public_id is not None:
        # An id given: the chat's own check (bulletins.find_genuine), which reads that one.
        found = await bulletins.find_genuine(session, text)
        if found is not None:
            return Verdict("genuine", found, _language(found, rest))
        named = await session.scalar(
            select(Bulletin).where(
                Bulletin.public_id == public_id, Bulletin.status.in_(bulletins.PUBLISHED)
            )
        )
        if named is None:
            return Verdict("unknown_id", public_id=public_id)
        ids = [named.id]
        known = {named.id: named}
    else:
        ids = list(
            (
                await session.scalars(
                    select(Bulletin.id)
                    .where(
                        Bulletin.public_id.is_not(None), Bulletin.status.in_(bulletins.PUBLISHED)
                    )
                    .order_by(Bulletin.id.desc())
                    .limit(COMPARED)
                )
            ).all()
        )
        known = {}
    await checker.remember(session, ids, known)
    choices = [(i, item) for i in ids for item in checker.texts.get(i, ())]
    if named is None and len(wanted) >= GENUINE_LENGTH:
        # find_genuine's rule (a whole text of one language, normalized, as any channel
        # delivered it), over the remembered texts rather than every bulletin read again.
        for row_id, (locale, _shown, normal) in choices:
            if normal == wanted:
                genuine = await session.get(Bulletin, row_id)
                if genuine is not None:
                    return Verdict("genuine", genuine, locale)
    # With a cut-off, rapidfuzz skips a text as soon as it cannot reach it (by its length
    # first): a pasted text costs little against a thousand bulletins.
    best = process.extractOne(
        wanted,
        [normal for _i, (_locale, _shown, normal) in choices],
        scorer=fuzz.ratio,
        score_cutoff=0 if named is not None else NEAR,
    )
    if best is None:
        return Verdict("unknown")
    chosen_id, (locale, shown, _normal) = choices[best[2]]
    bulletin = known.get(chosen_id) or await session.get(Bulletin, chosen_id)
    if bulletin is None:  # gone since (it cannot be: published bulletins stay)
        return Verdict("unknown")
    changes, more = differences(shown, rest)
    return Verdict("near", bulletin, locale, int(best[1]), changes, more)


def _comparable_texts(texts: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """Each language's text as find_genuine compares it (whole; alone; title and text on two
    lines), as shown and normalized."""
    found = []
    for locale, item in texts.items():
        forms = (
            bulletins.plain(item),
            str(item["text"]).strip(),
            f"{item['title']}\n{item['text']}",
        )
        for shown in forms:
            found.append((str(locale), shown, bulletins.normalized(shown)))
    return tuple(found)


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
