"""Cargo checks and bundles: CCRNs (or batches of them) linked to a vehicle registration mark.

A submission is all or nothing, in one transaction. Two constraints decide races, so no read
before a write has to be trusted: the partial unique index on active bundle items (one active
bundle per CCRN) and the unique idempotency key (a retried submission finds its first result).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

import formats
from backend.calls import known_call, record_event
from backend.database import Database, unused_number
from backend.errors import BackendError
from backend.models import Account, Batch, Bundle, BundleItem, Cargo

log = structlog.get_logger(__name__)

MAX_CCRNS = 50
EARLIEST_CROSSING_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class CargoCheck:
    number: str
    kind: str  # "ccrn" | "batch"
    ccrns: list[str]


async def check_cargo(db: Database, number: str) -> CargoCheck:
    """The CCRNs behind `number` when every one of them can be bundled now."""
    kind = formats.cargo_number_kind(number)
    if kind is None:
        raise BackendError(
            "invalid_request",
            "Not a CCRN or batch number (length or check digit).",
            detail={"number": number},
        )
    async with db.sessions() as session:
        ccrns = await _expand(session, [number])
        await _check_available(session, ccrns, db.now())
    return CargoCheck(number, kind, ccrns)


async def create_bundle(
    db: Database,
    account_number: str,
    vehicle_mark: str,
    numbers: Sequence[str],
    idempotency_key: str,
    call_id: int | None,
) -> tuple[Bundle, bool]:
    """The bundle, and whether this request created it (False: an earlier one with this key)."""
    _check_input(vehicle_mark, numbers)
    now = db.now().replace(microsecond=0)
    ccrns: list[str] = []
    try:
        async with db.sessions.begin() as session:
            account = await _account(session, account_number)
            if earlier := await _bundle_by_key(session, idempotency_key):
                return _same_request(earlier, account, vehicle_mark), False
            ccrns = await _expand(session, numbers)
            if len(ccrns) > MAX_CCRNS:
                raise BackendError("invalid_request", f"At most {MAX_CCRNS} CCRNs per bundle.")
            await _check_available(session, ccrns, now)
            bundle = Bundle(
                reference=await unused_number(
                    session, Bundle.reference, formats.new_bundle_reference
                ),
                account=account,
                vehicle_mark=vehicle_mark,
                created_at=now,
                earliest_crossing=now + EARLIEST_CROSSING_AFTER,
                idempotency_key=idempotency_key,
                call_id=await known_call(session, call_id),
                items=[BundleItem(ccrn=ccrn) for ccrn in ccrns],
            )
            session.add(bundle)
            await session.flush()  # the constraints speak here, inside the transaction
            await record_event(
                session,
                call_id,
                now,
                "bundle_submitted",
                {"reference": bundle.reference, "vehicle_mark": vehicle_mark, "ccrns": ccrns},
            )
    except (IntegrityError, BackendError) as e:
        # A CCRN seen taken may have been taken by a concurrent retry of this very submission,
        # and a refused insert may be that retry's key: both are sorted out by _after_conflict.
        if isinstance(e, BackendError) and e.code != "ccrn_taken":
            raise
        return await _after_conflict(db, account_number, vehicle_mark, idempotency_key, ccrns, now)
    log.info(
        "bundle_submitted", reference=bundle.reference, account=account_number, call_id=call_id
    )
    return bundle, True


async def list_bundles(
    db: Database, account_number: str, vehicle_mark: str | None = None
) -> list[Bundle]:
    """The account's active bundles, newest first, optionally for one vehicle."""
    async with db.sessions() as session:
        account = await _account(session, account_number)
        query = (
            select(Bundle)
            .where(Bundle.account_id == account.id, Bundle.status == "active")
            .options(selectinload(Bundle.items), selectinload(Bundle.account))
            .order_by(Bundle.created_at.desc(), Bundle.id.desc())
        )
        if vehicle_mark is not None:
            query = query.where(Bundle.vehicle_mark == vehicle_mark)
        return list(await session.scalars(query))


def _check_input(vehicle_mark: str, numbers: Sequence[str]) -> None:
    if not formats.is_vehicle_mark(vehicle_mark):
        raise BackendError("invalid_request", "Not a valid vehicle registration mark.")
    if not 1 <= len(numbers) <= MAX_CCRNS:
        raise BackendError("invalid_request", f"Give 1 to {MAX_CCRNS} CCRNs or batch numbers.")
    if bad := [n for n in numbers if formats.cargo_number_kind(n) is None]:
        raise BackendError(
            "invalid_request", "Not a CCRN or batch number.", detail={"number": bad[0]}
        )


async def _after_conflict(
    db: Database,
    account_number: str,
    vehicle_mark: str,
    idempotency_key: str,
    ccrns: list[str],
    now: datetime,
) -> tuple[Bundle, bool]:
    """We lost a race: either a concurrent request with our key won (answer with its bundle),
    or another bundle took one of our CCRNs (say which)."""
    async with db.sessions() as session:
        if earlier := await _bundle_by_key(session, idempotency_key):
            account = await _account(session, account_number)
            return _same_request(earlier, account, vehicle_mark), False
        await _check_available(session, ccrns, now)
    raise BackendError("ccrn_taken", "That cargo is already bundled to a vehicle.")


async def _expand(session: AsyncSession, numbers: Sequence[str]) -> list[str]:
    """The CCRNs of `numbers`, batches expanded, each CCRN once, in the order given."""
    batch_numbers = [n for n in numbers if formats.is_batch_number(n)]
    batches = {
        batch.number: batch
        for batch in await session.scalars(
            select(Batch).where(Batch.number.in_(batch_numbers)).options(selectinload(Batch.items))
        )
    }
    ccrns: list[str] = []
    for number in numbers:
        if formats.is_ccrn(number):
            ccrns.append(number)
        elif batch := batches.get(number):
            ccrns.extend(item.ccrn for item in batch.items)
        else:
            raise BackendError(
                "ccrn_unknown", "No cargo information for that number.", detail={"batch": number}
            )
    return list(dict.fromkeys(ccrns))


async def _check_available(session: AsyncSession, ccrns: Sequence[str], now: datetime) -> None:
    """Raise for the first CCRN that is unknown, expired, or held by an active bundle."""
    cargo = {c.ccrn: c for c in await session.scalars(select(Cargo).where(Cargo.ccrn.in_(ccrns)))}
    taken = set(
        await session.scalars(
            select(BundleItem.ccrn).where(BundleItem.ccrn.in_(ccrns), BundleItem.active)
        )
    )
    for ccrn in ccrns:
        if ccrn not in cargo:
            raise BackendError(
                "ccrn_unknown", "No cargo information for that number.", detail={"ccrn": ccrn}
            )
        if cargo[ccrn].expires_at <= now:
            raise BackendError(
                "ccrn_expired", "That cargo information has expired.", detail={"ccrn": ccrn}
            )
        if ccrn in taken:
            raise BackendError(
                "ccrn_taken", "That cargo is already bundled to a vehicle.", detail={"ccrn": ccrn}
            )


async def _account(session: AsyncSession, number: str) -> Account:
    account = await session.scalar(select(Account).where(Account.number == number))
    if account is None:
        raise BackendError("account_unknown", f"No account {number}.")
    return account


async def _bundle_by_key(session: AsyncSession, idempotency_key: str) -> Bundle | None:
    return await session.scalar(
        select(Bundle)
        .where(Bundle.idempotency_key == idempotency_key)
        .options(selectinload(Bundle.items), selectinload(Bundle.account))
    )


def _same_request(earlier: Bundle, account: Account, vehicle_mark: str) -> Bundle:
    """A key names one submission: reusing it for another account or vehicle is a client bug."""
    if earlier.account_id != account.id or earlier.vehicle_mark != vehicle_mark:
        raise BackendError(
            "invalid_request", "This Idempotency-Key was used for a different bundle."
        )
    return earlier
