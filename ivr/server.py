"""The FastAGI server: one asyncio process, many calls.

panoramisk's `Application` gives the routing; we own `handler`, because its header loop never
checks for EOF and it matches the script name with its query string (transcripts README).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field

import structlog
from panoramisk.fast_agi import Application

from backend_client import BackendClient
from ivr.call import Call
from ivr.channel import Channel, HeaderError, read_header, script_name
from ivr.flow import run_call
from ivr.settings import IvrSettings
from prompts.catalog import Catalog, default_catalog

log = structlog.get_logger("ivr.server")


class IvrApplication(Application):
    def __init__(
        self, settings: IvrSettings, backend: BackendClient, catalog: Catalog | None = None
    ):
        super().__init__(loop=asyncio.get_running_loop())
        self.settings = settings
        self.backend = backend
        self.catalog = catalog or default_catalog()
        self.calls: dict[str, Call] = {}  # live calls by uniqueid, for the console and shutdown
        self.idle = asyncio.Event()  # set while no call is live: graceful shutdown waits on it
        self.idle.set()
        self.add_route(settings.script, self.ivrs)

    async def ivrs(self, channel: Channel) -> None:
        call = Call.from_channel(channel, self.backend, self.catalog, self.settings)
        self.calls[call.uniqueid] = call
        self.idle.clear()
        try:
            await run_call(call)
        finally:
            self.calls.pop(call.uniqueid, None)
            if not self.calls:
                self.idle.set()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            headers = await read_header(reader)
        except HeaderError as e:
            log.warning("agi_header_refused", peer=peer, reason=str(e))
            writer.close()
            return
        call_log = log.bind(call=headers.get("agi_uniqueid"))
        channel = Channel(reader, writer, headers, call_log)
        route = self._route.get(script_name(headers))
        try:
            if route is None:
                # Closing at once leaves IVRS_STARTED unset: the dialplan plays its fallback.
                call_log.error("agi_no_route", script=headers.get("agi_network_script"))
            else:
                await route(channel)
        except Exception:
            call_log.exception("call_failed")
        finally:
            # Asterisk never closes the socket after a hang-up: we always do (transcript 07).
            await channel.close()


@dataclass
class RunningAgi:
    app: IvrApplication
    server: asyncio.base_events.Server
    host: str
    port: int
    _owned: list[BackendClient] = field(default_factory=list)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting calls, let live calls finish (up to `grace` seconds), then close."""
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.app.idle.wait(), grace)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 1)
        for client in self._owned:
            await client.close()


async def start_agi_server(
    settings: IvrSettings,
    backend: BackendClient | None = None,
    catalog: Catalog | None = None,
    port: int | None = None,
) -> RunningAgi:
    owned = []
    if backend is None:
        backend = BackendClient(settings.backend_url, settings.api_token, settings.backend_timeout)
        owned.append(backend)
    app = IvrApplication(settings, backend, catalog)
    server = await asyncio.start_server(
        app.handler,
        settings.agi_host,
        settings.agi_port if port is None else port,
        backlog=1024,
    )
    host, actual_port = server.sockets[0].getsockname()[:2]
    log.info("agi_listening", host=host, port=actual_port, script=settings.script)
    return RunningAgi(app, server, host, actual_port, owned)


def run(settings: IvrSettings) -> None:
    """`ivrs agi`: serve until SIGINT/SIGTERM, then drain live calls."""

    async def main() -> None:
        running = await start_agi_server(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("agi_stopping", live_calls=len(running.app.calls))
        await running.stop()

    asyncio.run(main())
