"""The backend's floor: an aiohttp server that does no work beyond what every backend request
must. GET /empty answers `{}`; GET /row reads one account row on the backend's own database
driver and engine settings (backend.database.make_engines), in a process whose garbage
collector is set as the backend's (backend.app.serving_collector), as the backend reads: on a
connection outside any transaction (Sessions.connect; no BEGIN and ROLLBACK round trips). What
the real backend costs beyond this, per request, is what its handlers, middlewares and units of
work cost.

    python -m bench.backend_floor --database-url URL [--port 0]   # prints: Running on URL

`measure_floor` runs it and reads its CPU per request, the requests sent `at_once` at a time
(as the bundle phase loads the real backend).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import select

from backend.app import serving_collector
from backend.database import Sessions, dispose, make_engines
from backend.models import Account
from bench.processes import ServerProcess, python

ONE_ROW = select(Account.number).limit(1)


def floor_app(database_url: str) -> web.Application:
    engine, outside = make_engines(database_url)
    sessions = Sessions(engine, outside)

    async def empty(_request: web.Request) -> web.Response:
        return web.json_response({})

    async def row(_request: web.Request) -> web.Response:
        async with sessions.connect() as connection:
            number = (await connection.execute(ONE_ROW)).scalar()
        return web.json_response({"number": number})

    async def disposed(_app: web.Application) -> None:
        await dispose(engine, outside)

    app = web.Application()
    app.router.add_get("/empty", empty)
    app.router.add_get("/row", row)
    app.on_cleanup.append(disposed)
    return app


async def measure_floor(
    env: dict[str, str], host: str, requests: int, at_once: int
) -> dict[str, Any]:
    """CPU microseconds of the floor server per request, for /empty and /row."""
    from backend_client import BackendClient  # the IVR's own client, as to the real backend
    from bench.bench_calls import free_port

    port = free_port()
    server = await ServerProcess.start(
        "backend floor",
        python(
            *("-m", "bench.backend_floor", "--database-url", env["IVRS_DATABASE_URL"]),
            *("--host", host, "--port", str(port)),
        ),
        env,
        lambda line: port if "Running on" in line else None,
    )
    results: dict[str, Any] = {}
    try:
        async with BackendClient(f"http://{host}:{server.port}", "none", timeout=60) as client:
            gate = asyncio.Semaphore(at_once)

            async def one(path: str) -> None:
                async with gate:
                    await client._request("GET", path)

            for path in ("/empty", "/row"):
                await one(path)  # the connection and the engine's pool made first
                cpu = server.cpu_s()
                await asyncio.gather(*(one(path) for _ in range(requests)))
                results[path.strip("/") + "_us"] = (server.cpu_s() - cpu) / requests * 1e6
    finally:
        await server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = floor_app(args.database_url)
    app.on_startup.append(serving_collector)  # as `ivrs backend` sets its process
    web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
