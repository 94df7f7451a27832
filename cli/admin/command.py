"""The `ivrs admin` parser, made of each concern's subcommands, and the run of the chosen one.

A subcommand sets `act` (async, given the database, its arguments, what `read` returned, and who
acts, for the audit) and may set `read`: the files and secrets it needs, read before the
database is opened.
"""

from __future__ import annotations

import argparse
import sys

from cli.admin import accounts, cargo, enrolment, supervisors, tokens

CONCERNS = (accounts, tokens, enrolment, supervisors, cargo)


def add_admin_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="admin_command", required=True)
    for concern in CONCERNS:
        concern.register(sub)


async def run_admin(args: argparse.Namespace) -> int:
    from backend import audit
    from backend.admin import AdminError
    from backend.database import open_database
    from cli.main import backend_settings

    settings = backend_settings("admin")  # a configuration mistake shows before any prompt
    try:
        inputs = args.read(args) if hasattr(args, "read") else None
    except (OSError, ValueError) as e:
        print(f"ivrs admin: {e}", file=sys.stderr)
        return 2
    by = audit.cli_actor()  # each change writes its audit entry in its own transaction
    async with open_database(settings) as db:
        try:
            await args.act(db, args, inputs, by)
        except AdminError as e:
            print(f"ivrs admin: {e}", file=sys.stderr)
            return 2
    return 0
