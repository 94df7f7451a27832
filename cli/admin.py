"""`ivrs admin ...`: accounts, tokens, vehicles and cargo, straight on IVRS_DATABASE_URL."""

from __future__ import annotations

import argparse
import sys
from datetime import date


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
    from backend import admin
    from backend.database import open_database
    from backend.settings import BackendSettings

    async with open_database(BackendSettings.from_env()) as db:
        try:
            match args.admin_command:
                case "create-account":
                    await admin.create_account(
                        db,
                        args.number,
                        args.password,
                        type=args.type,
                        services=() if args.no_road_bundling else ("road_bundling",),
                        needs_activation=args.needs_activation,
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
