"""Cargo checks and bundles: CCRNs (or batches of them) linked to a vehicle registration mark,
cancelled (unbundled) one or all at a time, and the vehicles an account used lately.

A submission is all or nothing, in one transaction, and so is a cancellation. Constraints and
conditional updates decide races, so no read before a write has to be trusted: the partial
unique index on active bundle items (one active bundle per CCRN), the unique idempotency keys
(a retried request finds its first result), and items cancelled only while still active.
A new bundle sends a confirmation SMS to the account's registered mobile, after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, bindparam, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

import formats
from backend import sms
from backend.call_logs import known_call, record_event
from backend.database import Database, unused_number
from backend.errors import BackendError
from backend.models import Account, Batch, Bundle, BundleItem, Cargo, Unbundling

log = structlog.get_logger(__name__)

MAX_CCRNS = 50
EARLIEST_CROSSING_AFTER = timedelta(minutes=30)
RECENT_VEHICLES = 3
NOT_FOUND = ("bundle_not_found", "No bundle was found for that vehicle and number.")

# The statements of every call, built once with named parameters (see call_logs).
_ACCOUNT = select(Account).where(Account.number == bindparam("number"))
_BUNDLE_BY_KEY = (
    select(Bundle)
    .where(Bundle.idempotency_key == bindparam("key"))
    .options(selectinload(Bundle.items), selectinload(Bundle.account))
)
# Each CCRN's cargo, and its active bundle item if any (at most one, by the partial unique
# index): one query.
_AVAILABILITY = (
    select(Cargo.ccrn, Cargo.expires_at, BundleItem.id)
    .outerjoin(BundleItem, and_(BundleItem.ccrn == Cargo.ccrn, BundleItem.active))
    .where(Cargo.ccrn.in_(bindparam("ccrns", expanding=True)))
)
# The last vehicles an account bundled to (recent_marks).
_RECENT_MARKS = (
    select(Bundle.vehicle_mark)
    .where(Bundle.account_id == bindparam("account_id"))
    .group_by(Bundle.vehicle_mark)
    .order_by(func.max(Bundle.created_at).desc(), func.max(Bundle.id).desc())
    .limit(RECENT_VEHICLES)
)


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
    confirmation: sms.Outgoing | None = None
    try:
        async with db.sessions.begin() as session:
            account = await _account(session, account_number)
            if earlier := await _bundle_by_key(session, idempotency_key):
                ccrns = await _expand(session, numbers)
                return _same_request(earlier, account, vehicle_mark, ccrns), False
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
            if account.mobile:
                text = sms.bundle_text(
                    len(ccrns), vehicle_mark, bundle.reference, bundle.earliest_crossing
                )
                confirmation = sms.queue(session, now, account.mobile, "bundle_confirmation", text)
    except (IntegrityError, BackendError) as e:
        # A CCRN seen taken may have been taken by a concurrent retry of this very submission,
        # and a refused insert may be that retry's key: both are sorted out by _after_conflict.
        if isinstance(e, BackendError) and e.code != "ccrn_taken":
            raise
        return await _after_conflict(db, account_number, vehicle_mark, idempotency_key, ccrns, now)
    log.info(
        "bundle_submitted", reference=bundle.reference, account=account_number, call_id=call_id
    )
    await sms.deliver(db, [confirmation])
    return bundle, True


@dataclass(frozen=True)
class Cancellation:
    vehicle_mark: str
    cancelled: list[str]  # the CCRNs this request cancelled


async def unbundle(
    db: Database,
    account_number: str,
    vehicle_mark: str,
    ccrn: str | None,
    idempotency_key: str,
    call_id: int | None,
) -> Cancellation:
    """Cancel `ccrn` (None: every CCRN) from the account's active bundles on the vehicle.

    Only the account's own bundles are touched. A bundle left with no active CCRN is cancelled.
    A retry with the same Idempotency-Key answers with what the first request cancelled.
    """
    if not formats.is_vehicle_mark(vehicle_mark):
        raise BackendError("invalid_request", "Not a valid vehicle registration mark.")
    if ccrn is not None and not formats.is_ccrn(ccrn):
        raise BackendError("invalid_request", "Not a CCRN.", detail={"number": ccrn})
    now = db.now().replace(microsecond=0)
    try:
        async with db.sessions.begin() as session:
            account = await _account(session, account_number)
            if earlier := await _unbundling_by_key(session, idempotency_key):
                return _same_cancellation(earlier, account, vehicle_mark, ccrn)
            query = (
                select(BundleItem.id)
                .join(Bundle, Bundle.id == BundleItem.bundle_id)
                .where(
                    Bundle.account_id == account.id,
                    Bundle.vehicle_mark == vehicle_mark,
                    Bundle.status == "active",
                    BundleItem.active,
                )
            )
            if ccrn is not None:
                query = query.where(BundleItem.ccrn == ccrn)
            item_ids = list(await session.scalars(query))
            if not item_ids:
                raise BackendError(*NOT_FOUND)
            # Only items still active are cancelled: a concurrent cancellation of the same
            # CCRN leaves this request with nothing to cancel, hence bundle_not_found.
            cancelled_items = sorted(
                (
                    await session.execute(
                        update(BundleItem)
                        .where(BundleItem.id.in_(item_ids), BundleItem.active)
                        .values(active=False)
                        .returning(BundleItem.id, BundleItem.ccrn, BundleItem.bundle_id)
                        .execution_options(synchronize_session=False)
                    )
                ).all()
            )
            if not cancelled_items:
                raise BackendError(*NOT_FOUND)
            cancelled = [item.ccrn for item in cancelled_items]
            bundle_ids = {item.bundle_id for item in cancelled_items}
            still_active = exists().where(BundleItem.bundle_id == Bundle.id, BundleItem.active)
            await session.execute(
                update(Bundle)
                .where(Bundle.id.in_(bundle_ids), ~still_active)
                .values(status="cancelled")
                .execution_options(synchronize_session=False)
            )
            session.add(
                Unbundling(
                    idempotency_key=idempotency_key,
                    account_id=account.id,
                    vehicle_mark=vehicle_mark,
                    ccrn=ccrn,
                    cancelled=cancelled,
                    created_at=now,
                    call_id=await known_call(session, call_id),
                )
            )
            await session.flush()  # the unique key speaks here, inside the transaction
            await record_event(
                session,
                call_id,
                now,
                "unbundled",
                {"vehicle_mark": vehicle_mark, "ccrns": cancelled},
            )
    except (IntegrityError, BackendError) as e:
        # Nothing left to cancel, or a refused key: a concurrent retry of this very request
        # may have won, and then its answer is ours.
        if isinstance(e, BackendError) and e.code != NOT_FOUND[0]:
            raise
        async with db.sessions() as session:
            if earlier := await _unbundling_by_key(session, idempotency_key):
                account = await _account(session, account_number)
                return _same_cancellation(earlier, account, vehicle_mark, ccrn)
        raise
    log.info("unbundled", account=account_number, vehicle_mark=vehicle_mark, call_id=call_id)
    return Cancellation(vehicle_mark, cancelled)


async def recent_marks(session: AsyncSession, account_id: int) -> list[str]:
    """The marks of the last vehicles the account bundled to, most recent first (at most 3):
    the login answers with them (the vehicle prompt offers them)."""
    return list(await session.scalars(_RECENT_MARKS, {"account_id": account_id}))


def active_ccrns(bundle: Bundle) -> list[str]:
    """The CCRNs a bundle holds: those not cancelled; a cancelled bundle, those it held."""
    if bundle.status == "cancelled":
        return [item.ccrn for item in bundle.items]
    return [item.ccrn for item in bundle.items if item.active]


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
            return _same_request(earlier, account, vehicle_mark, ccrns), False
        await _check_available(session, ccrns, now)
    raise BackendError("ccrn_taken", "That cargo is already bundled to a vehicle.")


async def _expand(session: AsyncSession, numbers: Sequence[str]) -> list[str]:
    """The CCRNs of `numbers`, batches expanded, each CCRN once, in the order given."""
    batch_numbers = [n for n in numbers if formats.is_batch_number(n)]
    batches = {
        batch.number: batch
        for batch in (
            await session.scalars(
                select(Batch)
                .where(Batch.number.in_(batch_numbers))
                .options(selectinload(Batch.items))
            )
            if batch_numbers  # CCRNs only (the rule): no query
            else ()
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
    rows = await session.execute(_AVAILABILITY, {"ccrns": list(ccrns)})
    expiry: dict[str, datetime] = {}
    taken: set[str] = set()
    for ccrn, expires_at, active_item in rows:
        expiry[ccrn] = expires_at
        if active_item is not None:
            taken.add(ccrn)
    for ccrn in ccrns:
        if ccrn not in expiry:
            raise BackendError(
                "ccrn_unknown", "No cargo information for that number.", detail={"ccrn": ccrn}
            )
        if expiry[ccrn] <= now:
            raise BackendError(
                "ccrn_expired", "That cargo information has expired.", detail={"ccrn": ccrn}
            )
        if ccrn in taken:
            raise BackendError(
                "ccrn_taken", "That cargo is already bundled to a vehicle.", detail={"ccrn": ccrn}
            )


async def _account(session: AsyncSession, number: str) -> Account:
    account = await session.scalar(_ACCOUNT, {"number": number})
    if account is None:
        raise _no_account(number)
    return account


def _no_account(number: str) -> BackendError:
    return BackendError("account_unknown", f"No account {number}.")


async def _bundle_by_key(session: AsyncSession, idempotency_key: str) -> Bundle | None:
    return await session.scalar(_BUNDLE_BY_KEY, {"key": idempotency_key})


async def _unbundling_by_key(session: AsyncSession, idempotency_key: str) -> Unbundling | None:
    return await session.scalar(
        select(Unbundling).where(Unbundling.idempotency_key == idempotency_key)
    )


def _same_cancellation(
    earlier: Unbundling, account: Account, vehicle_mark: str, ccrn: str | None
) -> Cancellation:
    if (earlier.account_id, earlier.vehicle_mark, earlier.ccrn) != (account.id, vehicle_mark, ccrn):
        raise BackendError(
            "invalid_request", "This Idempotency-Key was used for a different cancellation."
        )
    return Cancellation(earlier.vehicle_mark, list(earlier.cancelled))


def _same_request(
    earlier: Bundle, account: Account, vehicle_mark: str, ccrns: Sequence[str]
) -> Bundle:
    """A key names one submission: reusing it for another account, vehicle or CCRNs is a
    client bug (answering with the old bundle would leave the new CCRNs silently unbundled)."""
    bundled = {item.ccrn for item in earlier.items}
    if (earlier.account_id, earlier.vehicle_mark, bundled) != (
        account.id,
        vehicle_mark,
        set(ccrns),
    ):
        raise BackendError(
            "invalid_request", "This Idempotency-Key was used for a different bundle."
        )
    return earlier
