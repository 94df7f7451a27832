"""`ivrs admin ...`: accounts, tokens, vehicles and cargo, straight on IVRS_DATABASE_URL.

Secrets typed here stay out of logs: a password for `reset-password` is asked for (no echo)
when `--password` is not given; `resync-token` codes are used up by the resync itself.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any


def add_admin_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="admin_command", required=True)

    p = sub.add_parser("create-account", help="create an IVRS account")
    p.add_argument("number", help="8-digit IVRS account number")
    p.add_argument("--password", required=True, help="6-12 digits (keyed on a phone)")
    p.add_argument("--type", default="trucker", choices=("trucker", "agent", "shipper"))
    p.add_argument("--no-road-bundling", action="store_true", help="without the bundling service")
    p.add_argument("--needs-activation", action="store_true", help="first call registers mobile")

    p = sub.add_parser("add-token", help="assign a security token; shows its seed once")
    p.add_argument("account", help="the account it is assigned to")
    p.add_argument("--serial")
    p.add_argument("--kind", default="hardware", choices=("hardware", "mobile"))
    p.add_argument("--digits", type=int, default=6)
    p.add_argument("--period", type=int, default=None, help="seconds (hardware 60, mobile 30)")
    p.add_argument("--expiry", type=date.fromisoformat, help="YYYY-MM-DD (hardware tokens)")
    p.add_argument("--seed", help="base32 seed (default: a new random one)")

    p = sub.add_parser(
        "import-tokens",
        help="import a token seed file (CSV serial,key,type,digits,period,expiry, or PSKC)",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--kind", default="hardware", choices=("hardware", "mobile"))
    p.add_argument(
        "--pskc-key-file", type=Path, help="file holding the PSKC pre-shared key, in hex"
    )
    p.add_argument(
        "--pskc-password-file",
        type=Path,
        help="file whose first line is the password of a PBKDF2-protected PSKC file",
    )

    p = sub.add_parser(
        "import-accounts",
        help="import ROCARS accounts (CSV number,password_hash_or_initial_password,"
        "token_serial,type,services); all need first-call activation",
    )
    p.add_argument("file", type=Path)

    p = sub.add_parser("assign-token", help="assign an imported token to an account")
    p.add_argument("serial")
    p.add_argument("account")

    p = sub.add_parser("revoke-token", help="revoke a lost or broken token at once")
    p.add_argument("serial")

    p = sub.add_parser(
        "enrol-mobile-token",
        help="new FortiToken Mobile secret: otpauth URI and QR code; active from its first login",
    )
    p.add_argument("account")
    p.add_argument("--digits", type=int, default=6, choices=(6, 8))
    p.add_argument("--period", type=int, default=30, choices=(30, 60))
    p.add_argument("--png", type=Path, help="also write the QR code to this new PNG file")

    p = sub.add_parser("resync-token", help="resynchronise a token from two consecutive codes")
    p.add_argument("serial")
    p.add_argument("code1")
    p.add_argument("code2")
    p.add_argument(
        "--window",
        type=int,
        help="steps searched each side of now (default 10), or presses ahead (event tokens, 1000)",
    )

    p = sub.add_parser("unlock", help="lift an account's lockout")
    p.add_argument("account")

    p = sub.add_parser("reset-password", help="set a new password for an account")
    p.add_argument("account")
    p.add_argument("--password", help="6-12 digits (asked for, without echo, when omitted)")

    p = sub.add_parser("lock", help="lock an account: every login refused until unlock")
    p.add_argument("account")

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

    p = sub.add_parser("release-caller", help="lift a caller number's login throttle")
    p.add_argument("caller_id")

    p = sub.add_parser("add-vehicle", help="register a vehicle mark")
    p.add_argument("mark")

    p = sub.add_parser("lodge-cargo", help="lodge road cargo information; prints the CCRN")
    p.add_argument("--kind", default="packages", choices=("packages", "bulk"))
    p.add_argument("--description", default="Cartons")
    p.add_argument("--packages", type=int, default=10)
    p.add_argument("--articles", default="Garments")
    p.add_argument("--gross-weight", type=float)
    p.add_argument("--consignor", default="Pearl River Garments Ltd, Dongguan")
    p.add_argument("--consignee", default="Harbour Trading Co Ltd, Kwai Chung, Hong Kong")
    p.add_argument("--expected-date", type=date.fromisoformat)
    p.add_argument("--count", type=int, default=1, help="lodge this many")

    p = sub.add_parser("combine-batch", help="combine CCRNs into a batch; prints its number")
    p.add_argument("ccrns", nargs="+")


async def run_admin(args: argparse.Namespace) -> int:
    from backend import admin, audit
    from backend.console.auth import create_supervisor
    from backend.database import open_database
    from cli.main import backend_settings

    settings = backend_settings("admin")  # a configuration mistake shows before any prompt
    try:
        inputs = _read_inputs(args)
    except (OSError, ValueError) as e:
        print(f"ivrs admin: {e}", file=sys.stderr)
        return 2
    by = audit.cli_actor()  # each change writes its audit entry in its own transaction
    async with open_database(settings) as db:
        try:
            match args.admin_command:
                case "create-supervisor":
                    await create_supervisor(
                        db,
                        args.name,
                        args.role,
                        inputs["password"],
                        extension=args.extension,
                        by=by,
                    )
                    print(f"supervisor {args.name} created ({args.role})")
                case "lock":
                    await admin.lock(db, args.account, by=by)
                    print(f"account {args.account} locked")
                case "import-tokens":
                    serials = await admin.import_tokens(
                        db,
                        inputs["data"],
                        kind=args.kind,
                        psk=inputs.get("psk"),
                        password=inputs.get("pskc_password"),
                        file_name=args.file.name,
                        by=by,
                    )
                    print(f"{len(serials)} token(s) imported, unassigned: {', '.join(serials)}")
                    print(f"The seeds are stored encrypted; delete {args.file} now.")
                case "import-accounts":
                    numbers = await admin.import_accounts(
                        db, inputs["data"], file_name=args.file.name, by=by
                    )
                    print(
                        f"{len(numbers)} accounts imported, each to be activated on its first call"
                    )
                    print(f"{args.file} may hold initial passwords: delete it now.")
                case "assign-token":
                    await admin.assign_token(db, args.serial, args.account, by=by)
                    print(f"token {args.serial} assigned to {args.account}")
                case "revoke-token":
                    await admin.revoke_token(db, args.serial, by=by)
                    print(f"token {args.serial} revoked")
                case "enrol-mobile-token":
                    await _enrol(db, args, by)
                case "resync-token":
                    drift = await admin.resync_token(
                        db, args.serial, args.code1, args.code2, window=args.window, by=by
                    )
                    print(f"token {args.serial} resynchronised: {drift:+d} steps from the server")
                case "unlock":
                    await admin.unlock(db, args.account, by=by)
                    print(f"account {args.account} unlocked")
                case "reset-password":
                    await admin.reset_password(db, args.account, inputs["password"], by=by)
                    print(f"password of {args.account} reset")
                case "release-caller":
                    released = await admin.release_caller(db, args.caller_id, by=by)
                    print(
                        f"caller {args.caller_id} " + ("released" if released else "not throttled")
                    )
                case "create-account":
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
                case "add-token":
                    period = args.period or (60 if args.kind == "hardware" else 30)
                    seed = await admin.add_token(
                        db,
                        args.account,
                        serial=args.serial,
                        kind=args.kind,
                        digits=args.digits,
                        period=period,
                        expires_on=args.expiry,
                        seed_base32=args.seed,
                        by=by,
                    )
                    # Shown once, as an enrolment would: the database keeps it encrypted only.
                    print(f"token assigned to {args.account}; seed (base32, shown once): {seed}")
                case "add-vehicle":
                    await admin.add_vehicle(db, args.mark)
                    print(f"vehicle {args.mark.upper()} added")
                case "lodge-cargo":
                    for _ in range(args.count):
                        print(
                            await admin.lodge_cargo(
                                db,
                                kind=args.kind,
                                description=args.description,
                                packages_count=args.packages if args.kind == "packages" else None,
                                article_description=args.articles,
                                gross_weight=args.gross_weight,
                                consignor=args.consignor,
                                consignee=args.consignee,
                                expected_date=args.expected_date,
                            )
                        )
                case "combine-batch":
                    print(await admin.combine_batch(db, args.ccrns))
        except admin.AdminError as e:
            print(f"ivrs admin: {e}", file=sys.stderr)
            return 2
    return 0


def _read_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Files and secrets a command needs, read before the database is opened."""
    inputs: dict[str, Any] = {}
    if args.admin_command in ("import-tokens", "import-accounts"):
        inputs["data"] = args.file.read_bytes()
    if args.admin_command == "import-tokens" and args.pskc_key_file:
        try:
            inputs["psk"] = bytes.fromhex(args.pskc_key_file.read_text().strip())
        except ValueError:
            raise ValueError(f"{args.pskc_key_file}: the pre-shared key must be hex") from None
    if args.admin_command == "import-tokens" and args.pskc_password_file:
        lines = args.pskc_password_file.read_text().splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{args.pskc_password_file}: the first line must be the password")
        inputs["pskc_password"] = lines[0]
    if args.admin_command == "reset-password":
        inputs["password"] = args.password or _ask_password()
    if args.admin_command == "create-supervisor":
        inputs["password"] = _supervisor_password(args.password_stdin)
    if args.admin_command == "enrol-mobile-token" and args.png and args.png.exists():
        raise ValueError(f"{args.png} exists: the QR code holds a secret, give a new file name")
    return inputs


def _ask_password(
    prompt: str = "New password (6-12 digits): ", otherwise: str = "--password"
) -> str:
    """A password typed twice without echo."""
    try:
        password = getpass.getpass(prompt)
        again = getpass.getpass("Again: ")
    except EOFError:
        raise ValueError(f"no password given ({otherwise}, or type it when asked)") from None
    if again != password:
        raise ValueError("the two passwords differ")
    return password


def _supervisor_password(from_stdin: bool) -> str:
    """The first line of standard input, or typed twice without echo."""
    if not from_stdin:
        return _ask_password("Console password (12 characters or more): ", "--password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ValueError("no password on standard input")
    return password


async def _enrol(db: Any, args: argparse.Namespace, by: Any) -> None:
    from backend import admin
    from otp.enrolment import qr_png, qr_terminal

    enrolment = await admin.enrol_mobile_token(
        db, args.account, digits=args.digits, period=args.period, by=by
    )
    print(f"FortiToken Mobile token {enrolment.serial} for account {args.account}")
    print(f"({enrolment.digits} digits every {enrolment.period} s), pending until its first login.")
    print("Scan this QR code with FortiToken Mobile, or enter the URI; both are shown once:")
    print(qr_terminal(enrolment.uri))
    print(enrolment.uri)
    if args.png:
        _write_private(args.png, qr_png(enrolment.uri))
        print(
            f"QR code written to {args.png} (mode 0600): it holds the secret, delete it after use"
        )
    print("The current token keeps working until the first login with a code of the new one.")


def _write_private(path: Path, data: bytes) -> None:
    """A new file only its owner can read, from the first byte (it holds a token secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
