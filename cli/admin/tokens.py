"""`ivrs admin` for security tokens: add one with its seed, import a seed file, assign,
revoke, resynchronise (the two codes given are used up by the resync itself)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("add-token", help="assign a security token; shows its seed once")
    p.add_argument("account", help="the account it is assigned to")
    p.add_argument("--serial")
    p.add_argument("--kind", default="hardware", choices=("hardware", "mobile"))
    p.add_argument("--digits", type=int, default=6)
    p.add_argument("--period", type=int, default=None, help="seconds (hardware 60, mobile 30)")
    p.add_argument("--expiry", type=date.fromisoformat, help="YYYY-MM-DD (hardware tokens)")
    p.add_argument("--seed", help="base32 seed (default: a new random one)")
    p.set_defaults(act=add_token)

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
    p.set_defaults(read=read_seed_file, act=import_tokens)

    p = sub.add_parser("assign-token", help="assign an imported token to an account")
    p.add_argument("serial")
    p.add_argument("account")
    p.set_defaults(act=assign_token)

    p = sub.add_parser("revoke-token", help="revoke a lost or broken token at once")
    p.add_argument("serial")
    p.set_defaults(act=revoke_token)

    p = sub.add_parser("resync-token", help="resynchronise a token from two consecutive codes")
    p.add_argument("serial")
    p.add_argument("code1")
    p.add_argument("code2")
    p.add_argument(
        "--window",
        type=int,
        help="steps searched each side of now (default 10), or presses ahead (event tokens, 1000)",
    )
    p.set_defaults(act=resync_token)


async def add_token(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

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


@dataclass(frozen=True)
class SeedFile:
    data: bytes = field(repr=False)
    psk: bytes | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def read_seed_file(args: argparse.Namespace) -> SeedFile:
    """The file, and the key or password of an encrypted PSKC file from theirs."""
    psk = password = None
    if args.pskc_key_file:
        try:
            psk = bytes.fromhex(args.pskc_key_file.read_text().strip())
        except ValueError:
            raise ValueError(f"{args.pskc_key_file}: the pre-shared key must be hex") from None
    if args.pskc_password_file:
        lines = args.pskc_password_file.read_text().splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{args.pskc_password_file}: the first line must be the password")
        password = lines[0]
    return SeedFile(args.file.read_bytes(), psk, password)


async def import_tokens(db: Any, args: argparse.Namespace, seeds: SeedFile, by: Any) -> None:
    from backend import admin

    serials = await admin.import_tokens(
        db,
        seeds.data,
        kind=args.kind,
        psk=seeds.psk,
        password=seeds.password,
        file_name=args.file.name,
        by=by,
    )
    print(f"{len(serials)} token(s) imported, unassigned: {', '.join(serials)}")
    print(f"The seeds are stored encrypted; delete {args.file} now.")


async def assign_token(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    await admin.assign_token(db, args.serial, args.account, by=by)
    print(f"token {args.serial} assigned to {args.account}")


async def revoke_token(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    await admin.revoke_token(db, args.serial, by=by)
    print(f"token {args.serial} revoked")


async def resync_token(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    drift = await admin.resync_token(
        db, args.serial, args.code1, args.code2, window=args.window, by=by
    )
    print(f"token {args.serial} resynchronised: {drift:+d} steps from the server")
