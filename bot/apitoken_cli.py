"""`icssi-bot api-token create|list|revoke`: the partner API's tokens, made by admins on the
server."""

from __future__ import annotations

import argparse
import getpass
import sys

from bot import apitokens
from bot.config import Settings
from bot.db import Database


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `api-token` command and its subcommands."""
    token = commands.add_parser("api-token", help="bearer tokens of the partner API (/api/v1/)")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; it is printed once, never stored")
    create.add_argument("--name", required=True, help="the partner, e.g. 'WFP Duhok'")
    create.add_argument("--scope", required=True, choices=apitokens.SCOPES)
    actions.add_parser("list", help="every token: id, name, scope, made, last used, revoked")
    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("id", type=int, help="the token's id, as `list` shows it")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one `api-token` subcommand; 2 when it cannot be done."""
    actor = f"cli:{getpass.getuser()}"
    db = Database(settings.database_url)
    try:
        async with db.transaction() as session:
            if args.action == "create":
                token_id, token = await apitokens.create(session, args.name, args.scope, actor)
                print(token)
                print(
                    f"icssi-bot: token {token_id} for {args.name!r} ({args.scope}); it is shown "
                    "this once: give it to the partner now",
                    file=sys.stderr,
                )
            elif args.action == "revoke":
                row = await apitokens.revoke(session, args.id, actor)
                print(f"icssi-bot: token {row.id} ({row.name}) revoked", file=sys.stderr)
            else:
                for row in await apitokens.everyone(session):
                    print(
                        "\t".join(
                            (
                                str(row.id),
                                row.name,
                                row.scope,
                                row.created_at.isoformat(timespec="minutes"),
                                row.last_used_at.isoformat(timespec="minutes")
                                if row.last_used_at
                                else "never used",
                                "revoked " + row.revoked_at.isoformat(timespec="minutes")
                                if row.revoked_at
                                else "active",
                            )
                        )
                    )
    except apitokens.TokenError as exc:
        print(f"icssi-bot: {exc}", file=sys.stderr)
        return 2
    finally:
        await db.close()
    return 0
