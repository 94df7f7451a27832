"""`ivrs admin` for accounts: create one, import ROCARS accounts, lock, unlock, reset a
password, release a throttled caller number."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.admin.passwords import ask_password


def register(sub: Any) -> None:
    p = sub.add_parser("create-account", help="create an IVRS account")
    p.add_argument("number", help="8-digit IVRS account number")
    p.add_argument("--password", required=True, help="6-12 digits (keyed on a phone)")
    p.add_argument("--type", default="trucker", choices=("trucker", "agent", "shipper"))
    p.add_argument("--no-road-bundling", action="store_true", help="without the bundling service")
    p.add_argument("--needs-activation", action="store_true", help="first call registers mobile")
    p.set_defaults(act=create_account)

    p = sub.add_parser(
        "import-accounts",
        help="import ROCARS accounts (CSV number,password_hash_or_initial_password,"
        "token_serial,type,services); all need first-call activation",
    )
    p.add_argument("file", type=Path)
    p.set_defaults(read=lambda args: args.file.read_bytes(), act=import_accounts)

    p = sub.add_parser("unlock", help="lift an account's lockout")
    p.add_argument("account")
    p.set_defaults(act=unlock)

    p = sub.add_parser("reset-password", help="set a new password for an account")
    p.add_argument("account")
    p.add_argument("--password", help="6-12 digits (asked for, without echo, when omitted)")
    p.set_defaults(read=lambda args: args.password or ask_password(), act=reset_password)

    p = sub.add_parser("lock", help="lock an account: every login refused until unlock")
    p.add_argument("account")
    p.set_defaults(act=lock)

    p = sub.add_parser("release-caller", help="lift a caller number's login throttle")
    p.add_argument("caller_id")
    p.set_defaults(act=release_caller)


async def create_account(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    await admin.create_account(
        db,
        args.number,
        args.password,
        type=args.type,
        services=() if args.no_road_bundling else ("road_bundling",),
        needs_activation=args.needs_activation,
        by=by,
    )
    print(f"account {args.number} created")


async def import_accounts(db: Any, args: argparse.Namespace, data: bytes, by: Any) -> None:
    from backend import admin

    numbers = await admin.import_accounts(db, data, file_name=args.file.name, by=by)
    print(f"{len(numbers)} accounts imported, each to be activated on its first call")
    print(f"{args.file} may hold initial passwords: delete it now.")


async def unlock(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    await admin.unlock(db, args.account, by=by)
    print(f"account {args.account} unlocked")


async def reset_password(db: Any, args: argparse.Namespace, password: str, by: Any) -> None:
    from backend import admin

    await admin.reset_password(db, args.account, password, by=by)
    print(f"password of {args.account} reset")


async def lock(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    await admin.lock(db, args.account, by=by)
    print(f"account {args.account} locked")


async def release_caller(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    released = await admin.release_caller(db, args.caller_id, by=by)
    print(f"caller {args.caller_id} " + ("released" if released else "not throttled"))
