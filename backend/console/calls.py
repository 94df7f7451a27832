"""The calls: a filtered list paged by keyset, a call's page (timeline, bundles, recording),
and the recording itself. The calls in progress are in live.py.

The list is ordered newest first by (started_at, id) and paged from the last row shown (a
keyset, never OFFSET), so the last page of 100,000 calls costs what the first does; each
selective filter has an index that also gives the order (migration 0002).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import structlog
from aiohttp import web
from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import aliased, selectinload

from backend import audit
from backend.console.auth import allow, signed_in
from backend.console.pages import PREFIX, database, in_range, render, settings
from backend.console.recordings import Tickets, find_recording, recording_path
from backend.database import Database
from backend.models import Bundle, Call, CallEvent, Recording
from backend.timezones import HONG_KONG

log = structlog.get_logger(__name__)

routes = web.RouteTableDef()

PAGE_SIZE = 50
HOTLINES = ("39023333", "31532265")
LANGUAGES = {"zh_HK": "Cantonese", "zh_CN": "Putonghua", "en": "English"}
OUTCOMES = (
    "completed",
    "caller_hung_up",
    "login_failed",
    "too_many_errors",
    "transferred_to_helpdesk",
    "backend_unavailable",
    "service_suspended",
    "terms_declined",
    "registration_abandoned",
    "sms_code_limit",
    "sms_not_sent",
)
FILTER_FIELDS = ("from", "to", "hotline", "caller", "account", "outcome", "language", "recording")
TICKETS: web.AppKey[Tickets] = web.AppKey("console_tickets", Tickets)
QueryT = TypeVar("QueryT", bound=Select[*tuple[Any, ...]])


# --- the list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFilters:
    """The list's filters, as the form gives them; times are Hong Kong local times."""

    start: datetime | None = None
    end: datetime | None = None
    hotline: str = ""
    caller: str = ""
    account: str = ""
    outcome: str = ""
    language: str = ""
    recording: str = ""  # "yes", "no" or "" (either)
    form: dict[str, str] = field(default_factory=dict)  # as typed, to fill the form again

    @classmethod
    def from_query(cls, query: Any) -> tuple[CallFilters, list[str]]:
        """The filters, and a message for each field that could not be read (then ignored)."""
        form = {name: query.get(name, "").strip()[:64] for name in FILTER_FIELDS}
        problems: list[str] = []
        times: dict[str, datetime | None] = {}
        for name in ("from", "to"):
            times[name] = None
            if form[name]:
                try:
                    moment = datetime.fromisoformat(form[name]).replace(tzinfo=HONG_KONG)
                except ValueError:
                    problems.append(f"'{name}' is not a date and time (YYYY-MM-DDTHH:MM).")
                    continue
                try:
                    in_range(moment.date())
                    times[name] = moment
                except ValueError as e:
                    problems.append(f"'{name}': {e}")
        recording = form["recording"]
        if recording not in ("", "yes", "no"):
            problems.append("'recording' is yes, no or empty.")
            recording = ""
        return cls(
            start=times["from"],
            end=times["to"],
            hotline=form["hotline"],
            caller=form["caller"],
            account=form["account"],
            outcome=form["outcome"],
            language=form["language"],
            recording=recording,
            form=form,
        ), problems

    def apply(self, query: QueryT) -> QueryT:
        """`query` (of calls outer-joined to their recordings) narrowed by these filters."""
        if self.start is not None:
            query = query.where(Call.started_at >= self.start)
        if self.end is not None:
            query = query.where(Call.started_at < self.end)
        for column, value in (
            (Call.hotline, self.hotline),
            (Call.caller_id, self.caller),
            (Call.account_number, self.account),
            (Call.outcome, self.outcome),
            (Call.language, self.language),
        ):
            if value:
                query = query.where(column == value)
        if self.recording:
            # EXISTS here: PostgreSQL walks the calls in order and probes the recordings index.
            found = aliased(Recording)  # not the outer-joined one
            recorded = select(found.id).where(found.call_id == Call.id).exists()
            query = query.where(recorded if self.recording == "yes" else ~recorded)
        return query

    def link(self, **paging: int) -> str:
        """The list's URL with these filters and a page cursor."""
        kept = {k: v for k, v in self.form.items() if v}
        return f"{PREFIX}/calls?{urlencode({**kept, **paging})}"


@dataclass(frozen=True)
class CallPage:
    rows: list[Any]
    newer: str | None  # links to the neighbouring pages, None at either end
    older: str | None


async def list_calls(
    db: Database,
    filters: CallFilters,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> CallPage:
    """A page of calls, newest first: the first page, the one older than call `before`, or
    the one newer than call `after`."""
    # An outer join, not EXISTS: with LIMIT, PostgreSQL looks up the few rows shown by index
    # (an EXISTS column was planned as a scan of every recording).
    query = filters.apply(
        select(
            Call.id,
            Call.started_at,
            Call.ended_at,
            Call.hotline,
            Call.caller_id,
            Call.account_number,
            Call.language,
            Call.outcome,
            Call.last_stage,
            Recording.id.is_not(None).label("has_recording"),
        ).outerjoin(Recording, Recording.call_id == Call.id)
    )
    key = tuple_(Call.started_at, Call.id)
    async with db.sessions() as session:
        cursor_id = before if before is not None else after
        cursor = None
        if cursor_id is not None:
            started = await session.scalar(select(Call.started_at).where(Call.id == cursor_id))
            cursor = (started, cursor_id) if started is not None else None
        if cursor is not None and after is not None:
            query = query.where(key > tuple_(*cursor)).order_by(Call.started_at, Call.id)
        else:
            if cursor is not None:
                query = query.where(key < tuple_(*cursor))
            query = query.order_by(Call.started_at.desc(), Call.id.desc())
        rows = list((await session.execute(query.limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    going_newer = cursor is not None and after is not None
    if going_newer:
        rows.reverse()
    has_newer = more if going_newer else cursor is not None
    has_older = True if going_newer else more
    return CallPage(
        rows=rows,
        newer=filters.link(after=rows[0].id) if rows and has_newer else None,
        older=filters.link(before=rows[-1].id) if rows and has_older else None,
    )


@routes.get(f"{PREFIX}/calls")
@allow("calls")
async def calls_list(request: web.Request) -> web.Response:
    filters, problems = CallFilters.from_query(request.query)
    before, after = _cursor(request, "before"), _cursor(request, "after")
    page = await list_calls(database(request), filters, before=before, after=after)
    return render(
        request,
        "calls.html",
        {
            "page": page,
            "filters": filters,
            "problems": problems,
            "hotlines": HOTLINES,
            "languages": LANGUAGES,
            "outcomes": OUTCOMES,
        },
        status=400 if problems else 200,
    )


def _cursor(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    return int(value) if value.isdigit() and len(value) <= 18 else None


# --- one call ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallDetails:
    call: Call
    events: list[CallEvent]
    bundles: list[Bundle]
    recording: Recording | None


async def call_details(db: Database, call_id: int) -> CallDetails | None:
    async with db.sessions() as session:
        found = (
            await session.execute(
                select(Call, Recording)
                .outerjoin(Recording, Recording.call_id == Call.id)
                .where(Call.id == call_id)
            )
        ).first()
        if found is None:
            return None
        call, recording = found
        events = list(
            await session.scalars(
                select(CallEvent)
                .where(CallEvent.call_id == call_id)
                .order_by(CallEvent.at, CallEvent.id)
            )
        )
        bundles = list(
            await session.scalars(
                select(Bundle)
                .where(Bundle.call_id == call_id)
                .options(selectinload(Bundle.items))
                .order_by(Bundle.id)
            )
        )
    if recording is None:  # perhaps written since the last look
        recording = await find_recording(db, call)
    return CallDetails(call, events, bundles, recording)


@routes.get(PREFIX + r"/calls/{call_id:\d{1,18}}")
@allow("calls")
async def call_page(request: web.Request) -> web.Response:
    db = database(request)
    details = await call_details(db, int(request.match_info["call_id"]))
    if details is None:
        raise web.HTTPNotFound(text="There is no call with that number.")
    me = signed_in(request)
    tickets = request.app[TICKETS]
    call = details.call
    recording_url = f"{PREFIX}/calls/{call.id}/recording"
    play = download = None
    if details.recording is not None:
        play = f"{recording_url}?ticket={tickets.issue(me.token_hash, call.id, 'play')}"
        if me.may("download"):
            ticket = tickets.issue(me.token_hash, call.id, "download")
            download = f"{recording_url}?ticket={ticket}"
    first_at = details.events[0].at if details.events else call.started_at
    return render(
        request,
        "call.html",
        {
            "call": call,
            "events": details.events,
            "first_at": first_at,
            "bundles": details.bundles,
            "recording": details.recording,
            "play_url": play,
            "download_url": download,
            "languages": LANGUAGES,
            "duration": (call.ended_at - call.started_at) if call.ended_at else None,
        },
    )


@routes.get(PREFIX + r"/calls/{call_id:\d{1,18}}/recording")
@allow("play")
async def recording(request: web.Request) -> web.StreamResponse:
    """The recording, with HTTP Range (FileResponse answers 206 and Content-Range), for a
    valid ticket only; its first request is audited (see recordings.py)."""
    me = signed_in(request)
    call_id = int(request.match_info["call_id"])
    checked = request.app[TICKETS].check(request.query.get("ticket", ""), me.token_hash, call_id)
    if checked is None:
        raise web.HTTPForbidden(
            text="This recording link is not valid for your session: open the call's page again."
        )
    purpose, ticket = checked
    if purpose == "download" and not me.may("download"):
        raise web.HTTPForbidden(text=f"Your role ({me.role}) does not download recordings.")
    db = database(request)
    async with db.sessions() as session:
        call = await session.get(Call, call_id)
    path = recording_path(settings(request).recordings_dir, call.uniqueid) if call else None
    if call is None or path is None or await find_recording(db, call) is None:
        raise web.HTTPNotFound(text="This call has no recording.")
    target, detail = f"call:{call.id}", {"uniqueid": call.uniqueid}
    if purpose == "play":  # one entry per playback, however many ranges the player asks for
        await audit.write_once(
            db, ticket, me.actor, "recording_played", target, detail, source=request.remote
        )
    elif await _delivers_first_byte(request, path):  # each download; not its resumes
        await audit.write(
            db, me.actor, "recording_downloaded", target, detail, source=request.remote
        )
    disposition = "attachment" if purpose == "download" else "inline"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "audio/wav",
            "Content-Disposition": f'{disposition}; filename="{path.name}"',
            "Cache-Control": "private, no-store",
        },
    )


async def _delivers_first_byte(request: web.Request, path: Path) -> bool:
    """Whether the answer holds the file's first byte (a download, not a resume), read as the
    FileResponse will read the Range header: any spelling of the start (`bytes=00-`), a suffix
    longer than the file (`bytes=-99999999`), no Range, or an If-Range (the whole file when it
    does not match) all deliver it. An unreadable Range is counted too (better one entry too
    many than a download unaudited)."""
    if "If-Range" in request.headers:
        return True
    try:
        wanted = request.http_range
    except ValueError:
        return True
    if wanted.start is None or wanted.start == 0:
        return True
    if wanted.start < 0:  # the last -start bytes
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        return size + wanted.start <= 0
    return False


def setup_calls(app: web.Application, secret_key: bytes) -> None:
    app[TICKETS] = Tickets(secret_key)


__all__ = ["CallFilters", "call_details", "list_calls", "routes", "setup_calls"]
