"""Lodged road cargo (a CCRN each) and batches combining CCRNs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

import structlog
from sqlalchemy import select

import formats
from backend.admin.common import AdminError
from backend.database import Database, unused_number
from backend.models import Batch, BatchItem, Cargo, CargoKind
from backend.timezones import hong_kong_date

log = structlog.get_logger(__name__)


CARGO_VALID_FOR = timedelta(days=14)
MAX_BATCH_CCRNS = 50  # a batch must fit in one bundle submission


async def lodge_cargo(
    db: Database,
    *,
    kind: CargoKind = "packages",
    description: str = "Cartons",
    packages_count: int | None = 10,
    article_description: str | None = "Garments",
    gross_weight: Decimal | float | None = None,
    volume: Decimal | float | None = None,
    consignor: str = "Pearl River Garments Ltd, Dongguan",
    consignee: str = "Harbour Trading Co Ltd, Kwai Chung, Hong Kong",
    expected_date: date | None = None,
) -> str:
    """Lodge road cargo information (the eight ROCARS items); return its new CCRN."""
    if kind == "packages" and not (packages_count and packages_count > 0):
        raise AdminError("cargo in packages needs the number of packages")
    if kind == "bulk" and gross_weight is None and volume is None:
        raise AdminError("bulk cargo needs its gross weight or volume")
    now = db.now()
    cargo = Cargo(
        lodged_at=now,
        expires_at=now + CARGO_VALID_FOR,
        kind=kind,
        description=description,
        packages_count=packages_count,
        article_description=article_description,
        gross_weight=None if gross_weight is None else Decimal(str(gross_weight)),
        volume=None if volume is None else Decimal(str(volume)),
        consignor=consignor,
        consignee=consignee,
        expected_date=expected_date or hong_kong_date(now),
    )
    async with db.sessions.begin() as session:
        cargo.ccrn = await unused_number(session, Cargo.ccrn, formats.new_ccrn)
        session.add(cargo)
    return cargo.ccrn


async def combine_batch(db: Database, ccrns: Sequence[str]) -> str:
    """Combine lodged CCRNs into a batch; return the batch number."""
    ccrns = list(dict.fromkeys(ccrns))
    if not 1 <= len(ccrns) <= MAX_BATCH_CCRNS:
        raise AdminError(f"a batch holds 1 to {MAX_BATCH_CCRNS} CCRNs")
    async with db.sessions.begin() as session:
        found = set(await session.scalars(select(Cargo.ccrn).where(Cargo.ccrn.in_(ccrns))))
        if missing := [c for c in ccrns if c not in found]:
            raise AdminError(f"no cargo lodged under {', '.join(missing)}")
        number = await unused_number(session, Batch.number, formats.new_batch_number)
        batch = Batch(number=number, created_at=db.now())
        batch.items = [BatchItem(ccrn=c) for c in ccrns]
        session.add(batch)
    return batch.number
