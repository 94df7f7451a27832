"""The backend web application: one aiohttp app whose database lives in its cleanup_ctx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from yarl import URL

from backend.api import DATABASE, SETTINGS, errors_as_json, require_api_token, routes
from backend.database import open_database
from backend.settings import BackendSettings


def create_app(settings: BackendSettings) -> web.Application:
    app = web.Application(middlewares=[errors_as_json, require_api_token])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_database)
    app.add_routes(routes)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_database(app[SETTINGS]) as database:
        app[DATABASE] = database
        yield


@dataclass
class RunningBackend:
    """The real server, running in this process (tests, the demo)."""

    url: str
    app: web.Application
    settings: BackendSettings
    _runner: web.AppRunner = field(repr=False)

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_backend(
    settings: BackendSettings, host: str = "127.0.0.1", port: int = 0
) -> RunningBackend:
    """Start serving on `host`:`port` (0: a free port, read back into `.url`)."""
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    actual_port = runner.addresses[0][1]
    url = str(URL.build(scheme="http", host=host, port=actual_port))
    return RunningBackend(url=url, app=app, settings=settings, _runner=runner)


def run(settings: BackendSettings) -> None:
    """`ivrs backend`: serve until interrupted."""
    web.run_app(create_app(settings), host=settings.host, port=settings.port)
