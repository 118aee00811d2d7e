"""The `icssi-bot` command: run, chat, serve, db upgrade."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from sqlalchemy.engine import make_url

from bot import apitoken_cli, bulletin_cli, crypto, logs, people_cli, runtime
from bot.config import ConfigError, Settings, load_settings
from bot.db import Database, at_head, upgrade

logger = logging.getLogger(__name__)


def console_user(value: str) -> str:
    """A console user's name; it becomes the address console:NAME, which has a length limit."""
    if not 0 < len(value) <= 50:
        raise argparse.ArgumentTypeError("expected a name of 1 to 50 characters")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="icssi-bot", description="Chat bot of the Iraqi Civil Society Solidarity Initiative"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run", help="start every configured channel, or the console chat when none is configured"
    )
    chat = commands.add_parser("chat", help="talk with the bot in this terminal")
    chat.add_argument(
        "--user", default="me", type=console_user, help="who you are in the console (default: me)"
    )
    serve = commands.add_parser(
        "serve", help="run the web app (webhooks and /healthz) with every configured channel"
    )
    serve.add_argument(
        "--role",
        choices=["all", "web"],
        default="all",
        help="all: receive and send in this process (default); web: receive only, and leave "
        "sending and the schedule to `icssi-bot worker` processes (PostgreSQL only)",
    )
    commands.add_parser(
        "worker",
        help="send the outbox and run the bulletin schedule, beside `icssi-bot serve --role web`",
    )
    db = commands.add_parser("db", help="database tasks")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="create the database or migrate it to this version")
    revision = db_commands.add_parser(
        "revision", help="write a new migration from the changes made to bot/models.py"
    )
    revision.add_argument("-m", "--message", required=True, help="what the migration changes")
    db_commands.add_parser(
        "purge", help="apply the retention rules now (the running bot does it every 6 hours)"
    )
    db_commands.add_parser(
        "rotate-keys", help="re-encrypt personal fields with the first DATA_ENCRYPTION_KEY"
    )
    commands.add_parser("keygen", help="print a new key for DATA_ENCRYPTION_KEY")
    bulletin_cli.add_parser(commands)
    people_cli.add_parsers(commands)
    apitoken_cli.add_parser(commands)
    export = commands.add_parser("export", help="export data for relief coordination")
    export_what = export.add_subparsers(dest="what", required=True)
    reports = export_what.add_parser("reports", help="displaced-family reports")
    reports.add_argument("--format", default="csv", choices=["csv", "hxl", "geojson", "json"])
    reports.add_argument("--since", help="only reports from this day on (YYYY-MM-DD)")
    reports.add_argument("--governorate", help="only this governorate (P-code, e.g. IQG09)")
    reports.add_argument(
        "--private",
        action="store_true",
        help="include personal fields (place name, exact point, notes, phone); audited",
    )
    reports.add_argument(
        "-o", "--output", help="write to this file (default, or -: standard output)"
    )
    signatures = export_what.add_parser(
        "signatures", help="the organizations that signed the declaration"
    )
    signatures.add_argument("--format", default="csv", choices=["csv", "json"])
    signatures.add_argument(
        "--private",
        action="store_true",
        help="every signature with every field (representatives, contacts), for operators",
    )
    signatures.add_argument(
        "-o", "--output", help="write to this file (default, or -: standard output)"
    )
    referrals = export_what.add_parser(
        "referrals", help="reports referred to relief organizations, one row each (HXL 3W)"
    )
    referrals.add_argument("--format", default="csv", choices=["csv", "hxl", "json"])
    referrals.add_argument(
        "--private",
        action="store_true",
        help="include the notes (the coordinator's, the organization's); audited",
    )
    referrals.add_argument(
        "-o", "--output", help="write to this file (default, or -: standard output)"
    )
    return parser


async def run_chat(settings: Settings, user: str) -> None:
    """The console chat on the configured database: the bot's scheduler and retention too, when
    no platform is configured and no other process sends from it (bot.runtime.running)."""
    from bot.channels.console import ConsoleTransport, chat, stdio
    from bot.messages import Address
    from bot.webconsole import served_locally

    stdin, stdout = stdio()
    console = ConsoleTransport(stdout, str(Address("console", user)))
    async with (
        runtime.running(settings, "all", console=console) as bot,
        served_locally(bot.db, settings, bot.engine.queued) as address,
    ):
        if address is not None:
            print(
                f"icssi-bot: the coordinators' console is at {address} (send /console in the "
                "chat for a sign-in link)",
                file=sys.stderr,
            )
        await chat(bot.engine, bot.sender, user, stdin, stdout)


def plural(count: int, noun: str) -> str:
    """ "1 report", "2 reports": the operator's messages are English, and correct."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@contextlib.contextmanager
def output(path: str | None) -> Iterator[TextIO]:
    """The file to write an export to; standard output for none or "-", as is the custom."""
    if path in (None, "", "-"):
        yield sys.stdout
        return
    # A blocking file is fine here: this command does nothing else meanwhile.
    with open(path, "w", encoding="utf-8", newline="") as out:
        yield out


async def run_export(settings: Settings, args: argparse.Namespace) -> int:
    """`icssi-bot export reports|signatures|referrals ...`; 2 on a bad option value."""
    import getpass
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from bot import exports, gazetteer

    actor = f"cli:{getpass.getuser()}"
    if args.what == "signatures":
        db = Database(settings.database_url)
        try:
            with output(args.output) as out:
                count = await exports.export_signatures(
                    db, args.format, out, private=args.private, actor=actor
                )
        finally:
            await db.close()
        print(f"icssi-bot: exported {plural(count, 'signature')}", file=sys.stderr)
        return 0
    if args.what == "referrals":
        db = Database(settings.database_url)
        try:
            with output(args.output) as out:
                count = await exports.export_referrals(
                    db, args.format, out, private=args.private, actor=actor
                )
        finally:
            await db.close()
        print(f"icssi-bot: exported {plural(count, 'referral')}", file=sys.stderr)
        return 0
    since = None
    if args.since:
        try:
            day = datetime.strptime(args.since, "%Y-%m-%d")
        except ValueError:
            print("icssi-bot: --since: expected a day as YYYY-MM-DD", file=sys.stderr)
            return 2
        since = day.replace(tzinfo=ZoneInfo(settings.timezone))
    governorate = (args.governorate or "").strip().upper() or None
    if governorate and (gazetteer.place(governorate) is None or len(governorate) != 5):
        print("icssi-bot: --governorate: expected a P-code from IQG01 to IQG18", file=sys.stderr)
        return 2
    query = exports.Query(since=since, governorate=governorate, private=args.private)
    db = Database(settings.database_url)
    try:
        with output(args.output) as out:
            count = await exports.export(db, query, args.format, out, actor)
    finally:
        await db.close()
    print(f"icssi-bot: exported {plural(count, 'report')}", file=sys.stderr)
    return 0


async def maintain(settings: Settings, task: str) -> int:
    """`db purge` and `db rotate-keys`; the exit status."""
    from datetime import UTC, datetime

    from bot import retention

    db = Database(settings.database_url)
    try:
        if task == "purge":
            counts = await retention.purge(db, settings, datetime.now(UTC))
            print(f"icssi-bot: {counts}", file=sys.stderr)
        else:
            if not crypto.enabled():
                print("icssi-bot: DATA_ENCRYPTION_KEY is not set", file=sys.stderr)
                return 2
            try:
                rewritten = await retention.rotate_keys(db)
            except retention.Unreadable as exc:
                print(
                    "icssi-bot: nothing was changed: these values cannot be decrypted with the "
                    f"keys in DATA_ENCRYPTION_KEY (put the missing key after the new one): {exc}",
                    file=sys.stderr,
                )
                return 2
            done = ", ".join(f"{table}: {n}" for table, n in rewritten.items())
            print(f"icssi-bot: re-encrypted with the newest key ({done})", file=sys.stderr)
    finally:
        await db.close()
    return 0


def new_revision(message: str) -> str:
    """Autogenerate a migration against a scratch database brought to the current head."""
    import tempfile

    from alembic import command

    from bot.db import MIGRATIONS_DIR, alembic_config

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/scratch.db"
        upgrade(url)
        existing = {p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py")}
        number = len([name for name in existing if name[:4].isdigit()]) + 1
        command.revision(
            alembic_config(url), message=message, autogenerate=True, rev_id=f"{number:04d}"
        )
    written = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py"))
    return next((name for name in written if name not in existing), "nothing")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `icssi-bot`; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"icssi-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    crypto.configure(settings.data_encryption_keys or None)
    chatting = args.command == "chat" or (args.command == "run" and not settings.channels)
    # In the console chat, logs at INFO would interleave with the conversation.
    logs.setup(
        "WARNING" if chatting and settings.log_level == "INFO" else settings.log_level,
        settings.log_format,
    )
    try:
        if args.command in ("run", "chat", "serve", "worker", "people", "web", "api-token"):
            if make_url(settings.database_url).get_backend_name() == "sqlite":
                upgrade(settings.database_url)  # the embedded default: made or migrated here
            elif not asyncio.run(at_head(settings.database_url)):
                print(
                    "icssi-bot: the database is not at this version: run `icssi-bot db "
                    "upgrade` first",
                    file=sys.stderr,
                )
                return 2
        if args.command == "keygen":
            print(crypto.new_key())
        elif args.command == "bulletin":
            return asyncio.run(bulletin_cli.run(settings, args))
        elif args.command in ("people", "web"):
            return asyncio.run(people_cli.run(settings, args))
        elif args.command == "api-token":
            return asyncio.run(apitoken_cli.run(settings, args))
        elif args.command == "export":
            return asyncio.run(run_export(settings, args))
        elif args.command == "db" and args.db_command in ("purge", "rotate-keys"):
            return asyncio.run(maintain(settings, args.db_command))
        elif args.command == "db" and args.db_command == "revision":
            print(f"icssi-bot: wrote {new_revision(args.message)}", file=sys.stderr)
        elif args.command == "db":
            upgrade(settings.database_url)
            logger.info("the database is up to date")
        elif chatting:
            asyncio.run(run_chat(settings, getattr(args, "user", "me")))
        elif args.command == "worker":
            asyncio.run(runtime.poll(settings, "worker"))
        elif args.command == "serve" or settings.public_url:
            asyncio.run(runtime.serve(settings, getattr(args, "role", "all")))
        else:
            asyncio.run(runtime.poll(settings))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"icssi-bot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
