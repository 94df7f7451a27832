"""What every console page needs: the database and settings of the backend app, rendering a
template with the signed-in supervisor, Hong Kong times, and the console's own error pages."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp_jinja2
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from backend.api import DATABASE, SETTINGS
from backend.console.roles import SIGNED_IN
from backend.database import Database
from backend.settings import BackendSettings
from backend.timezones import HONG_KONG

log = structlog.get_logger(__name__)

PREFIX = "/console"
# The page is the console's own: no framing, no foreign scripts, styles or media.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "media-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a recording's ticket stays out of other sites' logs
    "X-Frame-Options": "DENY",
}


def database(request: web.Request) -> Database:
    return request.config_dict[DATABASE]


def settings(request: web.Request) -> BackendSettings:
    return request.config_dict[SETTINGS]


def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    """The page, with the signed-in supervisor (`me`) and the session's CSRF token (`csrf`)."""
    me = request.get(SIGNED_IN)
    full = {"me": me, "csrf": me.csrf_token if me else "", "path": request.path, **context}
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    response.headers["Cache-Control"] = "no-store"  # pages show personal data and tokens
    return response


def hong_kong_time(moment: datetime | None, seconds: bool = True) -> str:
    if moment is None:
        return ""
    return moment.astimezone(HONG_KONG).strftime(
        "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    )


def clock_time(moment: datetime | None) -> str:
    """Hong Kong time of day to the millisecond, for a timeline."""
    if moment is None:
        return ""
    return moment.astimezone(HONG_KONG).strftime("%H:%M:%S.%f")[:-3]


def duration(value: timedelta | float | None) -> str:
    """A length as 1:05 (65 s) or 1:02:03 (past an hour); empty when unknown."""
    if value is None:
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def shown(value: Any) -> str:
    """A stored value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def hong_kong_today(now: datetime) -> date:
    return now.astimezone(HONG_KONG).date()


# The days a form may name: their Hong Kong midnight, and the day after, exist in UTC too.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
OUT_OF_RANGE = f"Dates run from {FIRST_DAY} to {LAST_DAY}."


def in_range(day: date) -> date:
    """`day`, or ValueError when it is out of FIRST_DAY..LAST_DAY (a query would overflow)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(OUT_OF_RANGE)
    return day


FILTERS: dict[str, Callable[..., str]] = {
    "hk": hong_kong_time,
    "clock": clock_time,
    "duration": duration,
    "shown": shown,
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Console errors as HTML pages (the API's are JSON); redirects pass through."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
        return render(request, "error.html", {"status": e.status, "message": message}, e.status)
    except Exception:
        log.exception("console_request_failed", method=request.method, path=request.path)
        message = "Something went wrong on the server; the error is logged."
        return render(request, "error.html", {"status": 500, "message": message}, 500)
