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
from typing import Any, cast

import structlog
from sqlalchemy import (
    JSON,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

import formats
from backend import sms
from backend.call_logs import EVENTS_TABLE, KNOWN_CALL_ID, record_event
from backend.database import Database, Executor
from backend.errors import BackendError
from backend.models import (
    Account,
    Batch,
    BatchItem,
    Bundle,
    BundleItem,
    Cargo,
    SmsOutbox,
    Unbundling,
)
from backend.sessions import SessionAccount
from backend.sms.outbox import OUTBOX_TABLE, row_values

log = structlog.get_logger(__name__)

MAX_CCRNS = 50
EARLIEST_CROSSING_AFTER = timedelta(minutes=30)
RECENT_VEHICLES = 3
NOT_FOUND = ("bundle_not_found", "No bundle was found for that vehicle and number.")

# The statements of every call, built once with named parameters (see call_logs).
# A bundle by its key, with its items and account joined: one query.
_BUNDLE_BY_KEY = (
    select(Bundle)
    .where(Bundle.idempotency_key == bindparam("key"))
    .options(joinedload(Bundle.items), joinedload(Bundle.account))
)
# The CCRNs of batches, in each batch's order (a batch of none: one row, ccrn None).
_BATCH_CCRNS = (
    select(Batch.number, BatchItem.ccrn)
    .outerjoin(BatchItem, BatchItem.batch_id == Batch.id)
    .where(Batch.number.in_(bindparam("numbers", expanding=True)))
    .order_by(BatchItem.id)
)
# Each CCRN's cargo, and its active bundle item if any (at most one, by the partial unique
# index): one query.
_AVAILABILITY = (
    select(Cargo.ccrn, Cargo.expires_at, BundleItem.id)
    .outerjoin(BundleItem, and_(BundleItem.ccrn == Cargo.ccrn, BundleItem.active))
    .where(Cargo.ccrn.in_(bindparam("ccrns", expanding=True)))
)
# Bundles and cancellations are written by Core statements on the tables: the ORM's unit of
# work costs more CPU than the statements themselves.
BUNDLES_TABLE = cast(Table, Bundle.__table__)
ITEMS_TABLE = cast(Table, BundleItem.__table__)
UNBUNDLINGS_TABLE = cast(Table, Unbundling.__table__)
_REFERENCE = bindparam("reference", type_=BUNDLES_TABLE.c.reference.type)
_NOW = bindparam("now", type_=BUNDLES_TABLE.c.created_at.type)
# How many of the CCRNs can be bundled now (lodged, unexpired, in no active bundle): the test
# of _check_available, which says which CCRN failed it.
_AVAILABLE = (
    select(func.count())
    .select_from(Cargo)
    .where(
        Cargo.ccrn.in_(bindparam("ccrns", expanding=True)),
        Cargo.expires_at > _NOW,
        ~exists().where(BundleItem.ccrn == Cargo.ccrn, BundleItem.active),
    )
    .scalar_subquery()
)
# The new bundle's row, and the check that it may be made, in one statement: inserted only
# while every CCRN is available and the random reference unused (a row or none). The partial
# unique index of its items, inserted next, still decides races; the unique key refuses a
# used key.
_NEW_BUNDLE = (
    insert(BUNDLES_TABLE)
    .from_select(
        [
            "reference",
            "account_id",
            "vehicle_mark",
            "created_at",
            "earliest_crossing",
            "status",
            "idempotency_key",
            "call_id",
        ],
        select(
            _REFERENCE,
            bindparam("account_id", type_=BUNDLES_TABLE.c.account_id.type),
            bindparam("vehicle_mark", type_=BUNDLES_TABLE.c.vehicle_mark.type),
            _NOW,
            bindparam("earliest_crossing", type_=BUNDLES_TABLE.c.earliest_crossing.type),
            literal("active", BUNDLES_TABLE.c.status.type),
            bindparam("key", type_=BUNDLES_TABLE.c.idempotency_key.type),
            KNOWN_CALL_ID,
        ).where(
            ~exists().where(BUNDLES_TABLE.c.reference == _REFERENCE),
            _AVAILABLE == bindparam("count"),
        ),
    )
    .returning(BUNDLES_TABLE.c.id, BUNDLES_TABLE.c.call_id)
)
# One statement for all the rows (executemany); inline: no id to return.
_NEW_ITEMS = insert(ITEMS_TABLE).inline()
# PostgreSQL: the new bundle, its items, its call's event and its confirmation SMS in one
# statement (INSERTs in a WITH clause; SQLite has none), outside a transaction: 1 round trip, not
# BEGIN, 3 or 4 statements and COMMIT. All or nothing as that transaction was: an item the
# partial unique index refuses fails the whole statement, and nothing is inserted when the
# bundle's row is not. Its row: the bundle's id, its call's and the SMS's (None: no SMS).
_NEW_BUNDLE_ROW = _NEW_BUNDLE.cte("new_bundle")
_ITEMS_OF_NEW = insert(ITEMS_TABLE).from_select(
    ["bundle_id", "ccrn", "active"],
    select(
        _NEW_BUNDLE_ROW.c.id,
        func.unnest(bindparam("ccrn_array", type_=ARRAY(String()))),
        true(),
    ),
)
_EVENT_OF_NEW = insert(EVENTS_TABLE).from_select(
    ["call_id", "at", "kind", "name", "detail"],
    select(
        _NEW_BUNDLE_ROW.c.call_id,
        _NOW,
        literal("backend", EVENTS_TABLE.c.kind.type),
        literal("bundle_submitted", EVENTS_TABLE.c.name.type),
        bindparam("event_detail", type_=JSON()),
    ).where(_NEW_BUNDLE_ROW.c.call_id.is_not(None)),
)
_SMS_MOBILE = bindparam("sms_mobile", type_=OUTBOX_TABLE.c.mobile.type)
_SMS_OF_NEW = (
    insert(OUTBOX_TABLE)
    .from_select(
        ["mobile", "kind", "text", "created_at", "status", "attempts"],
        select(
            _SMS_MOBILE,
            literal("bundle_confirmation", OUTBOX_TABLE.c.kind.type),
            bindparam("sms_text", type_=OUTBOX_TABLE.c.text.type),
            _NOW,
            literal("pending", OUTBOX_TABLE.c.status.type),
            literal([], OUTBOX_TABLE.c.attempts.type),
        )
        .select_from(_NEW_BUNDLE_ROW)
        .where(_SMS_MOBILE.is_not(None)),
    )
    .returning(OUTBOX_TABLE.c.id)
    .cte("new_sms")
)
_NEW_WHOLE_BUNDLE = select(
    _NEW_BUNDLE_ROW.c.id, _NEW_BUNDLE_ROW.c.call_id, select(_SMS_OF_NEW.c.id).scalar_subquery()
).add_cte(_ITEMS_OF_NEW.cte("new_items"), _EVENT_OF_NEW.cte("new_event"))
# A cancellation: the account's items on the vehicle still active (of every CCRN, or of one)
# cancelled in one statement, so that a concurrent cancellation of the same CCRN leaves this
# one nothing; then their bundles left with no active item; then the key, which is unique.
_CANCEL_ALL = (
    update(ITEMS_TABLE)
    .where(
        ITEMS_TABLE.c.active,
        ITEMS_TABLE.c.bundle_id.in_(
            select(Bundle.id).where(
                Bundle.account_id == bindparam("account_id"),
                Bundle.vehicle_mark == bindparam("vehicle_mark"),
                Bundle.status == "active",
            )
        ),
    )
    .values(active=False)
    .returning(ITEMS_TABLE.c.id, ITEMS_TABLE.c.ccrn, ITEMS_TABLE.c.bundle_id)
)
_CANCEL_ONE = _CANCEL_ALL.where(ITEMS_TABLE.c.ccrn == bindparam("the_ccrn"))
_CLOSE_EMPTIED = (
    update(BUNDLES_TABLE)
    .where(
        BUNDLES_TABLE.c.id.in_(bindparam("bundle_ids", expanding=True)),
        ~exists().where(ITEMS_TABLE.c.bundle_id == BUNDLES_TABLE.c.id, ITEMS_TABLE.c.active),
    )
    .values(status="cancelled")
)
_NEW_UNBUNDLING = insert(UNBUNDLINGS_TABLE).values(call_id=KNOWN_CALL_ID).inline()
# The last vehicles an account bundled to, newest first, with what orders them (recent_marks;
# login.py reads them in a success's own statement).
_LAST_AT = func.max(Bundle.created_at).label("last_at")
_LAST_ID = func.max(Bundle.id).label("last_id")
RECENT_MARKS = (
    select(Bundle.vehicle_mark, _LAST_AT, _LAST_ID)
    .where(Bundle.account_id == bindparam("account_id"))
    .group_by(Bundle.vehicle_mark)
    .order_by(_LAST_AT.desc(), _LAST_ID.desc())
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
    async with db.sessions.connect() as connection:
        ccrns = await _expand(connection, [number])
        await _check_available(connection, ccrns, db.now())
    return CargoCheck(number, kind, ccrns)


async def create_bundle(
    db: Database,
    account: SessionAccount,
    vehicle_mark: str,
    numbers: Sequence[str],
    idempotency_key: str,
    call_id: int | None,
) -> tuple[Bundle, bool]:
    """The bundle, and whether this request created it (False: an earlier one with this key).

    `account` is the one its login session check read. The usual submission writes without
    reading first: the bundle's INSERT is also the availability check, then its items, the
    call's event and the SMS. The key is looked up only when the submission failed (a used key
    is refused by its unique index): a retry answers with its first result even when its
    cargo has been bundled or has expired since, and another request with a used key is refused.
    """
    _check_input(vehicle_mark, numbers)
    now = db.now().replace(microsecond=0)
    ccrns: list[str] | None = None
    whole = db.engine.dialect.name == "postgresql"  # one statement, outside a transaction
    try:
        async with db.sessions.single() if whole else db.sessions.begin() as session:
            ccrns = await _expand(session, numbers)
            if len(ccrns) > MAX_CCRNS:
                raise BackendError("invalid_request", f"At most {MAX_CCRNS} CCRNs per bundle.")
            bundle, confirmation = await _insert_bundle(
                session, account, vehicle_mark, ccrns, idempotency_key, call_id, now, whole
            )
    except (IntegrityError, BackendError) as e:
        if ccrns is None:
            raise  # an unknown batch: a retry's numbers always expand (batches never change)
        # A failure may be a retry of a submission that was made (its CCRNs taken by itself,
        # its key refused), or one that lost a race to a concurrent retry of itself.
        return await _after_conflict(db, account, vehicle_mark, idempotency_key, ccrns, now, e)
    log.info(
        "bundle_submitted", reference=bundle.reference, account=account.number, call_id=call_id
    )
    if confirmation is not None:  # the caller's receipt needs nothing of it
        db.after_reply(sms.deliver_one(db, confirmation))
    return bundle, True


@dataclass(frozen=True)
class Cancellation:
    vehicle_mark: str
    cancelled: list[str]  # the CCRNs this request cancelled


async def unbundle(
    db: Database,
    account: SessionAccount,
    vehicle_mark: str,
    ccrn: str | None,
    idempotency_key: str,
    call_id: int | None,
) -> Cancellation:
    """Cancel `ccrn` (None: every CCRN) from the account's active bundles on the vehicle.

    Only the account's own bundles are touched. A bundle left with no active CCRN is cancelled.
    A retry with the same Idempotency-Key answers with what the first request cancelled: the key
    is looked up only when the cancellation failed (nothing left to cancel, or its key refused
    by its unique index, which rolls back what it cancelled).
    """
    if not formats.is_vehicle_mark(vehicle_mark):
        raise BackendError("invalid_request", "Not a valid vehicle registration mark.")
    if ccrn is not None and not formats.is_ccrn(ccrn):
        raise BackendError("invalid_request", "Not a CCRN.", detail={"number": ccrn})
    now = db.now().replace(microsecond=0)
    try:
        async with db.sessions.begin() as session:
            target = {"account_id": account.id, "vehicle_mark": vehicle_mark, "the_ccrn": ccrn}
            cancel = _CANCEL_ALL if ccrn is None else _CANCEL_ONE
            cancelled_items = sorted((await session.execute(cancel, target)).all())
            if not cancelled_items:
                raise BackendError(*NOT_FOUND)
            cancelled = [item.ccrn for item in cancelled_items]
            bundle_ids = list({item.bundle_id for item in cancelled_items})
            await session.execute(_CLOSE_EMPTIED, {"bundle_ids": bundle_ids})
            unbundling = {
                "idempotency_key": idempotency_key,
                "account_id": account.id,
                "vehicle_mark": vehicle_mark,
                "ccrn": ccrn,
                "cancelled": cancelled,
                "created_at": now,
                "call": call_id,
            }
            await session.execute(_NEW_UNBUNDLING, unbundling)  # the unique key speaks here
            await record_event(
                session,
                call_id,
                now,
                "unbundled",
                {"vehicle_mark": vehicle_mark, "ccrns": cancelled},
            )
    except (IntegrityError, BackendError) as e:
        # Nothing left to cancel, or a refused key: this may be a retry of a cancellation that
        # was made (or won a race with us), and then its answer is ours.
        if isinstance(e, BackendError) and e.code != NOT_FOUND[0]:
            raise
        async with db.sessions() as session:
            if earlier := await _unbundling_by_key(session, idempotency_key):
                return _same_cancellation(earlier, account.id, vehicle_mark, ccrn)
        raise
    log.info("unbundled", account=account.number, vehicle_mark=vehicle_mark, call_id=call_id)
    return Cancellation(vehicle_mark, cancelled)


async def recent_marks(session: AsyncSession, account_id: int) -> list[str]:
    """The marks of the last vehicles the account bundled to, most recent first (at most 3):
    the login answers with them (the vehicle prompt offers them)."""
    return [mark for mark, _, _ in await session.execute(RECENT_MARKS, {"account_id": account_id})]


def active_ccrns(bundle: Bundle) -> list[str]:
    """The CCRNs a bundle holds: those not cancelled; a cancelled bundle, those it held."""
    if bundle.status == "cancelled":
        return [item.ccrn for item in bundle.items]
    return [item.ccrn for item in bundle.items if item.active]


async def list_bundles(
    db: Database, account_id: int, vehicle_mark: str | None = None
) -> list[Bundle]:
    """The account's active bundles, newest first, optionally for one vehicle: one query."""
    async with db.sessions() as session:
        query = (
            select(Bundle)
            .where(Bundle.account_id == account_id, Bundle.status == "active")
            .options(joinedload(Bundle.items), joinedload(Bundle.account))
            .order_by(Bundle.created_at.desc(), Bundle.id.desc())
        )
        if vehicle_mark is not None:
            query = query.where(Bundle.vehicle_mark == vehicle_mark)
        return list((await session.scalars(query)).unique())


async def _insert_bundle(
    session: Executor,
    account: SessionAccount,
    vehicle_mark: str,
    ccrns: list[str],
    idempotency_key: str,
    call_id: int | None,
    now: datetime,
    whole: bool,
) -> tuple[Bundle, sms.Outgoing | None]:
    """Insert the bundle and its items (raises unless every CCRN is available), its call's
    event, and its confirmation SMS if the account has a mobile; the bundle as the reply needs
    it, and the SMS to deliver after the commit. `whole` (PostgreSQL): in one statement,
    _NEW_WHOLE_BUNDLE."""
    earliest_crossing = now + EARLIEST_CROSSING_AFTER
    bundle = Bundle(  # as the reply needs it; its reference drawn below, its ids the INSERT's
        account_id=account.id,
        account=Account(id=account.id, number=account.number, mobile=account.mobile),
        vehicle_mark=vehicle_mark,
        created_at=now,
        earliest_crossing=earliest_crossing,
        status="active",
        idempotency_key=idempotency_key,
    )
    params = {
        "account_id": account.id,
        "vehicle_mark": vehicle_mark,
        "now": now,
        "earliest_crossing": earliest_crossing,
        "key": idempotency_key,
        "call": call_id,
        "ccrns": ccrns,
        "count": len(ccrns),
    }
    message: dict[str, Any] | None = None
    while True:
        bundle.reference = formats.new_bundle_reference()
        text = _sms_text(bundle, ccrns)
        params["reference"] = bundle.reference
        if whole:
            if account.mobile:
                message = row_values(now, account.mobile, "bundle_confirmation", text)
            params |= {
                "ccrn_array": ccrns,
                "event_detail": _event_detail(bundle, ccrns),
                "sms_mobile": message["mobile"] if message else None,
                "sms_text": text,
            }
        statement = _NEW_WHOLE_BUNDLE if whole else _NEW_BUNDLE
        if row := (await session.execute(statement, params)).first():
            break
        # Not inserted: say which CCRN cannot be bundled, or else the random reference was
        # taken, and another one is drawn.
        await _check_available(session, ccrns, now)
    if whole:
        bundle.id, bundle.call_id, sms_id = row
        queued = sms.Outgoing(SmsOutbox(id=sms_id, **message), text) if message else None
        return _with_items(bundle, ccrns), queued
    bundle.id, bundle.call_id = row
    rows = [{"bundle_id": bundle.id, "ccrn": ccrn, "active": True} for ccrn in ccrns]
    await session.execute(_NEW_ITEMS, rows)  # the partial unique index speaks here
    await record_event(session, call_id, now, "bundle_submitted", _event_detail(bundle, ccrns))
    if account.mobile:
        queued = await sms.queue(session, now, account.mobile, "bundle_confirmation", text)
    else:
        queued = None
    return _with_items(bundle, ccrns), queued


def _with_items(bundle: Bundle, ccrns: list[str]) -> Bundle:
    bundle.items = [BundleItem(bundle_id=bundle.id, ccrn=ccrn, active=True) for ccrn in ccrns]
    return bundle


def _event_detail(bundle: Bundle, ccrns: list[str]) -> dict[str, Any]:
    return {"reference": bundle.reference, "vehicle_mark": bundle.vehicle_mark, "ccrns": ccrns}


def _sms_text(bundle: Bundle, ccrns: list[str]) -> str:
    return sms.bundle_text(
        len(ccrns), bundle.vehicle_mark, bundle.reference, bundle.earliest_crossing
    )


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
    account: SessionAccount,
    vehicle_mark: str,
    idempotency_key: str,
    ccrns: list[str],
    now: datetime,
    error: IntegrityError | BackendError,
) -> tuple[Bundle, bool]:
    """The submission failed. A bundle made with our key (earlier, or by a concurrent retry
    that won) is the answer, if it is this request's; otherwise the refusal stands, and a
    refused insert is said: another bundle took one of our CCRNs (which, if still so)."""
    async with db.sessions() as session:
        if earlier := await _bundle_by_key(session, idempotency_key):
            return _same_request(earlier, account.id, vehicle_mark, ccrns), False
        if isinstance(error, BackendError):
            raise error
        await _check_available(session, ccrns, now)
    raise BackendError("ccrn_taken", "That cargo is already bundled to a vehicle.")


async def _expand(session: Executor, numbers: Sequence[str]) -> list[str]:
    """The CCRNs of `numbers`, batches expanded, each CCRN once, in the order given."""
    batch_numbers = [n for n in numbers if formats.is_batch_number(n)]
    batches: dict[str, list[str]] = {}
    if batch_numbers:  # CCRNs only (the rule): no query
        for number, ccrn in await session.execute(_BATCH_CCRNS, {"numbers": batch_numbers}):
            batches.setdefault(number, []).extend([ccrn] if ccrn is not None else [])
    ccrns: list[str] = []
    for number in numbers:
        if formats.is_ccrn(number):
            ccrns.append(number)
        elif (batch := batches.get(number)) is not None:
            ccrns.extend(batch)
        else:
            raise BackendError(
                "ccrn_unknown", "No cargo information for that number.", detail={"batch": number}
            )
    return list(dict.fromkeys(ccrns))


async def _check_available(session: Executor, ccrns: Sequence[str], now: datetime) -> None:
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


async def _bundle_by_key(session: AsyncSession, idempotency_key: str) -> Bundle | None:
    return (await session.scalars(_BUNDLE_BY_KEY, {"key": idempotency_key})).unique().first()


async def _unbundling_by_key(session: AsyncSession, idempotency_key: str) -> Unbundling | None:
    return await session.scalar(
        select(Unbundling).where(Unbundling.idempotency_key == idempotency_key)
    )


def _same_cancellation(
    earlier: Unbundling, account_id: int, vehicle_mark: str, ccrn: str | None
) -> Cancellation:
    if (earlier.account_id, earlier.vehicle_mark, earlier.ccrn) != (account_id, vehicle_mark, ccrn):
        raise BackendError(
            "invalid_request", "This Idempotency-Key was used for a different cancellation."
        )
    return Cancellation(earlier.vehicle_mark, list(earlier.cancelled))


def _same_request(
    earlier: Bundle, account_id: int, vehicle_mark: str, ccrns: Sequence[str]
) -> Bundle:
    """A key names one submission: reusing it for another account, vehicle or CCRNs is a
    client bug (answering with the old bundle would leave the new CCRNs silently unbundled)."""
    bundled = {item.ccrn for item in earlier.items}
    if (earlier.account_id, earlier.vehicle_mark, bundled) != (
        account_id,
        vehicle_mark,
        set(ccrns),
    ):
        raise BackendError(
            "invalid_request", "This Idempotency-Key was used for a different bundle."
        )
    return earlier
