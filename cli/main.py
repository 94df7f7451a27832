"""`ivrs`: the one console script. Each subcommand imports only the part it runs, so the IVR
process never loads the backend (docs/design.md's rule of dependence)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from cli.logs import configure_logging


def _listen_at(settings: Any, args: argparse.Namespace, host: str, port: str) -> Any:
    """`settings` with the --host/--port of the command line in place of the environment's."""
    given = {host: args.host, port: args.port}
    return replace(settings, **{name: value for name, value in given.items() if value is not None})


def backend_settings(command: str) -> Any:
    """The backend's settings; a configuration mistake ends `ivrs <command>` with one line."""
    from backend.settings import BackendSettings

    return _configured(command, BackendSettings.from_env)


def ivr_settings(command: str) -> Any:
    """The FastAGI server's settings, likewise."""
    from ivr.settings import IvrSettings

    return _configured(command, IvrSettings.from_env)


def _configured(command: str, from_env: Callable[[], Any]) -> Any:
    try:
        return from_env()
    except ValueError as e:
        raise SystemExit(f"ivrs {command}: {e}") from None


def _agi(args: argparse.Namespace) -> int:
    from ivr.server import run

    run(_listen_at(ivr_settings("agi"), args, "agi_host", "agi_port"))
    return 0


def _backend(args: argparse.Namespace) -> int:
    settings = _listen_at(backend_settings("backend"), args, "host", "port")
    from backend.app import run  # after the check: its imports log (alembic)

    if args.workers:
        settings = replace(settings, workers=args.workers)
    run(settings)
    return 0


def _call(args: argparse.Namespace) -> int:
    from cli.phone import call_from_cli

    return asyncio.run(call_from_cli(args))


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import demo

    return asyncio.run(demo(keep_running=args.keep_running))


def _prompts(args: argparse.Namespace) -> int:
    from prompts.build import main as build_main

    return build_main(args.rest)


def _admin(args: argparse.Namespace) -> int:
    from cli.admin import run_admin

    return asyncio.run(run_admin(args))


def _spool(args: argparse.Namespace) -> int:
    from cli.spool import deliver_left

    return asyncio.run(deliver_left())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivrs", description="Road Cargo IVRS")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("agi", help="run the FastAGI server (IVRS_AGI_HOST:IVRS_AGI_PORT)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_agi)

    p = sub.add_parser("backend", help="run the backend HTTP API (IVRS_BACKEND_URL)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="processes on the port (IVRS_BACKEND_WORKERS)")
    p.set_defaults(func=_backend)

    p = sub.add_parser("call", help="place a simulated call (Asterisk's side) to a FastAGI server")
    p.add_argument("--host", default=None, help="FastAGI host (IVRS_AGI_HOST)")
    p.add_argument("--port", type=int, default=None, help="FastAGI port (IVRS_AGI_PORT)")
    p.add_argument(
        "--keys",
        help="key script, e.g. '3 12345678 246810# {totp}#'; without it, type keys live",
    )
    p.add_argument("--totp-seed", help="base32 seed: {totp} in the script types its current code")
    p.add_argument("--totp-digits", type=int, default=6)
    p.add_argument("--totp-period", type=int, default=60)
    p.add_argument("--hotline", default="39023333", help="the DID passed as agi_arg_1")
    p.add_argument("--caller-id", default=None)
    p.add_argument("--real-time", action="store_true", help="play prompts at their real length")
    p.add_argument(
        "--record",
        metavar="OUT.WAV",
        help="render the call to an 8 kHz WAV from the built sounds (ivrs prompts build)",
    )
    p.add_argument(
        "--sounds",
        metavar="DIR",
        help="built sound files: prompt lengths and --record audio "
        "(default IVRS_SOUNDS_DIR or var/sounds)",
    )
    p.set_defaults(func=_call)

    p = sub.add_parser("demo", help="start everything, place one bundling call, show the result")
    p.add_argument("--keep-running", action="store_true", help="leave the servers running")
    p.set_defaults(func=_demo)

    p = sub.add_parser("prompts", help="build the prompt sound files (ivrs prompts build -h)")
    p.add_argument("action", choices=["build"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the build")
    p.set_defaults(func=_prompts)

    p = sub.add_parser("admin", help="accounts, tokens, vehicles and cargo (on IVRS_DATABASE_URL)")
    from cli.admin import add_admin_commands

    add_admin_commands(p)
    p.set_defaults(func=_admin)

    p = sub.add_parser(
        "spool", help="deliver call logs classic AGI left spooled (ivrs spool deliver)"
    )
    p.add_argument("action", choices=["deliver"])
    p.set_defaults(func=_spool)

    p = sub.add_parser("asterisk", help="checks against a real Asterisk (ivrs asterisk test-call)")
    from cli.asterisk import add_asterisk_commands

    add_asterisk_commands(p)

    from cli.bench import add_bench_command

    add_bench_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
