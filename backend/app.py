"""The backend web application: one aiohttp app whose database lives in its cleanup_ctx."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from yarl import URL

from backend.api import (
    DATABASE,
    SETTINGS,
    SMS_SENDER,
    errors_as_json,
    refuse_nul_characters,
    require_api_token,
    routes,
)
from backend.console import mount_console
from backend.database import open_database
from backend.settings import BackendSettings
from backend.sms import SmsSender, sender_for

# Connections the kernel holds for us until accepted: a burst of calls from several FastAGI
# processes (up to 100 connections each) must not find it full, where a connection would wait
# out a SYN retry and the IVR count it as a backend down (aiohttp's default: 128).
LISTEN_BACKLOG = 1024
# The garbage collector's young pass after this many objects more (serving_collector).
YOUNG_PASS_AFTER = 10_000


def create_app(
    settings: BackendSettings, *, sms_sender: SmsSender | None = None
) -> web.Application:
    """The app; SMS go through `sms_sender`, else the sender `settings.sms_sender` names."""
    app = web.Application(middlewares=[errors_as_json, require_api_token, refuse_nul_characters])
    app[SETTINGS] = settings
    app[SMS_SENDER] = sms_sender or sender_for(settings.sms_sender, settings.sms_gateway)
    app.cleanup_ctx.append(_database)
    app.add_routes(routes)
    mount_console(app, settings)  # after the database: its background work stops first
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_database(app[SETTINGS], app[SMS_SENDER]) as database:
        app[DATABASE] = database
        yield


@dataclass
class RunningBackend:
    """The real server, running in this process (tests, the demo)."""

    url: str
    app: web.Application
    settings: BackendSettings
    _runner: web.AppRunner = field(repr=False)

    @property
    def sms_sender(self) -> SmsSender:
        """Where this backend's SMS go (a `MemorySender` lets a test read the codes)."""
        return self.app[SMS_SENDER]

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_backend(
    settings: BackendSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sms_sender: SmsSender | None = None,
) -> RunningBackend:
    """Start serving on `host`:`port` (0: a free port, read back into `.url`)."""
    app = create_app(settings, sms_sender=sms_sender)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    actual_port = runner.addresses[0][1]
    url = str(URL.build(scheme="http", host=host, port=actual_port))
    return RunningBackend(url=url, app=app, settings=settings, _runner=runner)


def run(settings: BackendSettings) -> None:
    """`ivrs backend`: serve until interrupted (several processes: backend/workers.py)."""
    if settings.workers > 1:
        from backend.workers import run_workers

        run_workers(settings)
        return
    web.run_app(
        serving_app(settings), host=settings.host, port=settings.port, backlog=LISTEN_BACKLOG
    )


def serving_app(settings: BackendSettings) -> web.Application:
    """The app of an `ivrs backend` process, with the garbage collector set for serving
    (serving_collector). Not in create_app: a test process starting many backends would keep
    their garbage forever."""
    app = create_app(settings)
    app.on_startup.append(serving_collector)  # after the database's (cleanup_ctx)
    return app


async def serving_collector(_app: web.Application) -> None:
    """What was loaded at start-up is left out of the cyclic garbage collector's passes: its
    full passes stop every request, and walking the libraries' objects made them last 100-170
    ms under load, where a request takes 2. Its young pass comes after YOUNG_PASS_AFTER objects
    more: the requests under way are walked by nearly every pass, and at Python's 700 the
    passes took 5% of the backend's CPU at 50 calls at once (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_PASS_AFTER)
