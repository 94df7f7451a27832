"""`ivrs admin create-supervisor`: a user of the supervisors' console, their password typed
twice without echo or read from standard input's first line."""

from __future__ import annotations

import argparse
from typing import Any

from cli.admin.passwords import ask_password, stdin_password


def register(sub: Any) -> None:
    p = sub.add_parser(
        "create-supervisor", help="create a user of the supervisors' console (/console)"
    )
    p.add_argument("name", help="the sign-in name: letters, digits, '.', '_', '-'")
    p.add_argument(
        "--role",
        required=True,
        choices=("supervisor", "admin", "auditor"),
        help="supervisor: calls and recordings; admin: also accounts and tokens; "
        "auditor: also the audit log",
    )
    p.add_argument("--extension", help="the phone extension that 'listen in' rings")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (12 characters or more) from standard input's first line",
    )
    p.set_defaults(read=read_password, act=create_supervisor)


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return stdin_password()
    return ask_password("Console password (12 characters or more): ", "--password-stdin")


async def create_supervisor(db: Any, args: argparse.Namespace, password: str, by: Any) -> None:
    from backend.console.auth import create_supervisor

    await create_supervisor(db, args.name, args.role, password, extension=args.extension, by=by)
    print(f"supervisor {args.name} created ({args.role})")
