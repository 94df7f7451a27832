"""`ivrs admin` for what is bundled: vehicles, lodged cargo (prints each CCRN) and batches of
CCRNs (prints the batch number)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("add-vehicle", help="register a vehicle mark")
    p.add_argument("mark")
    p.set_defaults(act=add_vehicle)

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
    p.set_defaults(act=lodge_cargo)

    p = sub.add_parser("combine-batch", help="combine CCRNs into a batch; prints its number")
    p.add_argument("ccrns", nargs="+")
    p.set_defaults(act=combine_batch)


async def add_vehicle(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    await admin.add_vehicle(db, args.mark)
    print(f"vehicle {args.mark.upper()} added")


async def lodge_cargo(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    for _lodged in range(args.count):
        ccrn = await admin.lodge_cargo(
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
        print(ccrn)


async def combine_batch(db: Any, args: argparse.Namespace, _: None, by: Any) -> None:
    from backend import admin

    print(await admin.combine_batch(db, args.ccrns))
