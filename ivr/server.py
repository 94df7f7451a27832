"""The FastAGI server: one asyncio process, many calls.

panoramisk's `Application` gives the routing; we own `handler`, because its header loop never
checks for EOF and it matches the script name with its query string (transcripts README).

Shutdown (`RunningAgi.stop`, SIGTERM/SIGINT in `ivrs agi`) is graceful: the listening socket
closes at once, so Asterisk's `hagi://` failover sends new calls to the next server; live calls
may finish for the grace period; then each hears goodbye at its next AGI command (a command
under way is left to end: a second command would stop a playing prompt, transcripts README 9);
whatever still runs after `GOODBYE_LIMIT_S` more is cut off.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from panoramisk.fast_agi import Application

from backend_client import BackendClient
from backend_client.breaker import CircuitBreaker
from backend_client.call_log import CallLogOutbox
from backend_client.spool import Spool
from ivr.ami_connection import Ami, ami_from_settings
from ivr.call import Call, ServerClosing
from ivr.channel import Channel, HeaderError, Reply, read_header, script_name
from ivr.flow import run_call
from ivr.settings import IvrSettings
from prompts.catalog import Catalog, default_catalog

log = structlog.get_logger("ivr.server")

# After the grace period, how long calls get to reach their next command and say goodbye.
GOODBYE_LIMIT_S = 10.0
# How often the server looks for commands unanswered past the reply timeout.
REPLY_WATCH_S = 1.0
# Connections the kernel holds until accepted (Linux caps it at net.core.somaxconn, 4096 by
# default): when Asterisk restarts, thousands of calls connect at once, and one that finds the
# queue full waits out a TCP retry (1 s and more) before its first prompt.
LISTEN_BACKLOG = 4096
# The collector's young pass comes after this many objects more (Python's default: 700). A
# call waiting for its prompt's end holds a chain of coroutines; with many calls live, nearly
# every young pass walks the live calls' chains, and at 700 they came every few milliseconds:
# 2-3% of the time stopped, the AGI round trip's p99 1-2 ms longer. At 10,000 they are a
# fifteenth as many and stop the calls a third as long in all (docs/performance.md).
YOUNG_PASS_AFTER = 10_000


class ServedChannel(Channel):
    """A call's channel on this server: once the server asks it to close, its next command
    raises ServerClosing (once: the goodbye that follows goes through). A command unanswered
    within the reply timeout ends the call as hung up (a peer that never replies holds
    nothing): `IvrApplication.watch_replies` gives up on it."""

    closing = False

    def command(self, command: str) -> Coroutine[Any, Any, Reply]:
        # Channel.command's own coroutine, not one more around it: each command a call awaits
        # is a chain of coroutines alive for its prompt's length, which the garbage
        # collector's young passes walk (docs/performance.md).
        if self.closing:
            self.closing = False
            raise ServerClosing()
        return super().command(command)

    def give_up(self) -> None:
        """Its command is unanswered too long: the connection is dropped, so the command's wait
        ends as a hang-up."""
        assert self.awaiting is not None
        self.log.warning("agi_no_reply", command=self.awaiting[1].split(" ", 1)[0])
        self.hung_up = True
        self.writer.transport.abort()


class IvrApplication(Application):
    ami: Ami | None = None  # mutes recordings while secrets are keyed (ivr/recording_mute.py)

    def __init__(
        self,
        settings: IvrSettings,
        backend: BackendClient,
        outbox: CallLogOutbox,
        catalog: Catalog | None = None,
    ):
        super().__init__(loop=asyncio.get_running_loop())
        self.settings = settings
        self.backend = backend
        self.outbox = outbox
        self.catalog = catalog or default_catalog()
        self.calls: dict[str, Call] = {}  # live calls by uniqueid, for the console
        self.channels: set[ServedChannel] = set()  # live calls' channels, for shutdown
        self.connections: set[asyncio.Task[None]] = set()  # every open connection
        self.idle = asyncio.Event()  # set while no call is live: graceful shutdown waits on it
        self.idle.set()
        self.ending_calls = asyncio.Event()  # set when shutdown asks the live calls to end
        self.add_route(settings.script, self.ivrs)
        self.reply_watch = asyncio.get_running_loop().create_task(self.watch_replies())

    async def watch_replies(self) -> None:
        """Give up on every call whose command has waited longer than the reply timeout. One
        look at the live calls every REPLY_WATCH_S (a quarter of the timeout if shorter), not a
        timer per command: that timer was a tenth of the server's CPU a command."""
        timeout = self.settings.agi_reply_timeout_s
        every = max(min(timeout / 4, REPLY_WATCH_S), 0.01)
        while True:
            await asyncio.sleep(every)
            too_old = time.monotonic() - timeout
            for channel in list(self.channels):
                if channel.awaiting is not None and channel.awaiting[0] < too_old:
                    channel.give_up()

    async def ivrs(self, channel: ServedChannel) -> None:
        call = Call.from_channel(channel, self.backend, self.catalog, self.settings, self.outbox)
        call.ami = self.ami
        self.calls[call.uniqueid] = call
        self.channels.add(channel)
        self.idle.clear()
        try:
            await run_call(call)
        finally:
            if self.calls.get(call.uniqueid) is call:
                del self.calls[call.uniqueid]
            self.channels.discard(channel)
            if not self.channels:
                self.idle.set()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self.connections.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        allowed = self.settings.agi_allowed_peers
        if allowed and (not peer or peer[0] not in allowed):
            log.warning("agi_peer_refused", peer=peer)  # not one of our Asterisk servers
            writer.close()
            return
        try:
            headers = await read_header(reader)
        except (HeaderError, ConnectionError) as e:  # a reset comes as ConnectionResetError
            log.warning("agi_header_refused", peer=peer, reason=str(e) or type(e).__name__)
            writer.close()
            return
        call_log = log.bind(call=headers.get("agi_uniqueid"))
        channel = ServedChannel(reader, writer, headers, call_log)
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
    _owned_ami: Ami | None = None

    async def stop(
        self, grace: float | None = None, goodbye_limit: float = GOODBYE_LIMIT_S
    ) -> None:
        """Stop accepting calls; let live calls finish for `grace` seconds (default: the
        settings' shutdown_grace_s); then say goodbye to the rest, cut off after
        `goodbye_limit` more; then close."""
        app = self.app
        grace = app.settings.shutdown_grace_s if grace is None else grace
        self.server.close()
        log.info("agi_stopping", live_calls=len(app.channels), grace_s=grace)
        if not await _within(app.idle.wait(), grace):
            log.warning("agi_ending_live_calls", live_calls=len(app.channels))
            for channel in app.channels:
                channel.closing = True
            app.ending_calls.set()
            if not await _within(app.idle.wait(), goodbye_limit):
                log.error("agi_cutting_off_calls", live_calls=len(app.channels))
        for connection in list(app.connections):  # calls past the limit, unfinished headers
            connection.cancel()
        if app.connections:
            await asyncio.wait(list(app.connections))
        await _within(self.server.wait_closed(), 1)
        app.reply_watch.cancel()
        await asyncio.wait([app.reply_watch])
        await app.outbox.stop()
        for client in self._owned:
            await client.close()
        if self._owned_ami is not None:
            await self._owned_ami.close()


async def _within(waiting: Awaitable[object], seconds: float) -> bool:
    """Await `waiting` for at most `seconds`; whether it finished in time.

    asyncio.timeout, never wait_for, here and wherever a task may be cancelled (a call cut off
    at shutdown, the call log's deliverer stopped): Python 3.11's wait_for drops a cancellation
    that comes as its inner wait finishes, and the task then runs on (a stop() hung on it)."""
    try:
        async with asyncio.timeout(seconds):
            await waiting
    except TimeoutError:
        return False
    return True


async def start_agi_server(
    settings: IvrSettings,
    backend: BackendClient | None = None,
    catalog: Catalog | None = None,
    port: int | None = None,
    ami: Ami | None = None,
) -> RunningAgi:
    """`ami`: an AMI connection to use; without one, the server opens its own when the settings
    name an AMI host (IVRS_AMI_HOST), else recordings are muted over AGI."""
    owned = []
    if backend is None:
        backend = BackendClient(
            settings.backend_url,
            settings.api_token,
            settings.backend_timeout,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
        )
        owned.append(backend)
    assert not backend.session.closed  # made now, not by the first caller (~0.2 s: SSL setup)
    outbox = CallLogOutbox(backend, Spool(settings.spool_dir))
    await outbox.start()  # raises SpoolBusy if another server uses the same spool directory
    app = IvrApplication(settings, backend, outbox, catalog)
    owned_ami = None if ami is not None else ami_from_settings(settings)
    app.ami = ami or owned_ami
    if owned_ami is not None:
        await owned_ami.start()  # connects in the background; calls fall back until it does
    server = await asyncio.start_server(
        app.handler,
        settings.agi_host,
        settings.agi_port if port is None else port,
        backlog=LISTEN_BACKLOG,
    )
    host, actual_port = server.sockets[0].getsockname()[:2]
    log.info("agi_listening", host=host, port=actual_port, script=settings.script)
    return RunningAgi(app, server, host, actual_port, owned, owned_ami)


def run(settings: IvrSettings) -> None:
    """`ivrs agi`: serve until SIGINT/SIGTERM, then stop gracefully (RunningAgi.stop)."""

    async def main() -> None:
        running = await start_agi_server(settings)
        # The cyclic garbage collector's full passes stop every call: what was loaded at
        # start-up (most objects of the process) is left out of them.
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_PASS_AFTER)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await running.stop()
        log.info("agi_stopped", **running.app.backend.latency_summary())

    asyncio.run(main())
