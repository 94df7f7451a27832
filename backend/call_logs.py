"""Call logs: one row per call (Asterisk UNIQUEID), its events, and how it ended.

A call is ended once: by the IVR (`end_call`) or by the dialplan's hang-up handler
(`hang_up`), whichever comes first. The end is a single conditional UPDATE, so the two racing
never overwrite each other.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import structlog
from sqlalchemy import (
    JSON,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    column,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from backend.columns import UtcDateTime
from backend.database import Database, Executor
from backend.errors import BackendError
from backend.models import Call, CallEvent

log = structlog.get_logger(__name__)

# Defence in depth: the IVR masks secrets before sending events; anything it missed is masked
# here, before it can reach the database.
SECRET_KEYS = frozenset({"password", "token_code", "sms_code", "code", "pin"})
MASK = "***"
HUNG_UP = "caller_hung_up"
EVENTS_TABLE = cast(Table, CallEvent.__table__)
UNKNOWN_STAGE = "unknown"
REUSED = "uniqueid_reused"  # the flag of a call that came with an ended call's uniqueid

# The statements of every call, built once with named parameters: SQLAlchemy then skips
# building them (and their cache keys) per request.


# A number's remembered language: that of its newest finished call that has one.
_REMEMBERED = (Call.ended_at.is_not(None), Call.language.is_not(None))
_NEWEST_FIRST = (Call.started_at.desc(), Call.id.desc())


def _last_language_of(caller_param: str) -> Select[str | None]:
    """The language of the last finished call from the number in `caller_param`."""
    return (
        select(Call.language)
        .where(Call.caller_id == bindparam(caller_param), *_REMEMBERED)
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )


_LAST_LANGUAGE = _last_language_of("caller_id")
CALLS_TABLE = cast(Table, Call.__table__)
# A new call in one statement, answering its id and (_OPEN_REMEMBERING) the caller number's
# last language: the table's insert (the ORM's flush costs more than the statement itself).
_OPEN = insert(CALLS_TABLE).returning(CALLS_TABLE.c.id)
_OPEN_REMEMBERING = insert(CALLS_TABLE).returning(
    # its own parameter name: "caller_id" is the inserted column's
    CALLS_TABLE.c.id,
    _last_language_of("remembered_for").scalar_subquery(),
)
# Many new calls in one statement (SQLAlchemy's "insertmanyvalues": one INSERT ... VALUES of
# every row), each id with its uniqueid (in no given order: asked for one, SQLAlchemy sends
# SQLite a statement a row); then the numbers' last languages in one query.
_OPEN_MANY = insert(CALLS_TABLE).returning(CALLS_TABLE.c.uniqueid, CALLS_TABLE.c.id)
_latest = (
    select(
        Call.caller_id,
        Call.language,
        func.row_number().over(partition_by=Call.caller_id, order_by=_NEWEST_FIRST).label("latest"),
    )
    .where(Call.caller_id.in_(bindparam("callers", expanding=True)), *_REMEMBERED)
    .subquery()
)
_LAST_LANGUAGES = select(_latest.c.caller_id, _latest.c.language).where(_latest.c.latest == 1)
_LOCK_CALL = select(Call.id).where(Call.id == bindparam("call_id")).with_for_update()
# ... and which events it has since the batch's first: one query.
_LOCK_CALL_WITH_EVENTS = (
    select(Call.id, CallEvent.at, CallEvent.kind, CallEvent.name)
    .outerjoin(CallEvent, and_(CallEvent.call_id == Call.id, CallEvent.at >= bindparam("since")))
    .where(Call.id == bindparam("call_id"))
    .with_for_update(of=Call)
)
# Updates of the table, not the ORM's: an ORM update is copied (and its cache key made again)
# at every execution.
_FOLLOW_STAGE = (
    update(CALLS_TABLE)
    .where(CALLS_TABLE.c.id == bindparam("call_id"), CALLS_TABLE.c.ended_at.is_(None))
    .values(last_stage=bindparam("stage"))
)
_END_ONCE = (
    update(CALLS_TABLE)
    .where(CALLS_TABLE.c.id == bindparam("call_id"), CALLS_TABLE.c.ended_at.is_(None))
    .values(
        ended_at=bindparam("now"),
        outcome=bindparam("outcome"),
        last_stage=bindparam("last_stage"),
        account_number=bindparam("account"),
        language=func.coalesce(bindparam("language", type_=String()), CALLS_TABLE.c.language),
    )
)
_INSERT_EVENTS = insert(EVENTS_TABLE)
# PostgreSQL: a first end and its last events in one statement (the UPDATE and the INSERT in a
# WITH clause; SQLite has none), outside a transaction: 1 round trip, not 4 (BEGIN, the end,
# the events, COMMIT). The events come as one JSON array ("events"); it counts the calls it
# ended, 0 when the call had ended before or is unknown.
_ENDED = _END_ONCE.returning(CALLS_TABLE.c.id).cte("ended")
_LAST_EVENTS = (
    func.json_to_recordset(bindparam("events", type_=JSON()))
    .table_valued(
        column("at", UtcDateTime()),
        column("kind", String()),
        column("name", String()),
        column("detail", JSON()),
        column("duration_ms", Integer()),
    )
    .render_derived(name="last_events", with_types=True)
)
_END_WITH_EVENTS = (
    select(func.count())
    .select_from(_ENDED)
    .add_cte(
        insert(EVENTS_TABLE)
        .from_select(
            ["call_id", "at", "kind", "name", "detail", "duration_ms"],
            select(_ENDED.c.id, *_LAST_EVENTS.c).select_from(
                _ENDED.join(_LAST_EVENTS, true())  # the ended call (none: no row) and each event
            ),
        )
        .cte("stored")
    )
)
# In a statement that stores a call's id: the call's id (parameter "call") if that call exists,
# else NULL, so a bad call id never breaks a foreign key (and needs no read of its own).
KNOWN_CALL_ID = (
    select(CALLS_TABLE.c.id).where(CALLS_TABLE.c.id == bindparam("call")).scalar_subquery()
)
_KNOWN_CALL = select(Call.id).where(Call.id == bindparam("call_id"))


def backend_event(*conditions: ColumnElement[bool]) -> Insert:
    """The backend's event (parameters at, name, detail) in the call `call_id`, none for an
    unknown call; in a WITH statement, only where `conditions` (on its other parts) hold."""
    return insert(EVENTS_TABLE).from_select(
        ["call_id", "at", "kind", "name", "detail"],
        select(
            Call.id,
            bindparam("at", type_=EVENTS_TABLE.c.at.type),
            literal("backend", EVENTS_TABLE.c.kind.type),
            bindparam("name", type_=EVENTS_TABLE.c.name.type),
            bindparam("detail", type_=EVENTS_TABLE.c.detail.type),
        ).where(Call.id == bindparam("call_id"), *conditions),
    )


BACKEND_EVENT = backend_event()


class NewEvent(Protocol):
    """An event to store, as the API's body gave it (backend/bodies.py, CallEventIn): read
    where it is, not copied into an object of ours (40 copies cost a tenth of a call's end)."""

    @property
    def at(self) -> datetime: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def detail(self) -> dict[str, Any]: ...
    @property
    def duration_ms(self) -> int | None: ...


@dataclass(frozen=True)
class Opened:
    call: Call
    created: bool  # False: this uniqueid was opened before, the same call
    last_language: str | None  # the caller number's, when asked for (last_language)


async def open_call(
    db: Database,
    uniqueid: str,
    hotline: str,
    caller_id: str | None,
    channel: str | None,
    language: str | None,
    *,
    with_last_language: bool = False,
) -> Opened:
    """The call of `uniqueid`, created if new, and whether it was created; with
    `with_last_language`, the caller number's last language too (read first, outside a transaction).

    A retried open (the IVR retries safe calls) finds the first one: the unique uniqueid
    decides, even when both attempts race. A new call is the rule: tried first, it costs one
    statement (the remembered language read by the INSERT's RETURNING, which cannot see the
    new call: it has not ended); a known one costs a refused insert and two reads. The uniqueid
    of a call already ended is never reopened (Asterisk never reuses one: a peer posing as
    Asterisk does): a new call log is made, flagged with a `uniqueid_reused` event, and nothing
    joins the old one.
    """
    row = {
        "uniqueid": uniqueid,
        "hotline": hotline,
        "caller_id": caller_id,
        "channel": channel,
        "language": language,
        "started_at": db.now(),
    }
    call = Call(**row)
    remembering = with_last_language and bool(caller_id)
    remembered = None
    try:
        async with db.sessions.single() as session:
            if remembering:
                params = row | {"remembered_for": caller_id}
                call.id, remembered = (await session.execute(_OPEN_REMEMBERING, params)).one()
            else:
                call.id = (await session.execute(_OPEN, row)).scalar_one()
    except IntegrityError:
        if remembering and caller_id:
            remembered = await last_language(db, caller_id)
        existing = await _call_by_uniqueid(db, uniqueid)
        if existing is None:
            raise
        if existing.ended_at is None:
            return Opened(existing, False, remembered)
        return Opened(await _reused(db, call, existing), True, remembered)
    return Opened(call, True, remembered)


async def open_calls(db: Database, openings: list[dict[str, Any]]) -> list[Opened]:
    """`open_call` for many calls at once (a burst of callers), each with its caller number's
    last language, in the order given: two statements for all of them when all are new (the
    rule); otherwise each is opened on its own, as `open_call` does."""
    now = db.now()
    rows = [{**opening, "started_at": now} for opening in openings]
    try:
        async with db.sessions.single() as session:
            ids = {uniqueid: id_ for uniqueid, id_ in await session.execute(_OPEN_MANY, rows)}
    except IntegrityError:  # one of them was opened before (a retry): each finds its own
        return [await open_call(db, **opening, with_last_language=True) for opening in openings]
    callers = sorted({row["caller_id"] for row in rows if row["caller_id"]})
    languages: dict[str, str] = {}
    if callers:
        async with db.sessions() as session:
            found = await session.execute(_LAST_LANGUAGES, {"callers": callers})
            languages = {caller: language for caller, language in found}
    return [
        Opened(Call(id=ids[row["uniqueid"]], **row), True, languages.get(row["caller_id"] or ""))
        for row in rows
    ]


async def _reused(db: Database, call: Call, ended: Call) -> Call:
    """A new call log for a call that came with an ended call's uniqueid, flagged."""
    call = Call(
        uniqueid=f"{ended.uniqueid[:40]}~reused-{secrets.token_hex(4)}",
        hotline=call.hotline,
        caller_id=call.caller_id,
        channel=call.channel,
        language=call.language,
        started_at=call.started_at,
    )
    async with db.sessions.begin() as session:
        session.add(call)
        await session.flush()
        detail = {"uniqueid": ended.uniqueid, "ended_call_id": ended.id}
        session.add(
            CallEvent(call_id=call.id, at=call.started_at, kind="error", name=REUSED, detail=detail)
        )
    log.warning("call_uniqueid_reused", uniqueid=ended.uniqueid, call_id=call.id)
    return call


async def last_language(db: Database, caller_id: str) -> str | None:
    """The language of the caller number's last finished call: the IVR speaks it at once
    instead of asking (docs/call-flow.md, 1). Served by ix_calls_caller_id_started_at."""
    async with db.sessions() as session:
        return await session.scalar(_LAST_LANGUAGE, {"caller_id": caller_id})


async def add_events(db: Database, call_id: int, events: Iterable[NewEvent]) -> int:
    """Store the events not stored yet; how many were new. The IVR re-sends what it spooled
    during an outage, and a batch may have arrived before its answer was lost: an event is known
    by its time, kind and name (the IVR gives each event of a call a time of its own)."""
    batch = list(events)
    async with db.sessions.begin() as session:
        stored = await _lock_call(session, call_id, batch)
        return await _store_events(session, call_id, batch, stored)


async def _lock_call(
    session: AsyncSession, call_id: int, events: list[NewEvent]
) -> set[tuple[datetime, str, str]]:
    """The call's row locked (PostgreSQL), so that two deliveries of one batch never both store
    it, and which of `events` it has already: one query."""
    if not events:
        if await session.scalar(_LOCK_CALL, {"call_id": call_id}) is None:
            raise BackendError("call_unknown", f"no call {call_id}")
        return set()
    since = min(e.at for e in events)
    params = {"call_id": call_id, "since": since}
    rows = (await session.execute(_LOCK_CALL_WITH_EVENTS, params)).all()
    if not rows:
        raise BackendError("call_unknown", f"no call {call_id}")
    return {(at, kind, name) for _, at, kind, name in rows if at is not None}


async def _store_events(
    session: AsyncSession,
    call_id: int,
    events: list[NewEvent],
    stored: set[tuple[datetime, str, str]],
    follow_stage: bool = True,
) -> int:
    """Insert the events of `call_id` not `stored` yet (the call's row locked), in one
    statement; `follow_stage`: the call's last stage set from them (not at its end, which sets
    it)."""
    rows = [
        {
            "call_id": call_id,
            "at": e.at,
            "kind": e.kind,
            "name": e.name,
            "detail": masked(e.detail),
            "duration_ms": e.duration_ms,
        }
        for e in events
        if (e.at, e.kind, e.name) not in stored
    ]
    if rows:
        # The table's insert, not the ORM's: the ORM splits rows into one INSERT per run of
        # rows with the same None columns (a prompt's duration, an input's none): ~16 a batch.
        await session.execute(_INSERT_EVENTS, rows)
        if follow_stage:
            await _follow_stage(session, call_id, rows)
    return len(rows)


async def _follow_stage(session: AsyncSession, call_id: int, rows: list[dict[str, Any]]) -> None:
    """A call in progress shows its newest stage (the console's live calls) when its events
    come before its end (a long call's, a spool's); the end then sets the last stage for good."""
    stages = [row for row in rows if row["kind"] == "stage"]
    if not stages:
        return
    newest = max(reversed(stages), key=lambda row: row["at"])  # a tie: the later one sent
    await session.execute(_FOLLOW_STAGE, {"call_id": call_id, "stage": newest["name"]})


async def end_call(
    db: Database,
    call_id: int,
    outcome: str,
    last_stage: str,
    account: str | None,
    *,
    language: str | None = None,
    events: Iterable[NewEvent] = (),
    reply: bool = True,
) -> Call | None:
    """Close the call log, storing its last `events` first (one request, one transaction, for
    the end of every call); the call as stored, unless `reply` is False. Only the first end
    counts: a retried end changes nothing (its events, already stored, are not stored twice).
    On PostgreSQL a first end is one statement (_end_first); a retried end, or one after the
    hang-up handler's, finds nothing to end there and takes the general way."""
    last = list(events)
    postgresql = db.engine.dialect.name == "postgresql"
    if not postgresql or not await _end_first(
        db, call_id, outcome, last_stage, account, language, last
    ):
        async with db.sessions.begin() as session:
            # The end first: it locks the call's row (PostgreSQL), so a first end of a call
            # with no last events is one statement.
            ended = await _end_once(
                session, call_id, db.now(), outcome, last_stage, account, language=language
            )
            # A first end's last events come with it alone (the IVR sends each event once,
            # with the end or before it), so none is stored yet. A call ended before (a retried
            # end, the hang-up handler first) stores only those it lacks; an unknown call is
            # refused.
            stored = set() if ended else await _lock_call(session, call_id, last)
            await _store_events(session, call_id, last, stored, follow_stage=False)
    return await get_call(db, call_id) if reply else None


async def _end_first(
    db: Database,
    call_id: int,
    outcome: str,
    last_stage: str,
    account: str | None,
    language: str | None,
    events: list[NewEvent],
) -> bool:
    """PostgreSQL: end the call and store its last events, in one statement, if this is its
    first end; False (nothing done) otherwise, for end_call's general way."""
    last_events = [
        {
            "at": e.at.astimezone(UTC),  # written by orjson (formats.json_text)
            "kind": e.kind,
            "name": e.name,
            "detail": masked(e.detail),
            "duration_ms": e.duration_ms,
        }
        for e in events
    ]
    params = _end_params(call_id, db.now(), outcome, last_stage, account, language)
    async with db.sessions.single() as session:
        ended = await session.scalar(_END_WITH_EVENTS, params | {"events": last_events})
    return ended == 1


async def hang_up(db: Database, uniqueid: str, cause: str | None) -> Call:
    """The dialplan's hang-up handler: close the call log of `uniqueid` unless it is closed,
    with outcome "caller_hung_up" and the last stage reached (the stored one, else the last
    stage event the IVR sent, else "unknown"). Idempotent."""
    async with db.sessions.begin() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
        if call is None:
            raise BackendError("call_unknown", "No call with that uniqueid.")
        if call.ended_at is None:
            now = db.now()
            stage = call.last_stage or await _last_event(session, call.id, "stage")
            account = call.account_number or await _logged_in_account(session, call.id)
            if await _end_once(session, call.id, now, HUNG_UP, stage or UNKNOWN_STAGE, account):
                session.add(
                    CallEvent(
                        call_id=call.id,
                        at=now,
                        kind="backend",
                        name="hangup",
                        detail={"cause": cause},
                    )
                )
    return await get_call(db, call.id)


async def get_call(db: Database, call_id: int) -> Call:
    async with db.sessions() as session:
        return await _call(session, call_id, with_events=True)


async def record_event(
    session: Executor, call_id: int | None, at: datetime, name: str, detail: dict[str, Any]
) -> None:
    """A backend event in the caller's own transaction, when the call is known.

    An unknown call id is not a reason to refuse a login or a bundle: the event is skipped.
    One statement (INSERT ... SELECT from the call's row), not a read and then an insert.
    """
    if call_id is not None:
        params = {"call_id": call_id, "at": at, "name": name, "detail": detail}
        await session.execute(BACKEND_EVENT, params)


async def known_call(session: AsyncSession, call_id: int | None) -> int | None:
    """`call_id` if that call exists, else None (so a bad id never breaks a foreign key)."""
    if call_id is None:
        return None
    return await session.scalar(_KNOWN_CALL, {"call_id": call_id})  # not the whole row


def masked(value: Any) -> Any:
    """`value` with every secret-named entry replaced by '***', at any depth."""
    if isinstance(value, dict):
        return {
            k: MASK if k.lower() in SECRET_KEYS and not _is_mask(v) else masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def _is_mask(value: Any) -> bool:
    return isinstance(value, str) and value != "" and set(value) == {"*"}


async def _end_once(
    session: AsyncSession,
    call_id: int,
    now: datetime,
    outcome: str,
    last_stage: str,
    account: str | None,
    *,
    language: str | None = None,
) -> bool:
    """End the call unless it has ended; True when this did it. `language`: the one the caller
    chose, when known (the call log is opened before the language menu is answered)."""
    params = _end_params(call_id, now, outcome, last_stage, account, language)
    result = await session.execute(_END_ONCE, params)
    return result.rowcount == 1  # type: ignore[attr-defined]


def _end_params(
    call_id: int,
    now: datetime,
    outcome: str,
    last_stage: str,
    account: str | None,
    language: str | None,
) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "now": now,
        "outcome": outcome,
        "last_stage": last_stage,
        "account": account,
        "language": language or None,  # None: the one stored stays
    }


async def _last_event(session: AsyncSession, call_id: int, kind: str) -> str | None:
    return await session.scalar(
        select(CallEvent.name)
        .where(CallEvent.call_id == call_id, CallEvent.kind == kind)
        .order_by(CallEvent.at.desc(), CallEvent.id.desc())
        .limit(1)
    )


async def _logged_in_account(session: AsyncSession, call_id: int) -> str | None:
    detail = await session.scalar(
        select(CallEvent.detail)
        .where(CallEvent.call_id == call_id, CallEvent.name == "login_ok")
        .order_by(CallEvent.at.desc(), CallEvent.id.desc())
        .limit(1)
    )
    account = detail.get("account") if detail else None
    return account if isinstance(account, str) else None


async def _call_by_uniqueid(db: Database, uniqueid: str) -> Call | None:
    async with db.sessions() as session:
        return await session.scalar(select(Call).where(Call.uniqueid == uniqueid))


async def _call(
    session: AsyncSession, call_id: int, with_events: bool = False, for_update: bool = False
) -> Call:
    options = [selectinload(Call.events)] if with_events else []
    call = await session.get(Call, call_id, options=options, with_for_update=for_update)
    if call is None:
        raise BackendError("call_unknown", f"no call {call_id}")
    return call
