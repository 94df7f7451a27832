"""The supervisors' console: server-rendered pages under /console (aiohttp-jinja2, templates
autoescaped), no build step, usable on a phone's screen.

Pages: sign-in; calls (list, a call's timeline, bundles and recording); live calls (the
table joined to Asterisk's channels) with "listen in"; accounts and tokens (admins); the
audit log (auditors); the daily summary.
Sign-in, sessions, CSRF and roles: `auth`; who may do what: `roles`.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from backend.console import accounts, auditlog, auth, calls, live, summary
from backend.console.listen import ami_connection
from backend.console.pages import FILTERS, PREFIX, error_pages, security_headers
from backend.console.recordings import recordings_finder
from backend.settings import BackendSettings

STATIC = Path(__file__).with_name("static")


def mount_console(app: web.Application, settings: BackendSettings) -> None:
    """Serve the console under /console on the backend `app` (after its database is in its
    cleanup_ctx: the console's background work stops before the database closes)."""
    console = web.Application(middlewares=[security_headers, error_pages, auth.sessions])
    env = aiohttp_jinja2.setup(
        console,
        loader=jinja2.PackageLoader("backend.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the page, not silently
        filters=FILTERS,
    )
    env.globals["prefix"] = PREFIX
    calls.setup_calls(console, settings.secret_key)
    for module in (auth, calls, live, accounts, auditlog, summary):
        console.router.add_routes(_relative(module.routes))
    console.router.add_static("/static", STATIC, append_version=True)
    app.router.add_get(PREFIX, _to_console_home)  # before the sub-app, which would claim it
    app.add_subapp(PREFIX, console)
    app.cleanup_ctx.append(recordings_finder)
    app.cleanup_ctx.append(ami_connection)


async def _to_console_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")


def _relative(routes: web.RouteTableDef) -> list[web.RouteDef]:
    """The routes, written with their full /console paths for reading, relative to the
    sub-app."""
    relative = []
    for route in routes:
        assert isinstance(route, web.RouteDef)
        path = route.path.removeprefix(PREFIX) or "/"
        relative.append(web.RouteDef(route.method, path, route.handler, route.kwargs))
    return relative
