"""`icssi-bot bulletin ...`: the coordinators' bulletin tools on the server."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import bulletins
from bot.bulletins import EDITABLE, TEXT_LIMIT, TITLE_LIMIT
from bot.config import Settings
from bot.db import Database
from bot.i18n import LOCALES
from bot.models import Bulletin
from bot.when import parse_time, parse_when

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `bulletin` command and its subcommands."""
    bulletin = commands.add_parser("bulletin", help="write, send, schedule and follow bulletins")
    actions = bulletin.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new bulletin, from text files per language")
    for locale in LOCALES:
        create.add_argument(f"--title-{locale}", help=f"the title in {locale}")
        create.add_argument(f"--text-{locale}", help=f"a UTF-8 file with the text in {locale}")
    create.add_argument("--image", help="a photo: an https URL or a Telegram file id")
    create.add_argument(
        "--yes", action="store_true", help="with --now: send without asking (for scripts)"
    )
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--now", action="store_true", help="send it now")
    when.add_argument("--at", help="send it then, in TIMEZONE: '2026-12-01 09:00'")
    when.add_argument("--daily", metavar="HH:MM", help="send a copy every day at this time")
    when.add_argument(
        "--weekly", nargs=2, metavar=("DAY", "HH:MM"), help="every week: e.g. friday 09:00"
    )
    edit = actions.add_parser(
        "edit",
        help="change a scheduled or recurring bulletin's title, text or photo; its time stays",
    )
    edit.add_argument("id", type=int)
    edit.add_argument("--lang", choices=LOCALES, help="the language to change, add or remove")
    edit.add_argument("--title", help="the new title in that language")
    body = edit.add_mutually_exclusive_group()
    body.add_argument("--text", help="the new text in that language")
    body.add_argument("--text-file", metavar="FILE", help="a UTF-8 file with the new text")
    body.add_argument(
        "--remove", action="store_true", help="remove that language (another must remain)"
    )
    photo = edit.add_mutually_exclusive_group()
    photo.add_argument("--image", help="a new photo: an https URL or a Telegram file id")
    photo.add_argument("--no-image", action="store_true", help="remove the photo")
    actions.add_parser("list", help="the bulletins, newest first")
    for name, text in (
        ("cancel", "cancel a scheduled or recurring bulletin"),
        ("stop", "stop a broadcast in progress"),
        ("stats", "delivery figures per channel, language and status"),
    ):
        actions.add_parser(name, help=text).add_argument("id", type=int)


# The length of Bulletin.image.
IMAGE_LIMIT = 300


def what_is_wrong(locale: str, item: dict[str, str]) -> str | None:
    """What is wrong with one language's title and text (empty, or too long), if anything."""
    for name, limit in (("title", TITLE_LIMIT), ("text", TEXT_LIMIT)):
        if not item[name]:
            return f"the {locale} {name} is empty"
        if len(item[name]) > limit:
            return f"the {locale} {name} has {len(item[name])} characters; at most {limit}"
    return None


def fail(message: str) -> int:
    """Print a one-line error; the exit code 2."""
    print(f"icssi-bot: {message}", file=sys.stderr)
    return 2


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one `bulletin` subcommand."""
    db = Database(settings.database_url)
    try:
        if args.action == "create" and args.now and not args.yes and not await confirmed(db, args):
            return fail("nothing was sent (answer y to send, or give --yes)")
        return await _run(db, settings, args)
    finally:
        await db.close()


async def confirmed(db: Database, args: argparse.Namespace) -> bool:
    """Say to how many subscribers `--now` sends, by channel and language, and ask."""
    languages = [locale for locale in LOCALES if getattr(args, f"title_{locale}")]
    async with db.transaction() as session:  # counted, then the lock is let go before asking
        found = await bulletins.audience(session, languages)
    people = f"{found.total} subscriber{'' if found.total == 1 else 's'}"
    print(f"Sent now, this bulletin goes to {people}:", file=sys.stderr)
    for (channel, locale), count in sorted(found.groups.items()):
        print(f"  {channel}\t{locale}\t{count}", file=sys.stderr)
    if found.fallback:
        print(
            f"  {found.fallback} of them get it in another language (none of theirs)",
            file=sys.stderr,
        )
    print("Send it now? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = await asyncio.to_thread(sys.stdin.readline)
    return answer.strip().lower() in ("y", "yes")


async def _run(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    actor = f"cli:{getpass.getuser()}"  # who, in the audit log and as a bulletin's author
    async with db.transaction() as session:
        if args.action == "list":
            zone = ZoneInfo(settings.timezone)
            rows = await session.scalars(select(Bulletin).order_by(Bulletin.id.desc()).limit(50))
            for b in rows:
                first: dict[str, str] = next(iter(b.texts.values()), {})
                title = first.get("title", "")
                # In TIMEZONE, as the chat shows it (the zone's offset said, e.g. +03).
                when = (b.published_at or b.scheduled_at or b.created_at).astimezone(zone)
                print(
                    f"{b.id}\t{b.public_id or '-'}\t{b.status}\t{when:%Y-%m-%d %H:%M%z}\t{title}"
                )
            return 0
        if args.action == "edit":
            return await edit(session, args, now, actor)
        if args.action in ("cancel", "stop", "stats"):
            # Locked: the scheduler publishing it at this moment goes first, or waits.
            bulletin = await session.get(Bulletin, args.id, with_for_update=True)
            if bulletin is None:
                return fail(f"no bulletin {args.id}")
            if args.action == "stats":
                columns = ("recipients", "sent", "delivered", "waiting", "held", "failed")
                print("\t".join(("channel", "language", *columns, "unreachable", "stopped")))
                for item in await bulletins.figures(session, args.id):
                    counts = [getattr(item, name) for name in (*columns, "unreachable", "stopped")]
                    print("\t".join([item.channel, item.locale, *map(str, counts)]))
                    for reason, count in sorted(item.reasons.items()):
                        print(f"\t\t{reason}: {count}")
                return 0
            if args.action == "cancel":
                if bulletin.status not in bulletins.EDITABLE:
                    return fail(f"bulletin {args.id} is {bulletin.status}, not scheduled")
                session.add(bulletins.cancel(bulletin, actor, now))
                print(f"icssi-bot: bulletin {args.id} cancelled", file=sys.stderr)
                return 0
            if bulletin.status not in ("sending", "sent"):
                return fail(f"bulletin {args.id} is {bulletin.status}, not being sent")
            count = await bulletins.stop(session, bulletin, actor, now)
            print(
                f"icssi-bot: stopped; {count} unsent "
                f"{'message' if count == 1 else 'messages'} cancelled",
                file=sys.stderr,
            )
            return 0
        texts = {}
        for locale in LOCALES:
            title = getattr(args, f"title_{locale}")
            path = getattr(args, f"text_{locale}")
            if bool(title) != bool(path):
                return fail(f"--title-{locale} and --text-{locale} go together")
            if title:
                try:
                    # A blocking read is fine: this command does nothing else meanwhile.
                    text = Path(path).read_text(encoding="utf-8").strip()  # noqa: ASYNC240
                except OSError as exc:
                    return fail(f"--text-{locale}: {exc}")
                texts[locale] = {"title": title.strip(), "text": text}
                if problem := what_is_wrong(locale, texts[locale]):
                    return fail(problem)
        if not texts:
            return fail("a bulletin needs a title and text in at least one language")
        if args.image and len(args.image) > IMAGE_LIMIT:  # PostgreSQL refuses a longer one
            return fail(f"--image: at most {IMAGE_LIMIT} characters")
        # Added to the session only once everything is checked: a mistake stores nothing.
        bulletin = Bulletin(
            texts=texts,
            image=args.image,
            created_by=actor,
            created_at=now,
        )
        if args.now:
            await bulletins.publish(session, bulletin, now)
        elif args.at:
            moment = parse_when(args.at, now, settings.timezone)
            if moment is None:
                return fail("--at: expected a future date and time such as '2026-12-01 09:00'")
            bulletin.status, bulletin.scheduled_at = "scheduled", moment
        else:
            day, clock = (None, args.daily) if args.daily else args.weekly
            at = parse_time(clock)
            if at is None or (day is not None and day.lower() not in DAYS):
                return fail("expected a time such as 09:00 (and a day such as friday)")
            bulletin.status = "recurring"
            bulletin.recurrence = "daily" if day is None else "weekly"
            bulletin.weekday = None if day is None else DAYS.index(day.lower())
            bulletin.time_of_day = at.strftime("%H:%M")
        session.add(bulletin)
        await session.flush()
        print(f"{bulletin.id}\t{bulletin.public_id or '-'}\t{bulletin.status}")
    return 0


async def edit(session: AsyncSession, args: argparse.Namespace, now: datetime, actor: str) -> int:
    """`bulletin edit`: one language's title or text changed, added or removed; or the photo."""
    changes_text = args.title is not None or args.text is not None or args.text_file is not None
    if (changes_text or args.remove) and args.lang is None:
        return fail("--title, --text, --text-file and --remove need --lang")
    if args.lang is not None and not (changes_text or args.remove):
        return fail(f"--lang {args.lang}: give --title, --text, --text-file or --remove")
    if args.remove and args.title is not None:
        return fail("--remove and --title do not go together")
    if not (changes_text or args.remove or args.image or args.no_image):
        return fail("nothing to change: give --lang with --title, --text or --remove, or --image")
    # Locked: the scheduler publishing it at this moment waits for this change, or has
    # marked it sending already and then it is refused.
    bulletin = await session.get(Bulletin, args.id, with_for_update=True)
    if bulletin is None:
        return fail(f"no bulletin {args.id}")
    if bulletin.status not in EDITABLE:
        return fail(
            f"bulletin {args.id} is {bulletin.status}: only a scheduled or recurring bulletin "
            "can be edited"
        )
    texts: dict[str, Any] = {loc: dict(t) for loc, t in bulletin.texts.items()}
    if args.remove:
        if args.lang not in texts:
            return fail(f"bulletin {args.id} has no {args.lang} text to remove")
        if len(texts) == 1:
            return fail(
                f"bulletin {args.id} has only its {args.lang} text: a bulletin needs at least "
                "one language"
            )
        del texts[args.lang]
    elif changes_text:
        item = texts.get(args.lang, {})
        text = args.text
        if args.text_file is not None:
            try:
                # A blocking read is fine: this command does nothing else meanwhile.
                text = Path(args.text_file).read_text(encoding="utf-8")  # noqa: ASYNC240
            except OSError as exc:
                return fail(f"--text-file: {exc}")
        if args.title is not None:
            item["title"] = args.title.strip()
        if text is not None:
            item["text"] = text.strip()
        if "title" not in item or "text" not in item:
            return fail(
                f"bulletin {args.id} has no {args.lang} text yet: give both --title and "
                "--text (or --text-file)"
            )
        if problem := what_is_wrong(args.lang, item):
            return fail(problem)
        texts[args.lang] = item
    image = None if args.no_image else args.image or bulletin.image
    entry = bulletins.edit(bulletin, texts, image, actor, now)
    if entry is None:
        print(f"icssi-bot: bulletin {args.id} already reads so; nothing changed", file=sys.stderr)
    else:
        session.add(entry)
    languages = ",".join(bulletin.texts)
    print(f"{bulletin.id}\t{bulletin.public_id or '-'}\t{bulletin.status}\t{languages}")
    return 0
