"""`ivrs call`: the simulator as a keypad phone, printing what the caller hears; with
`--record out.wav`, the call rendered to audio from the built sound files."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pyotp

from cli.main import ivr_settings
from simulator import SoundsMissing, check_sounds, format_heard, has_sounds, place_call, render


def token_device(seed: str, digits: int = 6, period: int = 60) -> Callable[[], str]:
    """A stand-in for the caller's security token: its code at the moment it is read."""
    totp = pyotp.TOTP(seed, digits=digits, interval=period)
    return totp.now


def print_heard(heard: object) -> None:
    print(format_heard(heard), flush=True)  # type: ignore[arg-type]


def default_sounds_dir() -> Path:
    """Where `ivrs prompts build` puts the sound files by default."""
    return Path(os.environ.get("IVRS_SOUNDS_DIR") or "var/sounds")


async def call_from_cli(args: argparse.Namespace) -> int:
    settings = ivr_settings("call")
    record_to = Path(args.record) if getattr(args, "record", None) else None
    chosen = Path(args.sounds) if getattr(args, "sounds", None) else None
    sounds_dir = chosen or default_sounds_dir()
    if record_to is not None or chosen is not None:
        try:
            check_sounds(sounds_dir)
        except SoundsMissing as e:
            print(f"ivrs call: {e}", file=sys.stderr)
            return 2
    # Built sounds give prompts their real lengths (and barge-in points that match the audio).
    use_sounds = sounds_dir if has_sounds(sounds_dir) else None
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
            sounds_dir=use_sounds,
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
    if record_to is not None:
        rendering = render(record, sounds_dir, record_to)
        print(f"-- recording {rendering.path} ({rendering.ms / 1000:.1f} s)")
        if rendering.missing:
            missing = ", ".join(dict.fromkeys(rendering.missing))
            print(f"   not in {sounds_dir}, rendered as silence: {missing}")
    return 0
