"""`ivrs call`: the simulator as a keypad phone, printing what the caller hears."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import pyotp

from ivr.settings import IvrSettings
from ivr.simulator import format_heard, place_call


def token_device(seed: str, digits: int = 6, period: int = 60) -> Callable[[], str]:
    """A stand-in for the caller's security token: its code at the moment it is read."""
    totp = pyotp.TOTP(seed, digits=digits, interval=period)
    return totp.now


def print_heard(heard: object) -> None:
    print(format_heard(heard), flush=True)  # type: ignore[arg-type]


async def call_from_cli(args: argparse.Namespace) -> int:
    settings = IvrSettings.from_env()
    try:
        record = await place_call(
            args.host or settings.agi_host,
            args.port or settings.agi_port,
            keys=args.keys,
            args=(args.hotline,),
            caller_id=args.caller_id,
            totp=token_device(args.totp_seed, args.totp_digits, args.totp_period)
            if args.totp_seed
            else None,
            real_time=args.real_time,
            on_heard=print_heard,
        )
    except ConnectionRefusedError:
        print(
            f"No FastAGI server at {args.host or settings.agi_host}:"
            f"{args.port or settings.agi_port} (start one with `ivrs agi`).",
            file=sys.stderr,
        )
        return 1
    ended_by = "caller hung up" if record.hung_up else "server hung up"
    print(f"-- call {record.uniqueid} ended: {ended_by}")
    return 0
