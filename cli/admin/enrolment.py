"""`ivrs admin enrol-mobile-token`: a new FortiToken Mobile secret, shown once as an otpauth
URI and a QR code (in the terminal, and in a new PNG file only its owner can read)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "enrol-mobile-token",
        help="new FortiToken Mobile secret: otpauth URI and QR code; active from its first login",
    )
    p.add_argument("account")
    p.add_argument("--digits", type=int, default=6, choices=(6, 8))
    p.add_argument("--period", type=int, default=30, choices=(30, 60))
    p.add_argument("--png", type=Path, help="also write the QR code to this new PNG file")
    p.set_defaults(read=check_png, act=enrol)


def check_png(args: argparse.Namespace) -> None:
    if args.png and args.png.exists():
        raise ValueError(f"{args.png} exists: the QR code holds a secret, give a new file name")


async def enrol(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
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
