"""The audit log, for auditors: newest first, filtered by actor, action, target and day,
paged by keyset like the calls list."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select, tuple_

from backend.console.auth import allow
from backend.console.pages import OUT_OF_RANGE, PREFIX, database, in_range, render
from backend.database import Database
from backend.models import AuditEntry
from backend.timezones import HONG_KONG

routes = web.RouteTableDef()

PAGE_SIZE = 100
ACTIONS = (
    "signed_in",
    "sign_in_failed",
    "sign_in_refused",
    "signed_out",
    "recording_played",
    "recording_downloaded",
    "listen_in",
    "account_locked",
    "account_unlocked",
    "mobile_token_enrolled",
    "account_created",
    "password_reset",
    "token_assigned",
    "token_revoked",
    "tokens_imported",
    "accounts_imported",
    "supervisor_created",
)
FIELDS = ("actor", "action", "target", "day")


async def audit_entries(
    db: Database,
    actor: str = "",
    action: str = "",
    target: str = "",
    day: date | None = None,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if target:
        query = query.where(AuditEntry.target == target)
    if day is not None:
        start = datetime.combine(day, time(), HONG_KONG)
        query = query.where(AuditEntry.at >= start, AuditEntry.at < start + timedelta(days=1))
    async with db.sessions() as session:
        if before is not None:
            at = await session.scalar(select(AuditEntry.at).where(AuditEntry.id == before))
            if at is not None:
                query = query.where(tuple_(AuditEntry.at, AuditEntry.id) < tuple_(at, before))
        return list(await session.scalars(query))


@routes.get(f"{PREFIX}/audit")
@allow("audit")
async def audit_page(request: web.Request) -> web.Response:
    form = {name: request.query.get(name, "").strip()[:128] for name in FIELDS}
    problem, day = None, None
    if form["day"]:
        try:
            day = in_range(date.fromisoformat(form["day"]))
        except ValueError as e:
            problem = OUT_OF_RANGE if str(e) == OUT_OF_RANGE else "The day is a date (YYYY-MM-DD)."
            day = None
    before = request.query.get("before", "")
    entries = await audit_entries(
        database(request),
        form["actor"],
        form["action"],
        form["target"],
        day,
        int(before) if before.isdigit() and len(before) <= 18 else None,
    )
    kept = {k: v for k, v in form.items() if v}
    older = (
        f"{PREFIX}/audit?{urlencode({**kept, 'before': entries[-1].id})}"
        if len(entries) == PAGE_SIZE
        else None
    )
    return render(
        request,
        "audit.html",
        {"entries": entries, "form": form, "actions": ACTIONS, "problem": problem, "older": older},
        status=400 if problem else 200,
    )
