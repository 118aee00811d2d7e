"""`icssi-bot people ...` and `icssi-bot web login-link`: roles and sign-in, on the server."""

from __future__ import annotations

import argparse
import getpass
import sys

from bot import roles, signin
from bot.config import Settings
from bot.db import Database


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `people` and `web` commands and their subcommands."""
    people = commands.add_parser("people", help="who has which role (admin, coordinator, ...)")
    actions = people.add_subparsers(dest="action", required=True)
    for name, helped in (("add", "give a new person a role"), ("role", "change a role")):
        action = actions.add_parser(name, help=helped)
        action.add_argument("address", help="telegram:ID, whatsapp:+PHONE or console:NAME")
        action.add_argument("role", choices=roles.ROLES)
        action.add_argument("--name", help="how colleagues know them, e.g. 'Sara, Duhok'")
    remove = actions.add_parser("remove", help="take a role away (their sessions end)")
    remove.add_argument("address")
    actions.add_parser("list", help="everyone with a role")
    web = commands.add_parser("web", help="the coordinators' web console")
    web_actions = web.add_subparsers(dest="action", required=True)
    link = web_actions.add_parser(
        "login-link", help="print a one-time sign-in link for a person with a role"
    )
    link.add_argument("--as", dest="address", required=True, metavar="ADDRESS")


def fail(message: str) -> int:
    """Say why on standard error; exit status 2."""
    print(f"icssi-bot: {message}", file=sys.stderr)
    return 2


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one `people` or `web` subcommand."""
    actor = f"cli:{getpass.getuser()}"
    db = Database(settings.database_url)
    try:
        async with db.transaction() as session:
            if args.command == "web":
                address = roles.parse_address(args.address)
                try:
                    print(await signin.new_link(session, settings, address))
                except signin.NoRole:
                    return fail(f"{address} has no role: add it first (icssi-bot people add)")
                except signin.TooManyLinks:
                    return fail(f"{signin.LINKS_PER_HOUR} links were made within the hour")
                return 0
            if args.action == "list":
                for person in await roles.everyone(session):
                    last = person.last_sign_in_at
                    print(
                        "\t".join(
                            (
                                person.address,
                                person.role,
                                person.name or "",
                                last.isoformat(timespec="minutes") if last else "never",
                            )
                        )
                    )
                return 0
            if args.action == "remove":
                before = await roles.remove(session, args.address, actor)
                print(
                    f"{roles.parse_address(args.address)}: {before} role removed", file=sys.stderr
                )
                return 0
            exists = await roles.role_of(session, roles.parse_address(args.address))
            if args.action == "add" and exists is not None:
                return fail(f"{args.address} is already {exists}: use `people role` to change it")
            if args.action == "role" and exists is None:
                return fail(f"{args.address} has no role: use `people add`")
            await roles.set_role(session, args.address, args.role, actor, name=args.name)
            print(f"{roles.parse_address(args.address)}: {args.role}", file=sys.stderr)
            return 0
    except roles.RoleError as exc:
        return fail(str(exc))
    finally:
        await db.close()
