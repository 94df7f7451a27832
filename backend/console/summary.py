"""The daily summary: calls per hour (a bar chart drawn here as inline SVG: no script, no
CDN), outcomes, bundles and failed logins for one Hong Kong day."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from aiohttp import web
from sqlalchemy import func, select

from backend.console.auth import allow
from backend.console.pages import (
    OUT_OF_RANGE,
    PREFIX,
    database,
    hong_kong_today,
    in_range,
    render,
)
from backend.database import Database
from backend.models import AuditEntry, Bundle, BundleItem, Call, CallEvent
from backend.timezones import HONG_KONG

routes = web.RouteTableDef()

CHART_WIDTH = 720
CHART_HEIGHT = 220
CHART_TOP = 16  # room above the tallest bar for its count
CHART_BOTTOM = 24  # room below the bars for the hours


@dataclass(frozen=True)
class Bar:
    hour: int
    calls: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class DailySummary:
    day: date
    calls: int
    per_hour: list[int]  # 24 counts, Hong Kong hours
    outcomes: list[tuple[str, int]]  # most frequent first; "in progress" for unended calls
    bundles: int
    bundles_cancelled: int
    ccrns_bundled: int
    failed_logins: int  # callers' failed IVR logins
    failed_sign_ins: int  # the console's own

    def bars(self) -> list[Bar]:
        tallest = max(self.per_hour) or 1
        room = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
        step = CHART_WIDTH / 24
        return [
            Bar(
                hour=hour,
                calls=count,
                x=round(hour * step + 2, 1),
                y=round(CHART_TOP + room - room * count / tallest, 1),
                width=round(step - 4, 1),
                height=round(room * count / tallest, 1),
            )
            for hour, count in enumerate(self.per_hour)
        ]


async def daily_summary(db: Database, day: date) -> DailySummary:
    start = datetime.combine(day, time(), HONG_KONG)
    end = start + timedelta(days=1)
    in_day = (Call.started_at >= start, Call.started_at < end)
    async with db.sessions() as session:
        starts = list(await session.scalars(select(Call.started_at).where(*in_day)))
        outcomes = (
            await session.execute(
                select(Call.outcome, func.count()).where(*in_day).group_by(Call.outcome)
            )
        ).all()
        bundles = (
            await session.execute(
                select(Bundle.status, func.count())
                .where(Bundle.created_at >= start, Bundle.created_at < end)
                .group_by(Bundle.status)
            )
        ).all()
        ccrns = await session.scalar(
            select(func.count())
            .select_from(BundleItem)
            .join(Bundle, BundleItem.bundle_id == Bundle.id)
            .where(Bundle.created_at >= start, Bundle.created_at < end)
        )
        failed_logins = await session.scalar(
            select(func.count())
            .select_from(CallEvent)
            .join(Call, CallEvent.call_id == Call.id)
            .where(*in_day, CallEvent.kind == "backend", CallEvent.name == "login_failed")
        )
        failed_sign_ins = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.at >= start,
                AuditEntry.at < end,
                AuditEntry.action == "sign_in_failed",
            )
        )
    hours = Counter(moment.astimezone(HONG_KONG).hour for moment in starts)
    by_status = dict(bundles)
    return DailySummary(
        day=day,
        calls=len(starts),
        per_hour=[hours.get(hour, 0) for hour in range(24)],
        outcomes=sorted(
            ((outcome or "in progress", count) for outcome, count in outcomes),
            key=lambda pair: (-pair[1], pair[0]),
        ),
        bundles=sum(by_status.values()),
        bundles_cancelled=by_status.get("cancelled", 0),
        ccrns_bundled=int(ccrns or 0),
        failed_logins=int(failed_logins or 0),
        failed_sign_ins=int(failed_sign_ins or 0),
    )


@routes.get(f"{PREFIX}/summary")
@allow("summary")
async def summary_page(request: web.Request) -> web.Response:
    db = database(request)
    today = hong_kong_today(db.now())
    problem = None
    try:
        day = in_range(date.fromisoformat(request.query.get("day") or today.isoformat()))
    except ValueError as e:
        reason = OUT_OF_RANGE if str(e) == OUT_OF_RANGE else "The day is a date (YYYY-MM-DD)."
        problem, day = f"{reason} Showing today.", today
    summary = await daily_summary(db, day)
    return render(
        request,
        "summary.html",
        {
            "summary": summary,
            "bars": summary.bars(),
            "chart": {
                "width": CHART_WIDTH,
                "height": CHART_HEIGHT,
                "base": CHART_HEIGHT - CHART_BOTTOM,
            },
            "previous": (day - timedelta(days=1)).isoformat(),
            "next": (day + timedelta(days=1)).isoformat() if day < today else None,
            "following": (day + timedelta(days=1)).isoformat(),
            "problem": problem,
        },
        status=400 if problem else 200,
    )
