"""`icssi-bot bulletin ...`: the coordinators' bulletin tools on the server."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from bot import bulletins
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
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--now", action="store_true", help="send it now")
    when.add_argument("--at", help="send it then, in TIMEZONE: '2026-12-01 09:00'")
    when.add_argument("--daily", metavar="HH:MM", help="send a copy every day at this time")
    when.add_argument(
        "--weekly", nargs=2, metavar=("DAY", "HH:MM"), help="every week: e.g. friday 09:00"
    )
    actions.add_parser("list", help="the bulletins, newest first")
    for name, text in (
        ("cancel", "cancel a scheduled or recurring bulletin"),
        ("stop", "stop a broadcast in progress"),
        ("stats", "delivery figures per channel, language and status"),
    ):
        actions.add_parser(name, help=text).add_argument("id", type=int)


# The length of Bulletin.image.
IMAGE_LIMIT = 300


def fail(message: str) -> int:
    """Print a one-line error; the exit code 2."""
    print(f"icssi-bot: {message}", file=sys.stderr)
    return 2


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one `bulletin` subcommand."""
    db = Database(settings.database_url)
    try:
        return await _run(db, settings, args)
    finally:
        await db.close()


async def _run(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    async with db.transaction() as session:
        if args.action == "list":
            rows = await session.scalars(select(Bulletin).order_by(Bulletin.id.desc()).limit(50))
            for b in rows:
                first: dict[str, str] = next(iter(b.texts.values()), {})
                title = first.get("title", "")
                when = b.published_at or b.scheduled_at or b.created_at
                print(f"{b.id}\t{b.public_id or '-'}\t{b.status}\t{when:%Y-%m-%d %H:%M}Z\t{title}")
            return 0
        if args.action in ("cancel", "stop", "stats"):
            # Locked: the scheduler publishing it at this moment goes first, or waits.
            bulletin = await session.get(Bulletin, args.id, with_for_update=True)
            if bulletin is None:
                return fail(f"no bulletin {args.id}")
            if args.action == "stats":
                for channel, locale, status, count in await bulletins.figures(session, args.id):
                    print(f"{channel}\t{locale}\t{status}\t{count}")
                return 0
            if args.action == "cancel":
                if bulletin.status not in ("scheduled", "recurring"):
                    return fail(f"bulletin {args.id} is {bulletin.status}, not scheduled")
                bulletin.status = "cancelled"
                print(f"icssi-bot: bulletin {args.id} cancelled", file=sys.stderr)
                return 0
            if bulletin.status not in ("sending", "sent"):
                return fail(f"bulletin {args.id} is {bulletin.status}, not being sent")
            count = await bulletins.stop(session, bulletin)
            print(f"icssi-bot: stopped; {count} unsent messages cancelled", file=sys.stderr)
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
        if not texts:
            return fail("a bulletin needs a title and text in at least one language")
        if args.image and len(args.image) > IMAGE_LIMIT:  # PostgreSQL refuses a longer one
            return fail(f"--image: at most {IMAGE_LIMIT} characters")
        bulletin = Bulletin(
            texts=texts,
            image=args.image,
            created_by=f"cli:{getpass.getuser()}",
            created_at=now,
        )
        session.add(bulletin)
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
        await session.flush()
        print(f"{bulletin.id}\t{bulletin.public_id or '-'}\t{bulletin.status}")
    return 0
